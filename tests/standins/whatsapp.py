"""Twilio's WhatsApp, the subset this service uses, on top of the Messages stand-in.

    stand_in = WhatsAppStandIn(clock=clock)
    stand_in.add_contents(TEMPLATES_DIR / "whatsapp", sids)   # our Content definitions

What it adds to :class:`TwilioStandIn`, as Twilio and WhatsApp behave:

* ``whatsapp:+E164`` addresses on both sides.
* The 24-hour window: a person's window opens when they write (``inbound_request``) and
  closes 24 hours later. A free-form message, or session-only content (a list picker, a
  quick reply not approved as a template) sent outside it is created (201) and then fails
  with error 63016, reported by the message's status, as Twilio does; an approved template
  goes at any time.
* Content by ``ContentSid`` with ``ContentVariables``: an unknown SID is refused (21655),
  a variable the content uses and the request lacks is refused (21656), a variable over
  1,600 characters or a body over 1,024 once they are filled in is refused (21658, HTTP
  400); a free-form ``Body`` over 1,600 characters is refused as for SMS (21617); the message's body
  is the content with its variables filled in, and its buttons (``buttons``) keep their
  titles and ids, so a test can tap one.
* Inbound button replies: ``ButtonPayload`` / ``ButtonText`` for a quick reply, ``ListId`` /
  ``ListTitle`` for a list picker, with ``MessageType`` as Twilio sends them.
* A person who blocked the sender (``block``): messages fail with 63014 after creation.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from tests.standins.twilio import (
    JSON,
    MAX_BODY_CHARS,
    SignedRequest,
    TwilioStandIn,
    inbound_sms_params,
    signed_request,
)

WINDOW = timedelta(hours=24)
TEMPLATE_BODY_CHARS = 1024  # WhatsApp's limit for a template's body, variables filled in
PREFIX = "whatsapp:"
APPROVABLE = ("twilio/text", "twilio/quick-reply")  # types a template may be approved as
_VARIABLE = re.compile(r"\{\{(\d+)\}\}")


class WhatsAppStandIn(TwilioStandIn):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.contents: dict[str, JSON] = {}  # ContentSid -> definition
        self.approved: set[str] = set()  # ContentSids approved by WhatsApp as templates
        self.last_inbound: dict[str, datetime] = {}  # whatsapp: address -> when they wrote
        self.blocked: set[str] = set()
        self.buttons: dict[str, list[tuple[str, str]]] = {}  # message sid -> (title, id)

    def add_content(self, sid: str, definition: JSON, *, approved: bool = False) -> None:
        self.contents[sid] = definition
        if approved:
            self.approved.add(sid)

    def block(self, address: str) -> None:
        self.blocked.add(address)

    def window_open(self, address: str) -> bool:
        last = self.last_inbound.get(address)
        return last is not None and self.clock() < last + WINDOW

    def whatsapp_request(
        self,
        url: str,
        *,
        from_: str,
        to: str,
        body: str = "",
        button: tuple[str, str] | None = None,
        listed: tuple[str, str] | None = None,
        message_sid: str | None = None,
    ) -> SignedRequest:
        """A signed incoming WhatsApp message (typed, or a tapped (title, id) button or list
        item); the sender's window opens."""
        params = inbound_sms_params(
            account_sid=self.account_sid, from_=from_, to=to, body=body, message_sid=message_sid
        )
        for name in ("ToCountry", "ToState", "ToCity", "ToZip", "FromCountry", "FromState",
                     "FromCity", "FromZip", "NumSegments"):  # fmt: skip
            params.pop(name, None)
        params |= {"ProfileName": "P", "WaId": from_.removeprefix(PREFIX).lstrip("+")}
        params["MessageType"] = "text"
        if button is not None:
            params |= {"Body": button[0], "ButtonText": button[0], "ButtonPayload": button[1]}
            params["MessageType"] = "button"
        if listed is not None:
            params |= {"Body": listed[0], "ListTitle": listed[0], "ListId": listed[1]}
            params["MessageType"] = "interactive"
        self.last_inbound[from_] = self.clock()
        return signed_request(url, params, self.auth_token)

    # -- what Twilio checks and creates, for WhatsApp ------------------------------------

    def _invalid(self, params: Mapping[str, str]) -> tuple[int, str] | None:
        to = params.get("To", "")
        if not to.startswith(PREFIX):
            return super()._invalid(params)
        if params.get("From") and not params["From"].startswith(PREFIX):
            return 63007, "Twilio could not find a Channel with the specified From address"
        plain = {**params, "To": to.removeprefix(PREFIX)}
        if "ContentSid" in params:
            problem = self._content_problem(params)
            if problem is not None:
                return problem
        return super()._invalid(plain)

    def _content_problem(self, params: Mapping[str, str]) -> tuple[int, str] | None:
        content = self.contents.get(params["ContentSid"])
        if content is None:
            return 21655, "The ContentSid is Invalid"
        try:
            variables = json.loads(params.get("ContentVariables", "{}"))
        except ValueError:
            return 21656, "The ContentVariables Parameter is invalid"
        needed = set(_VARIABLE.findall(json.dumps(content["types"])))
        if not isinstance(variables, dict) or not needed <= set(variables):
            return 21656, "The ContentVariables Parameter is invalid"
        too_long = any(len(str(v)) > MAX_BODY_CHARS for v in variables.values())
        if too_long or len(self._filled(params)[0]) > TEMPLATE_BODY_CHARS:
            return 21658, "Parameter exceeded character limit"
        return None

    def _new_message(self, params: Mapping[str, str]) -> JSON:
        message = super()._new_message(params)
        to = params["To"]
        if not to.startswith(PREFIX):
            return message
        if "ContentSid" in params:
            message["body"], self.buttons[message["sid"]] = self._filled(params)
        error = None
        if to in self.blocked:
            error = 63014
        elif not self.window_open(to) and params.get("ContentSid") not in self.approved:
            error = 63016  # free text or session-only content outside the window
        if error is not None:
            message |= {"status": "failed", "error_code": error}
        return message

    def _filled(self, params: Mapping[str, str]) -> tuple[str, list[tuple[str, str]]]:
        content = self.contents[params["ContentSid"]]
        variables = json.loads(params.get("ContentVariables", "{}"))

        def fill(text: str) -> str:
            return _VARIABLE.sub(lambda m: str(variables[m.group(1)]), text)

        (kind,) = content["types"].values()
        buttons = [(fill(a["title"]), fill(a["id"])) for a in kind.get("actions", [])]
        buttons += [(fill(i["item"]), fill(i["id"])) for i in kind.get("items", [])]
        return fill(kind["body"]), buttons


def load_contents(stand_in: WhatsAppStandIn, directory: Path) -> dict[str, str]:
    """Register every definition in `directory` (templates/whatsapp) under a made-up SID;
    the approvable ones named invitation/checkin/alert are approved. Name -> SID."""
    sids = {}
    for n, path in enumerate(sorted(directory.glob("*.json"))):
        sid = f"HX{n:032x}"
        definition = json.loads(path.read_text())
        (kind,) = definition["types"]
        template = path.stem.split("_")[0] in ("invitation", "checkin", "alert")
        stand_in.add_content(sid, definition, approved=template and kind in APPROVABLE)
        sids[path.stem] = sid
    return sids

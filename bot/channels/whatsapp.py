"""WhatsApp on Twilio: the Messages API with ``whatsapp:`` addresses and Content SIDs.

What WhatsApp requires, and how this channel meets it:

* Outside the 24-hour window (24 hours after the person's last message) only an approved
  template may be sent, by ``ContentSid`` and ``ContentVariables``. The invitation and a
  clinician's alert messages are always templates, in or out of the window: an alert
  notice (the first alert, a reminder, a rerouted notice) and an alert digest alike go as
  the ``alert`` template in the payload's language (the clinician's: their messages are
  rendered in it; the English template when that language has none configured, so that
  an alert never waits for a translation), their words in its variable {{2}}. Any
  other message to a patient whose window is shut is *held*
  (``bot.app.conversations.whatsapp_window``): the check-in template goes in its place and
  the message waits, queued, for the patient's reply; it is never sent as free text into
  error 63016. A 63016 all the same (our clock and WhatsApp's disagree)
  is held the same way; on a clinician's message it is a failure
  (``bot.app.outbox.receipts``). A clinician's other messages (the answers to ACK, ALERTS,
  /patients, /trend, help) are replies to what they just wrote: with the window shut
  they fail, never held.
* A template variable is one line (WhatsApp refuses newlines, tabs and 4 spaces in a row),
  and the template's body, variables filled in, is at most 1,024 characters. The alert's
  words are joined on one line. A digest is sized to fit :func:`variable_chars` before it
  is queued (bot/app/alerts/digests.py: the alerts that do not fit go in the next one), so
  the cut here is the last resort: between alerts, the most urgent kept (a digest lists
  crisis first), ended with the ``alerts_more`` words (how many more, and that ALERTS
  lists them). An alert whose own words are too long loses words, never its
  ``Reply ACK CODE`` line: a code is never cut.
* Inside the window a question goes with its answers as buttons: up to 3 as quick
  replies, up to 10 as a list picker, each through the session Content SID configured for
  that many answers (``[whatsapp.choices]``; the definitions are in templates/whatsapp/).
  A button's id is the question's ``<item key>=<value>``, as Telegram's callback data.
  Without a Content SID for that count the question goes as text, answered by typing.
* Errors: 63016 held (a clinician's message: failed); 63024 / 21211 (not a WhatsApp
  number, invalid) permanent; 21617 / 21658 (a body or variable too long) permanent;
  429 after Retry-After; 5xx and timeouts retried (as SMS).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import datetime

import requests
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client

from bot.app.conversations.whatsapp_window import HELD, HOLD_S, window_open
from bot.channels.sms import translated
from bot.channels.twilio_http import BaseUrlHttpClient, last_response, retry_after_s
from bot.config import Clinic, WhatsApp
from bot.domain.errors import DeliveryFailed
from bot.rendering import budget
from bot.rendering.renderer import Button, Rendered

PREFIX = "whatsapp:"
OUTSIDE_WINDOW = 63016
QUICK_REPLIES = 3  # at most, in a session message; more go in a list picker
TITLE_CHARS = {"quick": 20, "list": 24}  # WhatsApp's limits for a button's words
DESCRIPTION_CHARS = 72
# always templates: the invitation, and every alert message to a clinician
# (bot.app.alerts.notices.ALERT_INTENTS: a notice, or a digest of several)
TEMPLATE_OF = {"Invitation": "invitation", "AlertNotice": "alert", "AlertDigest": "alert"}
BODY_CHARS = budget.TEMPLATE_BODY_CHARS  # a template's body, its variables filled in
TEMPLATE_WORDS_CHARS = budget.TEMPLATE_WORDS_CHARS  # room kept for the template's own words
LastInbound = Callable[[str], Awaitable[datetime | None]]
MoreAlerts = Callable[[int, str], str]  # (alerts not shown, language) -> the words saying so


def address(number: str) -> str:
    """``whatsapp:+15555550123`` for an E.164 number (unchanged if it has the prefix)."""
    return number if number.startswith(PREFIX) else PREFIX + number


class WhatsAppChannel:
    name = "whatsapp"

    def __init__(
        self,
        settings: WhatsApp,
        clinic: Clinic,
        last_inbound: LastInbound,
        clock: Callable[[], datetime],
        list_button: Callable[[str], str],
        more_alerts: MoreAlerts,
        status_callback: str | None = None,
    ) -> None:
        self.settings, self.clinic = settings, clinic
        self.last_inbound, self.clock, self.list_button = last_inbound, clock, list_button
        self.more_alerts = more_alerts
        self.status_callback = status_callback
        self._http = BaseUrlHttpClient(settings.api_base_url)
        self._client = Client(settings.account_sid, settings.auth_token, http_client=self._http)

    async def send(self, to: str, message: Rendered, payload: dict[str, object]) -> str:
        language = str(payload.get("language", "en"))
        purpose = TEMPLATE_OF.get(str(payload.get("intent", "")))
        if purpose is not None:
            return await self._template(to, purpose, language, message.text)
        if not window_open(await self.last_inbound(to), self.clock()):
            return await self._hold(to, language, str(payload.get("recipient", "")))
        params = self._session(message, language)
        try:
            return await asyncio.to_thread(self._create, to, params)
        except DeliveryFailed as failure:
            if OUTSIDE_WINDOW_REASON in failure.reason:
                return await self._hold(to, language, str(payload.get("recipient", "")))
            raise

    async def _template(self, to: str, purpose: str, language: str, text: str) -> str:
        sid = self.settings.template(purpose, language)
        if sid is None:
            raise DeliveryFailed(f"whatsapp: no [whatsapp.templates.{purpose}]", permanent=True)
        variables = {"1": self.clinic.name}
        if purpose == "alert":  # the notice or digest on one line: numbers and codes only
            limit = variable_chars(self.clinic.name)
            variables["2"] = fitted(text, limit, lambda n: self.more_alerts(n, language))
        params = {"content_sid": sid, "content_variables": json.dumps(variables)}
        return await asyncio.to_thread(self._create, to, params)

    async def _hold(self, to: str, language: str, recipient: str) -> str:
        """The window is shut: a patient gets the check-in template instead, and the
        message waits for their reply; a clinician's non-alert message cannot go."""
        if not recipient.startswith("patient"):
            raise DeliveryFailed(f"{HELD}: not an alert", permanent=True)
        await self._template(to, "checkin", language, "")
        raise DeliveryFailed(f"{HELD}; waiting for the patient's reply", retry_after_s=HOLD_S)

    def _session(self, message: Rendered, language: str) -> dict[str, str]:
        """A free-form message: text, or a question with its answers as buttons."""
        sid = self.settings.choices.get(len(message.buttons)) if message.buttons else None
        if sid is None:
            return {"body": message.text}
        return {
            "content_sid": sid,
            "content_variables": json.dumps(self._choices(message, language)),
        }

    def _choices(self, message: Rendered, language: str) -> dict[str, str]:
        """The variables of templates/whatsapp/{quick_reply,list_picker}_<n>.json."""
        buttons = message.buttons
        variables = {"1": message.text}
        if len(buttons) <= QUICK_REPLIES:
            for n, button in enumerate(buttons):
                variables |= {
                    str(2 + 2 * n): _cut(button.label, "quick"),
                    str(3 + 2 * n): button.data,
                }
            return variables
        variables["2"] = self.list_button(language)
        for n, button in enumerate(buttons):
            base = 3 + 3 * n
            variables |= {
                str(base): _cut(button.label, "list"),
                str(base + 1): button.data,
                str(base + 2): _description(button),
            }
        return variables

    def _create(self, to: str, params: dict[str, str]) -> str:
        sender = (
            {"messaging_service_sid": self.settings.messaging_service_sid}
            if self.settings.messaging_service_sid
            else {"from_": address(self.settings.from_number)}
        )
        callback = {"status_callback": self.status_callback} if self.status_callback else {}
        try:
            created = self._client.messages.create(to=address(to), **params, **sender, **callback)
        except TwilioRestException as exc:
            failure = translated(exc, retry_after_s(last_response()))
            raise DeliveryFailed(
                failure.reason.replace("sms:", "whatsapp:", 1),
                permanent=failure.permanent,
                retry_after_s=failure.retry_after_s,
            ) from exc
        except requests.RequestException as exc:
            raise DeliveryFailed(f"whatsapp: {type(exc).__name__}") from exc
        return str(created.sid)

    def close(self) -> None:
        self._http.close()


OUTSIDE_WINDOW_REASON = f"twilio error {OUTSIDE_WINDOW}"


def variable_chars(clinic_name: str) -> int:
    """How long the alert template's {{2}} may be (bot/rendering/budget.py: the digests are
    sized by the same number, so a digest fits and this cut is the last resort)."""
    return budget.template_variable_chars(clinic_name)


def fitted(text: str, limit: int, more: Callable[[int], str]) -> str:
    """An alert message's words on one line of at most `limit` characters. Its paragraphs
    (one per alert, the most urgent first; blank lines between) are kept from the first
    while they fit, then `more(hidden)` says how many were left out. If the first alone is
    too long, its words are cut, never its last line (``Reply ACK CODE``)."""
    alerts = [a for a in text.split("\n\n") if a.strip()]
    for shown in range(len(alerts), 0, -1):
        hidden = len(alerts) - shown
        line = _one_line([*alerts[:shown], *([more(hidden)] if hidden else [])])
        if len(line) <= limit:
            return line
    *words, code = alerts[0].split("\n")
    hidden = len(alerts) - 1
    kept = _one_line([code, *([more(hidden)] if hidden else [])])
    cut = _one_line(words)[: max(limit - len(kept) - len("… "), 0) + 1]
    head = cut.rsplit(" ", 1)[0] if " " in cut else cut[:-1]  # cut at a space
    return f"{head}… {kept}"


def _one_line(parts: list[str]) -> str:
    return " ".join(" ".join(parts).split())


def _cut(label: str, kind: str) -> str:
    limit = TITLE_CHARS[kind]
    return label if len(label) <= limit else label[: limit - 1] + "…"


def _description(button: Button) -> str:
    """The whole answer under a list item (its title may be cut)."""
    words = button.label.split(" · ", 1)[-1]
    return words if len(words) <= DESCRIPTION_CHARS else words[: DESCRIPTION_CHARS - 1] + "…"

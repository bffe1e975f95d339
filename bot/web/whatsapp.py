"""Twilio's WhatsApp webhooks: incoming messages at ``/whatsapp``, status at ``/whatsapp/status``.

As ``/sms`` (bot/web/sms.py): the signature is checked against ``public_url`` with every
form field (403, nothing stored), the fields read must have Twilio's shapes (400), and an
incoming message is spooled before the answer, then drained into the inbox, where a
repeated ``MessageSid`` is recorded once. What WhatsApp adds:

* both addresses are ``whatsapp:+E164``;
* a tapped button arrives as ``ButtonPayload`` (quick reply) or ``ListId`` (list picker).
  A payload ``<item key>=<value>`` is an answer to that question, as Telegram's callback
  data; another (the templates' ``yes``, ``stop``, ``checkin.open``) is read as typed;
* status callbacks also say ``read``, kept on the outbound message; error 63016 (outside
  the 24-hour window) holds the message for the patient's reply (and fails a
  clinician's), and 63014 (the person blocked the sender) makes the patient unreachable
  and alerts the clinician. Each of them, like delivered and failed, is kept if it comes
  before its send is recorded, and applied when it is (``bot.app.outbox.receipts``).
  What a status queues (a clinician's failed alert rerouted) is sent at once, as for SMS.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from bot.app.conversations.inbox import Inbound
from bot.app.outbox.receipts import record_held, record_read, record_status
from bot.bootstrap import App
from bot.channels.twilio_form import WHATSAPP, inbound_problem, status_problem
from bot.channels.whatsapp import OUTSIDE_WINDOW
from bot.web.sms import EMPTY_TWIML, Handler, refused, spool_inbound, verified

BLOCKED = 63014  # "channel message blocked by user action": the person blocked the sender
PAYLOAD = re.compile(r"[A-Za-z0-9_.:=-]{1,200}")
_PAYLOAD_FIELDS = ("ButtonPayload", "ListId")


def whatsapp_problem(form: Mapping[str, str], account_sid: str) -> str | None:
    """What is wrong with an incoming WhatsApp form, in one line; None if nothing is."""
    problem = inbound_problem(form, account_sid)
    if problem is not None:
        return problem
    for name in ("From", "To"):
        if not form[name].startswith(WHATSAPP):
            return f"{name} is not a whatsapp: address"
    for name in _PAYLOAD_FIELDS:
        if name in form and PAYLOAD.fullmatch(form[name]) is None:
            return f"{name} is not a payload this service sends"
    return None


def inbound(params: Mapping[str, str], now: datetime) -> Inbound:
    """The message as the inbox records it: a button's payload, else the typed text."""
    payload = next((params[n] for n in _PAYLOAD_FIELDS if params.get(n)), None)
    if payload is not None and "=" in payload:
        return Inbound("whatsapp", params["MessageSid"], params["From"], payload, now, "button")
    text = payload if payload is not None else params.get("Body", "")
    return Inbound("whatsapp", params["MessageSid"], params["From"], text, now)


def inbound_handler(app: App) -> Handler:
    async def whatsapp(request: Request) -> Response:
        settings = app.settings.whatsapp
        params = await verified(app, request, "/whatsapp", settings.auth_token)
        if params is None:
            return PlainTextResponse("forbidden", status_code=403)
        problem = whatsapp_problem(params, settings.account_sid)
        if problem is not None:
            return refused(problem)
        refusal = await spool_inbound(app, inbound(params, app.clock()))
        if refusal is not None:
            return refusal
        app.spool_woken()
        return Response(EMPTY_TWIML, media_type="text/xml")

    return whatsapp


def status_handler(app: App) -> Handler:
    async def status(request: Request) -> Response:
        settings = app.settings.whatsapp
        params = await verified(app, request, "/whatsapp/status", settings.auth_token)
        if params is None:
            return PlainTextResponse("forbidden", status_code=403)
        problem = status_problem(params, settings.account_sid)
        if problem is not None:
            return refused(problem)
        sid, state, error = (
            params["MessageSid"],
            params.get("MessageStatus", ""),
            params.get("ErrorCode"),
        )
        queued = False
        if state == "read":
            await record_read(app.db, app.clock, "whatsapp", sid)
        elif error == str(OUTSIDE_WINDOW):
            queued = await record_held(app.db, app.clock, sid, app.services.alerting)
        else:
            queued = await record_status(
                app.db, app.clock, "whatsapp", sid, state, error,
                opted_out=error == str(BLOCKED), alerting=app.services.alerting,
            )  # fmt: skip
        if queued:  # committed: a rerouted alert goes now, not at the next tick
            app.kick()
        return Response(status_code=204)

    return status

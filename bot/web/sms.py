"""Twilio's webhooks: incoming SMS at ``/sms`` and delivery status at ``/sms/status``.

Both check ``X-Twilio-Signature`` against the configured public URL with every form field;
a forged or altered request gets 403 and nothing is stored. A signed form whose fields do
not have Twilio's shapes (``bot.channels.twilio_form``: a re-cut of a captured request
keeps its signature) gets 400 and nothing is stored. An incoming message is made
durable in the spool before anything else (Twilio does not retry it) and answered at once
with an empty TwiML document, whatever the database is doing; the drain records and
processes it after (``bot.app.conversations.intake``), and the reply goes through the
outbox. Status callbacks may arrive out of order: a final status (delivered, failed)
never regresses; one that arrives before its send is recorded is kept for it
(``bot.app.outbox.receipts``). What a status queues (a clinician's failed alert message
rerouted to the next in line) is sent at once: the handler wakes the courier.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from bot.app.conversations.inbox import Inbound
from bot.app.outbox.receipts import record_status
from bot.bootstrap import App
from bot.channels.sms import OPTED_OUT, valid_signature
from bot.channels.twilio_form import inbound_problem, status_problem

log = logging.getLogger(__name__)
SIGNATURE_HEADER = "X-Twilio-Signature"
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'
Handler = Callable[[Request], Awaitable[Response]]


async def verified(
    app: App, request: Request, path: str, auth_token: str | None = None
) -> dict[str, str] | None:
    """The form, if Twilio signed it for ``public_url + path`` (with [sms]'s token unless
    another is given); None if not."""
    form = await request.form()
    items = [(k, v) for k, v in form.multi_items() if isinstance(v, str)]
    url = app.settings.server.public_url.rstrip("/") + path
    signature = request.headers.get(SIGNATURE_HEADER, "")
    token = auth_token or app.settings.sms.auth_token
    if not signature or not valid_signature(token, url, items, signature):
        return None
    return dict(items)


def inbound_handler(app: App) -> Handler:
    async def sms(request: Request) -> Response:
        params = await verified(app, request, "/sms")
        if params is None:
            return PlainTextResponse("forbidden", status_code=403)
        problem = inbound_problem(params, app.settings.sms.account_sid)
        if problem is not None:
            return refused(problem)
        inbound = Inbound("sms", params["MessageSid"], params["From"], params.get("Body", ""),
                          app.clock())  # fmt: skip
        refusal = await spool_inbound(app, inbound)
        if refusal is not None:
            return refusal
        app.spool_woken()  # recorded and processed after the answer, by the drain
        return Response(EMPTY_TWIML, media_type="text/xml")

    return sms


async def spool_inbound(app: App, inbound: Inbound) -> Response | None:
    """Make the message durable (the spool, fsynced) before answering; a 503 if it could
    not be, so that Twilio logs an error for it (it does not retry)."""
    intake = app.services.intake
    assert intake is not None, "/sms is served only where SMS (and so the spool) is wired"
    try:
        kept = await intake.accept(inbound)
    except Exception as exc:  # the disk, or the key ring: nothing was kept
        log.critical("sms could not be spooled (%s); answering 503", type(exc).__name__)
        return PlainTextResponse("try again", status_code=503)
    if not kept:
        log.critical(
            "sms spool full ([sms] spool_max messages waiting for the database); answering "
            "503 and Twilio drops the message: bring the database back"
        )
        return PlainTextResponse("try again", status_code=503)
    return None


def status_handler(app: App) -> Handler:
    async def status(request: Request) -> Response:
        params = await verified(app, request, "/sms/status")
        if params is None:
            return PlainTextResponse("forbidden", status_code=403)
        problem = status_problem(params, app.settings.sms.account_sid)
        if problem is not None:
            return refused(problem)
        error = params.get("ErrorCode")
        queued = await record_status(
            app.db,
            app.clock,
            "sms",
            params["MessageSid"],
            params.get("MessageStatus", ""),
            error,
            opted_out=error == str(OPTED_OUT),
            alerting=app.services.alerting,
        )
        if queued:  # committed: a rerouted alert goes now, not at the next tick
            app.kick()
        return Response(status_code=204)

    return status


def refused(problem: str) -> Response:
    """400 for a signed form whose fields are not Twilio's (the field named, no value)."""
    log.warning("twilio webhook refused: %s", problem)
    return PlainTextResponse(problem, status_code=400)

"""A known patient's message, under their row lock: a button press or a typed reply steps
the open check-in; with none open the core answers commands (help, pause, stop, ...) and
risk language, and a late answer to the safety item of an expired check-in is heard
(bot/domain/late.py); an invited SMS patient's first reply is their consent; Telegram's
membership updates mark a blocked bot."""

from __future__ import annotations

from datetime import datetime

from bot.app.context import Context
from bot.app.conversations import whatsapp_window as window
from bot.app.conversations.consent import YES, answer_invitation, membership
from bot.app.conversations.enrollment import start_parameter
from bot.app.conversations.transitions import apply_transition
from bot.domain import conversation as core
from bot.domain import events as ev
from bot.domain.late import late_reply
from bot.domain.parsing import normalize
from bot.storage import checkins as q
from bot.storage.inbound_rows import StoredInbound
from bot.storage.repository import Repository
from bot.storage.tables import Patient


async def from_patient(
    ctx: Context,
    repo: Repository,
    patient: Patient,
    message: StoredInbound,
    now: datetime,
    open_now: q.MaybeRead = q.UNREAD,
) -> None:
    """Handle one message of the patient's, in the caller's transaction. `open_now`: the
    check-in open, read already under the patient's lock with the patient (None: none
    is open); otherwise it is read here."""
    assert patient.id is not None and message.id is not None
    if message.kind == "member":
        await membership(ctx, repo, patient, message.text, now)
        return
    if patient.channel == "whatsapp":  # the 24-hour window is open again: what waited goes
        released = await window.release(repo.session, patient, now, message.received_at)
        if message.text == window.OPEN_PAYLOAD and (released or patient.status != "invited"):
            return  # the check-in template's button: it opens the window, it answers nothing
    checkin = await q.open_checkin(repo.session, patient.id) if open_now is q.UNREAD else open_now
    opted_out = patient.status == "opted_out"
    source = f"in{message.id}"
    if message.kind == "button":
        item, _, value = message.text.partition("=")
        # a button on a closed check-in changes nothing, but a late safety answer is heard
        late = None if checkin or opted_out else await _late(ctx, repo, patient, value, now, item)
        if late is not None:
            await apply_transition(ctx, repo, patient, None, late, source, now, message.id)
        if checkin is None or opted_out:
            return
        conv = core.from_json(checkin.state)
        transition = core.press(conv, item, _int(value), ctx.setting(patient), now)
        await apply_transition(ctx, repo, patient, checkin, transition, source, now, message.id)
        return
    if patient.status == "invited":
        await answer_invitation(ctx, repo, patient, message, now)
        return
    text = "/start" if start_parameter(message.text) else message.text
    if opted_out and normalize(text) in YES:
        text = "start"  # SMS and WhatsApp: YES opts back in, as carriers expect
    if checkin is None or opted_out:
        late = None if opted_out else await _late(ctx, repo, patient, text, now)
        intents, events = core.outside(text, patient.language, opted_out, now)
        if opted_out and patient.channel == "sms":  # the carrier blocks a message after
            # STOP: the clinician's risk_language alert is the path
            intents = tuple(i for i in intents if not isinstance(i, ev.CrisisResources))
        empty = late or core.Transition(core.Conversation(()), intents, events)
        await apply_transition(ctx, repo, patient, None, empty, source, now, message.id)
        return
    transition = core.step(core.from_json(checkin.state), text, ctx.setting(patient), now)
    await apply_transition(ctx, repo, patient, checkin, transition, source, now, message.id)


async def _late(
    ctx: Context,
    repo: Repository,
    patient: Patient,
    text: str,
    now: datetime,
    pressed: str | None = None,
) -> core.Transition | None:
    """A late reply (or button) to the safety item the latest check-in expired on."""
    assert patient.id is not None
    latest = await q.latest_closed(repo.session, patient.id)
    if latest is None or latest.status != "expired":
        return None
    conv = core.from_json(latest.state)
    if pressed is not None and pressed != conv.last_asked:
        return None
    return late_reply(conv, text, ctx.setting(patient), now)


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        return -1  # no option has it: the press changes nothing

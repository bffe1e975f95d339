"""A known patient's message, under their row lock: a button press or a typed reply steps
the open check-in; with none open the core answers commands (help, pause, stop, ...); an
invited SMS patient's first reply is their consent; Telegram's membership updates mark a
blocked bot."""

from __future__ import annotations

from datetime import datetime

from bot.app.context import Context
from bot.app.conversations.consent import YES, answer_invitation, membership
from bot.app.conversations.enrollment import start_parameter
from bot.app.conversations.transitions import apply_transition
from bot.domain import conversation as core
from bot.domain.parsing import normalize
from bot.storage import checkins as q
from bot.storage.repository import Repository
from bot.storage.tables import InboundMessage, Patient


async def from_patient(
    ctx: Context, repo: Repository, patient: Patient, message: InboundMessage, now: datetime
) -> None:
    """Handle one message of the patient's, in the caller's transaction."""
    assert patient.id is not None and message.id is not None
    if message.kind == "member":
        await membership(ctx, repo, patient, message.text, now)
        return
    checkin = await q.open_checkin(repo.session, patient.id)
    opted_out = patient.status == "opted_out"
    source = f"in{message.id}"
    if message.kind == "button":
        if checkin is None or opted_out:
            return  # a button on a closed check-in: nothing to do
        item, _, value = message.text.partition("=")
        conv = core.from_json(checkin.state)
        transition = core.press(conv, item, _int(value), ctx.setting(patient), now)
        await apply_transition(ctx, repo, patient, checkin, transition, source, now, message.id)
        return
    if patient.status == "invited":
        await answer_invitation(ctx, repo, patient, message, now)
        return
    text = "/start" if start_parameter(message.text) else message.text
    if opted_out and normalize(text) in YES:
        text = "start"  # SMS: YES opts back in, as carriers expect
    if checkin is None or opted_out:
        intents, events = core.outside(text, patient.language, opted_out, now)
        empty = core.Transition(core.Conversation(()), intents, events)
        await apply_transition(ctx, repo, patient, None, empty, source, now, message.id)
        return
    transition = core.step(core.from_json(checkin.state), text, ctx.setting(patient), now)
    await apply_transition(ctx, repo, patient, checkin, transition, source, now, message.id)


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        return -1  # no option has it: the press changes nothing

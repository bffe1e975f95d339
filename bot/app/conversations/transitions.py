"""Writing what the conversation core decided, in the caller's transaction: the check-in's
new state, the events (answers, scores, flags, opt-outs) as rows and audit records, the
messages as outbox rows, and the alerts the events raise.

Every use case that steps a conversation (an inbound message, a start, a reminder, an
expiry) ends in :func:`apply_transition`, so an answer, its score, its alert and the
reply are always stored together or not at all.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, TypeGuard

from bot.app.context import Context
from bot.app.conversations.messages import outbox_rows
from bot.domain import conversation as core
from bot.domain import events as ev
from bot.domain.crisis import LINES_KINDS
from bot.domain.instruments import BloodPressure
from bot.storage import checkins as q
from bot.storage.answer_tables import NewAnswer
from bot.storage.repository import Repository
from bot.storage.series import place_of
from bot.storage.steps import save_step, write_step
from bot.storage.tables import Checkin, Patient, Score

log = logging.getLogger(__name__)


async def apply_transition(
    ctx: Context,
    repo: Repository,
    patient: Patient,
    checkin: Checkin | None,
    transition: core.Transition,
    source: str,
    now: datetime,
    inbound_id: int | None,
) -> None:
    """Write the transition's state, events and messages in the caller's transaction."""
    assert patient.id is not None
    if checkin is not None:
        update_checkin(checkin, transition.state, now)
    events = transition.events
    if checkin is not None and checkin.id is not None and _open_after(checkin) and _plain(events):
        # the usual turn (at most one new answer, the check-in still open): its step,
        # answer and messages, written at once (one statement on PostgreSQL)
        answer = _answer_row(checkin.id, events[0], inbound_id) if events else None
        rows = outbox_rows(ctx.renderer, patient, transition.intents, source, now)
        if not await write_step(repo, checkin, answer, rows):
            log.warning("check-in %s item answered twice; first answer kept", checkin.id)
    else:
        if checkin is not None:
            await save_step(repo.session, checkin, await repo.connection())
            if checkin.status in q.CLOSED_STATUSES:  # the next one held behind it may start
                await q.release_held(repo.session, patient.id)
        for event in transition.events:
            await _record(repo, patient, checkin, event, inbound_id)
        await repo.enqueue(outbox_rows(ctx.renderer, patient, transition.intents, source, now))
    if ctx.alerting is not None:  # same transaction: the answer and its alert together
        lines_sent = any(
            isinstance(i, ev.CrisisResources) and i.flag in LINES_KINDS for i in transition.intents
        )  # in this same transaction: the alert says so, and when
        crisis_at = now if lines_sent else None
        await ctx.alerting.on_events(repo, patient, transition.events, now, crisis_at)


def _open_after(checkin: Checkin) -> bool:
    """Still open after its step (a closed one may start the next one held behind it)."""
    return checkin.status not in q.CLOSED_STATUSES


def _plain(events: Sequence[ev.Event]) -> TypeGuard[Sequence[ev.AnswerRecorded]]:
    """Events `write_step` can take whole: none but at most one new answer (a changed
    answer, a score, a flag or an opt-out each write more, in `_record`)."""
    return len(events) <= 1 and all(
        isinstance(e, ev.AnswerRecorded) and not e.replaced for e in events
    )


def update_checkin(checkin: Checkin, conv: core.Conversation, now: datetime) -> None:
    """Copy the conversation's state onto the check-in row: status, reminder, times."""
    values: dict[str, Any] = {"state": core.to_json(conv)}
    more = checkin.reminder_after_s is not None and checkin.reminders_sent < checkin.max_reminders
    if conv.is_open and more and checkin.reminder_after_s is not None:
        # the next reminder counts from the latest message or answer
        values["next_reminder_at"] = now + timedelta(seconds=checkin.reminder_after_s)
    else:
        values["next_reminder_at"] = None
    if conv.status == "asking":
        values["status"] = "in_progress" if conv.answers else "sent"
        values["sent_at"] = checkin.sent_at or now
    elif conv.status in ("expired", "cancelled"):
        values["status"] = conv.status
        values["partial"] = bool(conv.answers)
    else:
        values["status"] = conv.status
    if conv.status == "completed":
        values["completed_at"] = now
    for name, value in values.items():
        # only what differs: an attribute set to its own value is no change to the ORM
        # either (`steps.save_step` writes none), but setting it costs ~15 calls and asking its
        # history ~10 (three of a usual turn's five are unchanged)
        if getattr(checkin, name) != value:
            setattr(checkin, name, value)


async def _record(
    repo: Repository,
    patient: Patient,
    checkin: Checkin | None,
    event: ev.Event,
    inbound_id: int | None,
) -> None:
    assert patient.id is not None
    if isinstance(event, ev.AnswerRecorded) and checkin is not None and checkin.id is not None:
        answer = _answer_row(checkin.id, event, inbound_id)
        if event.replaced:  # the earlier answer stays, marked superseded by this one
            await repo.supersede_answer(answer)
        elif not await repo.save_answer(answer):
            log.warning("check-in %s item answered twice; first answer kept", checkin.id)
    elif isinstance(event, ev.ScoreRecorded) and checkin is not None and checkin.id is not None:
        place = await place_of(repo.session, patient.id, event.at)  # fixed now, kept as made
        score = _score_row(checkin.id, patient.id, event)
        score.session_number = place.session_number
        score.hours_since_session = place.hours_since_session
        await repo.add(score)
    elif isinstance(event, ev.FlagRaised):
        await repo.audit(
            event.at,
            "patient",
            "flag_raised",
            f"patient:{patient.id}",
            flag=event.flag,
            item=event.item,
        )
    elif isinstance(event, ev.RiskLanguage | ev.SafetyEndorsed | ev.LateAnswer):
        # which safety signal and the item key; never the words (the inbound row has them)
        name = {ev.RiskLanguage: "risk_language", ev.SafetyEndorsed: "safety_endorsed"}
        action = name.get(type(event), "late_answer")
        await repo.audit(event.at, "patient", action, f"patient:{patient.id}", item=event.item)
    elif isinstance(event, ev.OptedOut):
        patient.status = "opted_out"
        await repo.add(patient)
        await q.cancel_pending(repo.session, patient.id)
        await repo.audit(event.at, "patient", "opted_out", f"patient:{patient.id}")
    elif isinstance(event, ev.OptedIn):
        patient.status = "active"
        await repo.add(patient)
        await repo.audit(event.at, "patient", "opted_in", f"patient:{patient.id}")


def _answer_row(checkin_id: int, event: ev.AnswerRecorded, inbound_id: int | None) -> NewAnswer:
    value = event.value
    return NewAnswer(
        checkin_id=checkin_id,
        item_key=event.item,
        instrument=event.instrument,
        value_int=value if isinstance(value, int) else None,
        value_text=str(value) if isinstance(value, BloodPressure) else None,
        raw_text=event.raw_text,
        inbound_message_id=inbound_id,
        answered_at=event.at,
    )


def _score_row(checkin_id: int, patient_id: int, event: ev.ScoreRecorded) -> Score:
    result = event.result
    return Score(
        checkin_id=checkin_id,
        patient_id=patient_id,
        instrument=result.instrument,
        total=result.total,
        band=result.band,
        valid=result.valid,
        prorated=result.prorated,
        flags=list(result.flags),
        completed_at=event.at,
    )

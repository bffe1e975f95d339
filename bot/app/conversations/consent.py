"""Enrolment and consent over a patient's own channel: the SMS invitation and its answer
(YES starts, STOP declines, anything else repeats the question; risk language first gets
the crisis resources and the clinician's alert), and Telegram telling us that the patient
blocked or unblocked the bot. Every change is audited; declining and blocking also raise
the ``opted_out`` alert, so the clinician knows the patient is no longer measured
(unblocking or opting back in leaves that alert for them to close)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from bot.app.context import Context
from bot.app.conversations.messages import outbox_rows
from bot.domain import events as ev
from bot.domain.errors import NotFound
from bot.domain.parsing import normalize, parse_command
from bot.domain.risk import risk_reply
from bot.storage.inbound_rows import StoredInbound
from bot.storage.repository import Repository
from bot.storage.tables import Patient

YES = frozenset({"yes", "y", "si", "s"})  # replies that accept an SMS invitation


@dataclass(frozen=True)
class Consent:
    ctx: Context

    async def invite(self, patient_id: int) -> None:
        """Send an SMS patient the invitation (the only message before they reply YES)."""
        async with self.ctx.db.transaction() as session:
            repo = Repository(session)
            patient = await repo.lock_patient(patient_id)
            if patient is None:
                raise NotFound("patient", patient_id)
            now = self.ctx.clock()
            key = f"invite{patient_id}:{now:%Y%m%dT%H%M%S}"
            await repo.enqueue(
                outbox_rows(self.ctx.renderer, patient, (ev.Invitation(),), key, now)
            )
            await repo.audit(now, "operator", "invited", f"patient:{patient_id}")


async def answer_invitation(
    ctx: Context, repo: Repository, patient: Patient, message: StoredInbound, now: datetime
) -> None:
    """An invited SMS patient answers the invitation: YES starts, STOP declines, anything
    else repeats the question. Nothing else is sent before YES; the answer is audited."""
    assert patient.id is not None
    source = f"in{message.id}"
    command = parse_command(message.text, patient.language)
    if normalize(message.text) in YES or (command is not None and command.name == "start"):
        patient.status, patient.consent_at = "active", now
        await repo.add(patient)
        await repo.audit(now, "patient", "consent_given", f"patient:{patient.id}")
        intent: ev.Intent = ev.Enrolled()
    elif command is not None and command.name == "stop":
        patient.status = "opted_out"
        await repo.add(patient)
        await repo.audit(now, "patient", "consent_refused", f"patient:{patient.id}")
        if ctx.alerting is not None:
            await ctx.alerting.opted_out(repo, patient, "declined", False, None, now)
        intent = ev.OptOutConfirmed()
    else:
        intent = ev.Invitation()
    crisis, risk = risk_reply(message.text, now, None, ())  # they wrote to us: we may answer
    await repo.enqueue(outbox_rows(ctx.renderer, patient, (*crisis, intent), source, now))
    if risk and ctx.alerting is not None:
        await repo.audit(now, "patient", "risk_language", f"patient:{patient.id}")
        await ctx.alerting.on_events(repo, patient, risk, now, crisis_sent_at=now)


async def membership(
    ctx: Context, repo: Repository, patient: Patient, status: str, now: datetime
) -> None:
    """Telegram's my_chat_member: the patient blocked (kicked) or unblocked the bot.

    Only a patient we are measuring becomes blocked: an opted-out or discharged patient's
    block changes nothing, so unblocking later can never turn them back to active without
    their START (consent is the patient's word, not the chat's)."""
    if status == "kicked" and patient.status in ("active", "paused"):
        if ctx.alerting is not None:
            await ctx.alerting.unreachable(repo, patient, "blocked", now)
        patient.status = "blocked"
    elif status == "member" and patient.status == "blocked":
        patient.status = "active"
    else:
        return
    await repo.add(patient)
    await repo.audit(
        now,
        "patient",
        f"bot_{'blocked' if status == 'kicked' else 'unblocked'}",
        f"patient:{patient.id}",
    )

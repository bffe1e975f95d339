"""The tick's reminder and expiry stages: re-ask the current question of open check-ins
whose reminder is due (not in quiet hours, not while paused), and close check-ins past
their expiry, keeping and scoring partial answers. Each check-in is handled in its own
transaction under its patient's lock; one that fails is logged by id and left."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel.ext.asyncio.session import AsyncSession

from bot.app.context import Context
from bot.app.conversations import whatsapp_window as window
from bot.app.conversations.quiet_hours import quiet_end, quiet_now
from bot.app.conversations.transitions import apply_transition
from bot.domain import conversation as core
from bot.storage import checkins as q
from bot.storage.repository import Repository
from bot.storage.tables import Patient

log = logging.getLogger(__name__)
WAIT_RECHECK = timedelta(hours=1)  # a reminder held for the WhatsApp window looks again


async def _waiting(session: AsyncSession, patient: Patient, now: datetime) -> bool:
    """The patient's messages wait for WhatsApp's window: the check-in's clocks wait."""
    return patient.channel == "whatsapp" and await window.waiting(session, patient, now)


@dataclass(frozen=True)
class Reminders:
    ctx: Context

    async def remind_due(self, limit: int = 500) -> int:
        """Re-ask the current question of open check-ins whose reminder is due."""
        async with self.ctx.db.transaction() as session:
            due = await q.reminders_due(session, self.ctx.clock(), limit)
        sent = 0
        for checkin_id in due:
            try:
                sent += await self._remind(checkin_id)
            except Exception as exc:
                log.error("check-in %s could not be reminded (%s)", checkin_id, type(exc).__name__)
        return sent

    async def expire_due(self, limit: int = 500) -> int:
        """Close check-ins past their expiry, keeping and scoring partial answers."""
        async with self.ctx.db.transaction() as session:
            overdue = [c.id for c in await q.overdue(session, self.ctx.clock(), limit)]
        for checkin_id in overdue:
            assert checkin_id is not None
            try:
                await self._expire(checkin_id)
            except Exception as exc:
                log.error("check-in %s could not expire (%s)", checkin_id, type(exc).__name__)
        return len(overdue)

    async def _remind(self, checkin_id: int) -> int:
        ctx = self.ctx
        async with ctx.db.transaction() as session:
            repo = Repository(session)
            checkin = await repo.get_checkin(checkin_id)
            if checkin is None:
                return 0
            patient = await repo.lock_patient(checkin.patient_id)
            await session.refresh(checkin)
            now = ctx.clock()
            due = checkin.next_reminder_at
            if patient is None or due is None or due > now or checkin.status not in q.OPEN_STATUSES:
                return 0  # answered, closed or reminded meanwhile
            if patient.status != "active":
                checkin.next_reminder_at = None
                await repo.add(checkin)
                return 0
            if quiet_now(ctx.clinic, patient, now):
                checkin.next_reminder_at = quiet_end(ctx.clinic, patient, now)
                await repo.add(checkin)
                return 0
            if await _waiting(session, patient, now):  # the reply to the template moves it on
                checkin.next_reminder_at = now + WAIT_RECHECK
                await repo.add(checkin)
                return 0
            checkin.reminders_sent += 1
            transition = core.remind(core.from_json(checkin.state), ctx.setting(patient), now)
            source = f"remind{checkin_id}:{checkin.reminders_sent}"
            await apply_transition(ctx, repo, patient, checkin, transition, source, now, None)
            return 1

    async def _expire(self, checkin_id: int) -> None:
        ctx = self.ctx
        async with ctx.db.transaction() as session:
            repo = Repository(session)
            checkin = await repo.get_checkin(checkin_id)
            if checkin is None:
                return
            patient = await repo.lock_patient(checkin.patient_id)
            await session.refresh(checkin)
            if patient is None or checkin.status not in ("pending", *q.OPEN_STATUSES):
                return
            if await _waiting(session, patient, ctx.clock()):
                return  # its clocks wait for the WhatsApp window (whatsapp_window.MAX_WAIT)
            # closed at its expiry time, not the tick's: a pre-session check-in expires as
            # its session starts, and what was answered stays on the right side of it
            now = min(ctx.clock(), checkin.expires_at)
            conv = core.from_json(checkin.state)
            if conv.status == "pending":
                conv = core.Conversation(conv.instruments, status="asking")  # never sent: missed
            transition = core.expire(conv, ctx.setting(patient), now)
            source = f"expire{checkin_id}"
            await apply_transition(ctx, repo, patient, checkin, transition, source, now, None)

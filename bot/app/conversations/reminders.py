"""The tick's reminder and expiry stages: re-ask the current question of open check-ins
whose reminder is due (not in quiet hours, not while paused), and close check-ins past
their expiry, keeping and scoring partial answers. Each check-in is handled in its own
transaction under its patient's lock; one that fails is logged by id and left.

Both run on the delivery clock (bot/domain/deadlines.py): each stage first stamps the
check-ins whose opening the provider has accepted since the last pass (at most every
``STAMP_EVERY``), moving their reminder and expiry to count from that moment; a check-in
not yet delivered is never reminded. One whose opening is still not out when its planned
expiry comes (its session's start, for a pre-session check-in) is cancelled, its queued
opening withdrawn and the cancellation audited (``checkin_undelivered``): never expired
as missed."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from bot.app.context import Context
from bot.app.conversations import whatsapp_window as window
from bot.app.conversations.quiet_hours import quiet_end, quiet_now
from bot.app.conversations.transitions import apply_transition, update_checkin
from bot.domain import conversation as core
from bot.domain import deadlines
from bot.storage import checkins as q
from bot.storage import delivery_clock as clock
from bot.storage.repository import Repository
from bot.storage.tables import Checkin, Patient

log = logging.getLogger(__name__)
WAIT_RECHECK = timedelta(hours=1)  # a reminder held for the WhatsApp window looks again
# A stamping pass looks at every open check-in not yet stamped: two index probes each, but
# 100,000 of them while a wave goes out at 30 a second (1-2 s a pass on two busy cores).
# Reminders wait hours and count from the delivery itself, not from its stamp, and the
# expiry stage looks up an overdue check-in's delivery itself; so a pass every 30 s of the
# clock is soon enough, and the tick's two stages share one.
STAMP_EVERY = timedelta(seconds=30)


async def _waiting(session: AsyncSession, patient: Patient, now: datetime) -> bool:
    """The patient's messages wait for WhatsApp's window: the check-in's clocks wait."""
    return patient.channel == "whatsapp" and await window.waiting(session, patient, now)


@dataclass(frozen=True)
class Reminders:
    ctx: Context
    stamped_at: list[datetime] = field(default_factory=list)  # the last stamping pass

    async def remind_due(self, limit: int = 500) -> int:
        """Re-ask the current question of open check-ins whose reminder is due."""
        await self.stamp_delivered(limit)
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
        await self.stamp_delivered(limit)
        async with self.ctx.db.transaction() as session:
            overdue = [c.id for c in await q.overdue(session, self.ctx.clock(), limit)]
        for checkin_id in overdue:
            assert checkin_id is not None
            try:
                await self._expire(checkin_id)
            except Exception as exc:
                log.error("check-in %s could not expire (%s)", checkin_id, type(exc).__name__)
        return len(overdue)

    async def stamp_delivered(self, limit: int = 500) -> int:
        """Move the deadlines of check-ins whose opening went out since the last pass to
        count from its delivery; again while batches come back full. How many (none if a
        pass ran less than `STAMP_EVERY` ago by the clock)."""
        now = self.ctx.clock()
        if self.stamped_at and self.stamped_at[0] <= now < self.stamped_at[0] + STAMP_EVERY:
            return 0
        self.stamped_at[:] = [now]
        stamped = 0
        while True:
            async with self.ctx.db.transaction() as session:
                rows = await clock.delivered_unstamped(session, limit)
                await clock.stamp(session, [_stamped(row, row.delivered) for row in rows])
            stamped += len(rows)
            if len(rows) < limit:
                return stamped

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
            if not _delivered(checkin):
                return 0  # not asked yet: its clock has not started
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
            verdict = deadlines.at_expiry(_delivered(checkin), checkin.expires_at, ctx.clock())
            if checkin.status != "pending":  # started: on the delivery clock
                if verdict == "wait":
                    return  # given more time since it was found overdue
                if verdict == "give_up" and not await self._undelivered(repo, patient, checkin):
                    return  # cancelled as never delivered, or delivered after all: later
            # closed at its expiry time, not the tick's: a pre-session check-in expires as
            # its session starts, and what was answered stays on the right side of it
            now = min(ctx.clock(), checkin.expires_at)
            conv = core.from_json(checkin.state)
            if conv.status == "pending":
                conv = core.Conversation(conv.instruments, status="asking")  # never sent: missed
            transition = core.expire(conv, ctx.setting(patient), now)
            source = f"expire{checkin_id}"
            await apply_transition(ctx, repo, patient, checkin, transition, source, now, None)

    async def _undelivered(self, repo: Repository, patient: Patient, checkin: Checkin) -> bool:
        """An open check-in at its planned expiry with no delivery stamped. If its opening
        went out since the last stamp, it is stamped now (True: its time is up anyway);
        if not, it was never asked: cancelled, its opening withdrawn, audited."""
        assert checkin.id is not None and patient.id is not None
        now = self.ctx.clock()
        delivered = await clock.first_delivery(repo.session, checkin.id)
        if delivered is not None:
            row = _stamped(checkin, delivered)
            checkin.delivered_at = delivered
            checkin.next_reminder_at = row["next_reminder_at"]
            checkin.expires_at = row["expires_at"]
            await repo.add(checkin)
            return deadlines.at_expiry(True, checkin.expires_at, now) == "expire"
        at = min(now, checkin.expires_at)
        update_checkin(checkin, replace(core.from_json(checkin.state), status="cancelled"), at)
        await repo.add(checkin)
        await q.release_held(repo.session, patient.id)
        await clock.withdraw_openings(repo.session, checkin.id, "never delivered: given up")
        await repo.audit(
            at, "system", "checkin_undelivered", f"patient:{patient.id}", checkin=checkin.id
        )
        return False


def _delivered(checkin: Checkin) -> bool:
    """Known to have reached the patient: stamped, or answered or paused by them."""
    return checkin.delivered_at is not None or checkin.status not in ("pending", "sent")


def _stamped(row: Any, delivered: datetime) -> dict[str, Any]:
    """The columns a stamp writes: delivery, and the deadlines counted from it."""
    moved = deadlines.from_delivery(clock.deadlines_of(row), delivered)
    return {
        "id": row.id,
        "version": row.version,
        "delivered_at": delivered,
        "next_reminder_at": moved.next_reminder_at,
        "expires_at": moved.expires_at,
    }

"""Check-ins as an operator handles them: queue one by hand, look through them, cancel one
that should not go ahead. Each is audited.

Cancelling tells the patient nothing: a planned check-in is simply never sent; in an open
one no further question or reminder comes, the answers given so far are kept, and a later
reply is treated like any message outside a check-in. The check-in held behind it (one
patient answers one at a time) is released at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlmodel import col, select

from bot.app.operator.refusals import Refused
from bot.app.operator.views import CheckinView
from bot.app.ports import Clock
from bot.app.services import Services
from bot.domain.errors import NotFound
from bot.storage import checkins as q
from bot.storage.database import Database
from bot.storage.repository import Repository
from bot.storage.tables import Checkin

CANCELLABLE = ("pending", "sent", "in_progress", "paused")  # not yet finished


@dataclass(frozen=True)
class Queued:
    checkin: CheckinView
    patient_status: str  # "unknown" if the patient is gone; not "active": it waits


async def queue(
    db: Database,
    clock: Clock,
    services: Services,
    patient_id: int,
    instruments: Sequence[str],
    *,
    ignore_quiet_hours: bool = False,
) -> Queued:
    """Queue a check-in for now; the running service sends it within one tick (after the
    patient's quiet hours, unless `ignore_quiet_hours`)."""
    checkin = await services.asking.ask(
        patient_id, instruments, ignore_quiet_hours=ignore_quiet_hours
    )
    queued = CheckinView.of(checkin)
    async with db.transaction() as session:
        repo = Repository(session)
        patient = await repo.get_patient(patient_id)
        await repo.audit(
            clock(), "operator", "checkin_queued", f"patient:{patient_id}",
            checkin=checkin.id, instruments=list(instruments),
        )  # fmt: skip
    return Queued(queued, patient.status if patient else "unknown")


async def list_checkins(
    db: Database, *, patient_id: int | None = None, status: str | None = None, limit: int = 100
) -> list[CheckinView]:
    """Check-ins (of one patient, in one status), latest due first."""
    statement = select(Checkin).order_by(col(Checkin.due_at).desc(), col(Checkin.id).desc())
    if patient_id is not None:
        statement = statement.where(Checkin.patient_id == patient_id)
    if status is not None:
        statement = statement.where(Checkin.status == status)
    async with db.transaction() as session:
        if patient_id is not None and await Repository(session).get_patient(patient_id) is None:
            raise NotFound("patient", patient_id)
        return [CheckinView.of(c) for c in (await session.exec(statement.limit(limit))).all()]


async def cancel(db: Database, clock: Clock, checkin_id: int) -> str:
    """Cancel a check-in that is planned or under way; the status it had."""
    async with db.transaction() as session:
        repo = Repository(session)
        found = await repo.get_checkin(checkin_id)
        if found is None:
            raise NotFound("check-in", checkin_id)
        await repo.lock_patient(found.patient_id)  # as the services do: one writer each
        await session.refresh(found)
        was = found.status
        if was not in CANCELLABLE:
            raise Refused(
                f"check-in {checkin_id} is {was}; only {', '.join(CANCELLABLE)} ones cancel"
            )
        found.status, found.next_reminder_at, found.lease_until = "cancelled", None, None
        await repo.add(found)
        await q.release_held(session, found.patient_id)
        subject = f"patient:{found.patient_id}"
        await repo.audit(
            clock(), "operator", "checkin_cancelled", subject, checkin=checkin_id, was=was
        )
        return was

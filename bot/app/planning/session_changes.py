"""Treatment sessions and the operator's changes that re-plan a patient: a session added,
moved or cancelled, a protocol assigned. Sessions are numbered 1, 2, ... in time order
(cancelled ones keep no number); each change is audited with what it cancelled and planned.
:class:`bot.app.planning.planner.Planner` makes the changes, in one transaction each.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.domain.errors import ConfigError, NotFound
from bot.storage.repository import Repository
from bot.storage.tables import Checkin, Patient, TreatmentSession

# (session, patient, now) -> (check-ins cancelled, check-ins planned)
Replan = Callable[[AsyncSession, Patient, datetime], Awaitable[tuple[int, list[Checkin]]]]


@dataclass(frozen=True)
class Change:
    """What an operator's change did: the session row, check-ins cancelled and planned."""

    session: TreatmentSession | None
    cancelled: int
    planned: list[Checkin]


async def sessions_of(session: AsyncSession, patient_id: int) -> list[TreatmentSession]:
    statement = (
        select(TreatmentSession)
        .where(TreatmentSession.patient_id == patient_id)
        .order_by(col(TreatmentSession.at), col(TreatmentSession.id))
    )
    return list((await session.exec(statement)).all())


async def renumber(session: AsyncSession, patient_id: int) -> list[TreatmentSession]:
    """Number the patient's sessions that will happen 1, 2, ... in time order."""
    rows = await sessions_of(session, patient_id)
    active = [r for r in rows if r.cancelled_at is None]
    for number, row in enumerate(active, start=1):
        if row.number != number:
            row.number = number
            session.add(row)
    await session.flush()
    return active


async def locked_patient(session: AsyncSession, patient_id: int) -> Patient:
    patient = await Repository(session).lock_patient(patient_id)
    if patient is None:
        raise NotFound("patient", patient_id)
    return patient


async def session_row(session: AsyncSession, session_id: int) -> TreatmentSession:
    """A treatment session that may still change (not cancelled)."""
    row = await session.get(TreatmentSession, session_id)
    if row is None:
        raise NotFound("treatment session", session_id)
    if row.cancelled_at is not None:
        raise ConfigError("treatment", str(session_id), "this session was cancelled")
    return row


async def record_change(
    session: AsyncSession,
    patient: Patient,
    row: TreatmentSession | None,
    action: str,
    now: datetime,
    replan: Replan,
    actor: str = "operator",
    note: str | None = None,
) -> Change:
    """After a change to the patient's sessions or protocol (`row`: the session changed,
    None for a protocol): renumber, re-plan, audit `action` by `actor` (with `note`: what a
    skipped or repeated local time became)."""
    assert patient.id is not None
    await session.flush()
    await renumber(session, patient.id)
    cancelled, added = await replan(session, patient, now)
    detail: dict[str, Any] = {"cancelled": cancelled, "planned": len(added)}
    if row is not None:
        await session.refresh(row)
        detail |= {"session": row.id, "number": row.number}
    else:
        detail["protocol"] = patient.protocol
    if note is not None:
        detail["note"] = note
    await Repository(session).audit(now, actor, action, f"patient:{patient.id}", **detail)
    return Change(row, cancelled, added)

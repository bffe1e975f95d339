"""The rows a planning pass reads and writes, a few statements however many patients it
plans: the patients it claims and locks, their treatment sessions, and the occurrences and
check-ins it stores. :class:`bot.app.planning.planner.Planner` runs the pass.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.domain import conversation as core
from bot.domain.schedule import Bundle, Occurrence, Session, Stored
from bot.instruments import Catalog
from bot.storage import bulk
from bot.storage.repository import Repository
from bot.storage.tables import Checkin, Patient, PlannedOccurrence, TreatmentSession

log = logging.getLogger(__name__)


def enrolled_at(patient: Patient) -> datetime:
    """The anchor of enrollment-relative rules: consent (or link), else the record's creation."""
    return patient.consent_at or patient.created_at


def domain_sessions(rows: Sequence[TreatmentSession]) -> list[Session]:
    return [Session(r.number, r.at, cancelled=r.cancelled_at is not None) for r in rows]


async def claim_due(
    repo: Repository, now: datetime, before: datetime, limit: int, lease: timedelta
) -> list[int]:
    """Active patients with a protocol whose plan ends before `before`, leased to us."""
    statement = (
        select(Patient.id)
        .where(
            Patient.status == "active",
            col(Patient.protocol).is_not(None),
            (col(Patient.planned_until).is_(None)) | (col(Patient.planned_until) < before),
            (col(Patient.plan_lease_until).is_(None)) | (col(Patient.plan_lease_until) < now),
        )
        .order_by(col(Patient.id))
        .limit(limit)
    )
    if repo.dialect == "postgresql":
        statement = statement.with_for_update(skip_locked=True)
    ids = [i for i in (await repo.session.exec(statement)).all() if i is not None]
    if ids:
        await repo.session.exec(
            update(Patient)
            .where(bulk.among(repo.dialect, col(Patient.id), ids))
            .values(plan_lease_until=now + lease)
        )
    return ids


@dataclass(frozen=True)
class Plannable:
    """What planning reads of a patient (from a locked row, or the caller's ORM object)."""

    id: int
    status: str
    protocol: str | None
    timezone: str
    language: str
    enrolled_at: datetime
    planned_until: datetime | None

    @classmethod
    def of(cls, patient: Patient) -> Plannable:
        assert patient.id is not None
        return cls(
            patient.id, patient.status, patient.protocol, patient.timezone, patient.language,
            enrolled_at(patient), patient.planned_until,
        )  # fmt: skip


@dataclass
class PatientPlan:
    """One patient's planning pass: the plan's new end, the occurrences due up to it, the
    bundles not stored yet, and the check-ins this pass created (ids, and when each is
    due)."""

    patient: Plannable
    planned_until: datetime | None
    found: list[Occurrence] = field(default_factory=list)
    groups: list[Bundle] = field(default_factory=list)
    created: list[int] = field(default_factory=list)
    due_at: dict[int, datetime] = field(default_factory=dict)


def _checkin_row(patient_id: int, group: Bundle, instruments: tuple[str, ...]) -> dict[str, Any]:
    reminder = group.reminder_after
    return {
        "patient_id": patient_id,
        # unique by itself: the occurrences' keys are what keep planning idempotent, and a
        # bundle planned again after a change must not meet its old row
        "idempotency_key": f"plan:{patient_id}:{group.key}:{uuid.uuid4().hex[:12]}",
        "instruments": list(instruments),
        "status": "pending",
        "due_at": group.due_at,
        "expires_at": group.expires_at,
        "expire_after_s": int(group.expire_after.total_seconds()),
        "closes_at": group.closes_at,
        "reminder_after_s": int(reminder.total_seconds()) if reminder else None,
        "max_reminders": group.max_reminders if reminder else 0,
        "origin": "plan",
        "ignore_quiet_hours": group.ignore_quiet_hours,
        "state": core.to_json(core.Conversation(instruments)),
        "version": 1,
    }


_PLANNABLE = ("id", "status", "protocol", "timezone", "language", "consent_at", "created_at",
              "planned_until")  # fmt: skip


async def lock_plannable(session: AsyncSession, ids: Sequence[int]) -> list[Plannable]:
    """Lock the patients `ids` in id order (two workers never deadlock); what planning reads."""
    table = bulk.table_of(Patient)
    statement = (
        sa.select(*(table.c[name] for name in _PLANNABLE))
        .where(bulk.among(_dialect(session), table.c.id, ids))
        .order_by(table.c.id)
        .with_for_update()
    )
    rows = await (await session.connection()).execute(statement)
    return [
        Plannable(r.id, r.status, r.protocol, r.timezone, r.language,
                   r.consent_at or r.created_at, r.planned_until)
        for r in rows
    ]  # fmt: skip


async def sessions_by_patient(
    session: AsyncSession, patient_ids: Sequence[int]
) -> dict[int, list[Session]]:
    """The treatment sessions of each patient, in time order."""
    if not patient_ids:
        return {}
    statement = (
        select(TreatmentSession)
        .where(bulk.among(_dialect(session), col(TreatmentSession.patient_id), patient_ids))
        .order_by(col(TreatmentSession.at), col(TreatmentSession.id))
    )
    found: dict[int, list[TreatmentSession]] = {}
    for row in (await session.exec(statement)).all():
        found.setdefault(row.patient_id, []).append(row)
    return {patient_id: domain_sessions(rows) for patient_id, rows in found.items()}


async def stored_occurrences(
    session: AsyncSession, patient_ids: Sequence[int], *, sessions_only: bool = True
) -> dict[int, list[Stored]]:
    """The occurrences stored for each patient with their check-in's status (only the
    session-relative ones with `sessions_only`: what a moved session is matched against)."""
    if not patient_ids:
        return {}
    occurrence, checkin = bulk.table_of(PlannedOccurrence), bulk.table_of(Checkin)
    statement = (
        sa.select(
            occurrence.c.patient_id, occurrence.c.key, occurrence.c.rule,
            occurrence.c.session_number, occurrence.c.due_at, checkin.c.status,
            checkin.c.completed_at, checkin.c.id.label("checkin_id"), checkin.c.expires_at,
        )
        .select_from(occurrence.outerjoin(checkin, checkin.c.id == occurrence.c.checkin_id))
        .where(bulk.among(_dialect(session), occurrence.c.patient_id, patient_ids))
        .order_by(occurrence.c.due_at, occurrence.c.id)
    )  # fmt: skip
    if sessions_only:
        statement = statement.where(occurrence.c.session_number.is_not(None))
    found: dict[int, list[Stored]] = {}
    for row in await (await session.connection()).execute(statement):
        found.setdefault(row.patient_id, []).append(
            Stored(row.key, row.rule, row.session_number, _aware(row.due_at),
                   row.status or "pending", row.completed_at and _aware(row.completed_at),
                   row.checkin_id, row.expires_at and _aware(row.expires_at))
        )  # fmt: skip
    return found


def _dialect(session: AsyncSession) -> str:
    return session.get_bind().dialect.name


def _aware(at: datetime) -> datetime:
    """A time read by a core statement (SQLite hands back naive UTC)."""
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


async def store_plans(
    session: AsyncSession, plans: Sequence[PatientPlan], catalog: Catalog
) -> None:
    """Insert a check-in for each bundle, then the bundles' occurrences pointing at it. A
    bundle one of whose occurrences was stored already (planned meanwhile: never twice)
    keeps none: its check-in is deleted, and the occurrences inserted with it point at
    none, as if stored first. Inserting the check-ins first writes each occurrence once
    (linking them afterwards rewrote every occurrence of a wave)."""
    checkins: list[dict[str, Any]] = []
    for p in plans:
        for group in p.groups:
            instruments = _askable(catalog, p.patient, group.instruments)
            checkins.append(_checkin_row(p.patient.id, group, instruments) if instruments else {})
    stored = await bulk.insert_new(
        session, Checkin, [row for row in checkins if row], ("idempotency_key",),
        returning=("id", "idempotency_key"),
    )  # fmt: skip
    created = {row.idempotency_key: row.id for row in stored}
    ids = iter([created.get(row["idempotency_key"]) if row else None for row in checkins])
    bundles = [(p, g, next(ids)) for p in plans for g in p.groups]
    occurrences = [
        {"patient_id": p.patient.id, "key": m.key, "rule": m.rule,
         "session_number": m.session, "due_at": m.due_at, "checkin_id": checkin_id}
        for p, g, checkin_id in bundles for m in g.members
    ]  # fmt: skip
    inserted = await bulk.insert_new(
        session, PlannedOccurrence, occurrences, ("patient_id", "key"),
        returning=("patient_id", "key"),
    )  # fmt: skip
    ours = {(row.patient_id, row.key) for row in inserted}
    kept: list[tuple[PatientPlan, Bundle, int]] = []
    dropped: list[int] = []
    for p, g, checkin_id in bundles:
        if checkin_id is None:
            continue
        if all((p.patient.id, m.key) in ours for m in g.members):
            kept.append((p, g, checkin_id))
        else:
            dropped.append(checkin_id)
    await _drop_checkins(session, dropped)
    for p, g, checkin_id in kept:
        p.created.append(checkin_id)
        p.due_at[checkin_id] = g.due_at


async def _drop_checkins(session: AsyncSession, ids: Sequence[int]) -> None:
    """Delete check-ins just inserted whose bundle was planned meanwhile, unlinking the
    occurrences inserted with them."""
    if not ids:
        return
    occurrence, checkin = bulk.table_of(PlannedOccurrence), bulk.table_of(Checkin)
    connection = await session.connection()
    await connection.execute(
        sa.update(occurrence).where(occurrence.c.checkin_id.in_(ids)).values(checkin_id=None)
    )
    await connection.execute(sa.delete(checkin).where(checkin.c.id.in_(ids)))


def _askable(catalog: Catalog, patient: Plannable, instruments: Sequence[str]) -> tuple[str, ...]:
    """The instruments of the catalog, kept even without wording in the patient's language
    (or a licensed one's wording): the start stage leaves those out when the check-in comes
    due and tells the clinician (the ``wording_missing`` alert), so none is dropped
    silently, and a language added meanwhile is asked. Only a key the catalog does not
    know at all (a protocol checked against another catalog) is left out here."""
    keep = []
    for key in instruments:
        if key not in catalog.keys:
            log.warning("patient %s: protocol instrument %s is not known; skipped",
                        patient.id, key)  # fmt: skip
            continue
        keep.append(key)
    return tuple(keep)

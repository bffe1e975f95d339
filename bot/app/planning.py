"""Protocols become check-in rows: planning, re-planning when treatment changes, preview.

The database is the only source of truth. A patient's protocol is planned a horizon
ahead (``[scheduler] plan_ahead_days``) into :class:`PlannedOccurrence` rows, unique per
``(patient, occurrence key)``, and :class:`Checkin` rows (one per bundle of occurrences
due close together). Planning the same patient twice, or by two workers at once, finds
the occurrences already stored and creates nothing new; the tick's start stage then sends
each check-in once (see :meth:`bot.app.starting.Starting.start_due`).

* :meth:`Planner.plan_due` is the tick's planning stage: it claims patients whose stored
  plan ends within half the horizon (PostgreSQL: ``FOR UPDATE SKIP LOCKED`` and a lease,
  so workers take different patients) and plans each in its own transaction under the
  patient's row lock.
* :meth:`Planner.replan` runs when the plan's inputs change (treatment sessions, the
  protocol): check-ins planned but not yet sent are cancelled with their occurrences, and
  the patient is planned again at once. What was already sent stays, and its occurrence
  keys keep it from being planned twice.
* :func:`preview` is pure: what the protocol plans for a patient over some days.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from time import monotonic
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy import delete, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.app.ports import Clock
from bot.config import Clinic
from bot.domain import conversation as core
from bot.domain.errors import ConfigError, NotFound
from bot.domain.schedule import (
    Bundle,
    Occurrence,
    Protocol,
    QuietHours,
    Session,
    bundle,
    plan,
)
from bot.instruments import Catalog
from bot.storage import bulk
from bot.storage.database import Database
from bot.storage.repository import Repository
from bot.storage.tables import Checkin, Patient, PlannedOccurrence, TreatmentSession

log = logging.getLogger(__name__)
CATCH_UP_S = 5.0  # how long a tick's stage goes on claiming while it finds full batches
CHUNK = 250  # patients planned in one transaction


def quiet_hours(clinic: Clinic) -> QuietHours:
    return QuietHours(clinic.quiet_hours_start_local, clinic.quiet_hours_end_local)


def enrolled_at(patient: Patient) -> datetime:
    """The anchor of enrollment-relative rules: consent (or link), else the record's creation."""
    return patient.consent_at or patient.created_at


def domain_sessions(rows: Sequence[TreatmentSession]) -> list[Session]:
    return [Session(r.number, r.at, cancelled=r.cancelled_at is not None) for r in rows]


async def sessions_of(session: AsyncSession, patient_id: int) -> list[TreatmentSession]:
    statement = (
        select(TreatmentSession)
        .where(TreatmentSession.patient_id == patient_id)
        .order_by(col(TreatmentSession.at), col(TreatmentSession.id))
    )
    return list((await session.exec(statement)).all())


def check_protocols(protocols: Mapping[str, Protocol], catalog: Catalog, source: str) -> None:
    """Every instrument a protocol names is loaded (or waits for its licensed wording)."""
    for protocol in protocols.values():
        for rule in protocol.rules:
            for key in rule.instruments:
                if key in catalog.instruments:
                    continue
                where = f"protocols.{protocol.name}.rules.{rule.name}.instruments"
                if key in catalog.unavailable:
                    why = f"{key!r} cannot be used yet: {catalog.unavailable[key]}"
                else:
                    known = ", ".join(sorted(catalog.instruments))
                    why = f"unknown instrument {key!r} (loaded: {known})"
                raise ConfigError(source, where, why)


@dataclass(frozen=True)
class Change:
    """What an operator's change did: the session row, check-ins cancelled and planned."""

    session: TreatmentSession | None
    cancelled: int
    planned: list[Checkin]


@dataclass
class Planner:
    db: Database
    catalog: Catalog
    protocols: Mapping[str, Protocol]
    clinic: Clinic
    clock: Clock
    plan_ahead: timedelta = timedelta(days=7)
    bundle_window: timedelta = timedelta(hours=2)
    batch: int = 500
    lease: timedelta = timedelta(minutes=2)
    catch_up_s: float = CATCH_UP_S

    def protocol(self, name: str) -> Protocol:
        found = self.protocols.get(name)
        if found is None:
            known = ", ".join(sorted(self.protocols)) or "none configured"
            raise ConfigError("protocols", name, f"no such protocol (known: {known})")
        return found

    # ---- the tick's stage -------------------------------------------------------------

    async def plan_due(self) -> int:
        """Plan the patients whose stored plan runs out soon; how many check-ins were added.

        Claims `batch` patients, and again while claims come back full, for up to
        `catch_up_s` seconds: thousands enrolled at once are planned at the database's
        pace, not a batch a tick, and the tick's other stages still run within seconds."""
        deadline = monotonic() + self.catch_up_s
        added = 0
        while True:
            now = self.clock()
            async with self.db.transaction() as session:
                ids = await _claim(
                    Repository(session), now, now + self.plan_ahead / 2, self.batch, self.lease
                )
            added += await self._plan_claimed(ids, now)
            if len(ids) < self.batch or monotonic() >= deadline:
                return added

    async def _plan_claimed(self, ids: Sequence[int], now: datetime) -> int:
        added = 0
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start : start + CHUNK]
            try:  # many in one transaction, a few statements for all of them
                async with self.db.transaction() as session:
                    added += await self.plan_chunk(session, chunk, now)
                continue
            except Exception as exc:
                log.warning("planning %d patients together failed (%s); one by one now",
                            len(chunk), type(exc).__name__)  # fmt: skip
            for patient_id in chunk:  # one patient's data never holds up the others
                try:
                    added += await self.plan_patient(patient_id)
                except Exception as exc:
                    log.error(
                        "patient %s could not be planned (%s)", patient_id, type(exc).__name__
                    )
        return added

    async def plan_chunk(self, session: AsyncSession, ids: Sequence[int], now: datetime) -> int:
        """Lock the patients `ids` (in id order) and plan them all; the check-ins added."""
        patients = await _lock_plannable(session, ids)
        plans = await self._plan_many(session, patients, now)
        await bulk.update_by_id(
            session,
            Patient,
            [{"id": p.patient.id, "planned_until": p.planned_until, "plan_lease_until": None}
             for p in plans],
        )  # fmt: skip
        return sum(len(p.created) for p in plans)

    async def plan_patient(self, patient_id: int) -> int:
        async with self.db.transaction() as session:
            patient = await Repository(session).lock_patient(patient_id)
            if patient is None:
                return 0
            return len(await self.plan_locked(session, patient, self.clock()))

    # ---- in the caller's transaction, the patients' rows locked ------------------------

    async def plan_locked(
        self, session: AsyncSession, patient: Patient, now: datetime
    ) -> list[Checkin]:
        """Store the patient's check-ins up to the horizon; the check-ins added."""
        await session.flush()  # what the caller changed (sessions, protocol) is read below
        (done,) = await self._plan_many(session, [_Plannable.of(patient)], now)
        patient.plan_lease_until = None
        patient.planned_until = done.planned_until
        session.add(patient)
        await session.flush()
        if not done.created:
            return []
        statement = select(Checkin).where(col(Checkin.id).in_(done.created))
        return list((await session.exec(statement.order_by(col(Checkin.id)))).all())

    async def _plan_many(
        self, session: AsyncSession, patients: Sequence[_Plannable], now: datetime
    ) -> list[_Plan]:
        """Plan `patients` (their rows locked): a few statements, however many they are."""
        plannable = [p.id for p in patients if p.status == "active" and p.protocol is not None]
        sessions = await _sessions_by_patient(session, plannable)
        plans = [self._intend(p, sessions.get(p.id, []), now) for p in patients]
        known = await _known_pairs(session, plans)
        end = now + self.plan_ahead
        for p in plans:
            fresh = [o for o in p.found if (p.patient.id, o.key) not in known]
            # a bundle due past the horizon waits for the next pass, with whatever joins it
            p.groups = [g for g in bundle(fresh, self.bundle_window) if g.due_at < end]
        await self._store(session, plans)
        return plans

    def _intend(self, patient: _Plannable, sessions: list[Session], now: datetime) -> _Plan:
        """What the protocol plans for the patient up to the horizon (pure)."""
        end = now + self.plan_ahead
        if patient.status != "active" or patient.protocol is None:
            return _Plan(patient, None)  # planned from scratch when it becomes plannable
        protocol = self.protocols.get(patient.protocol)
        if protocol is None:
            log.warning("patient %s has a protocol that is not configured", patient.id)
            return _Plan(patient, end)  # looked at again next horizon, not every tick
        catchup = max(rule.expires_after for rule in protocol.rules)
        found = plan(
            protocol,
            timezone=patient.timezone,
            enrolled_at=patient.enrolled_at,
            sessions=sessions,
            start=patient.planned_until or now - catchup,
            end=end + self.bundle_window,
            quiet=quiet_hours(self.clinic),
        )
        # not already too late
        return _Plan(patient, end, [o for o in found if o.due_at + o.expires_after > now])

    async def replan(
        self, session: AsyncSession, patient: Patient, now: datetime
    ) -> tuple[int, list[Checkin]]:
        """Cancel the planned check-ins not sent yet and plan again: (cancelled, added)."""
        assert patient.id is not None
        cancelled = (
            await session.exec(
                update(Checkin)
                .where(
                    col(Checkin.patient_id) == patient.id,
                    col(Checkin.origin) == "plan",
                    col(Checkin.status) == "pending",
                )
                .values(status="cancelled", version=col(Checkin.version) + 1)
                .returning(col(Checkin.id))
            )
        ).all()
        ids = [row[0] for row in cancelled]
        if ids:
            await session.exec(
                delete(PlannedOccurrence).where(col(PlannedOccurrence.checkin_id).in_(ids))
            )
        patient.planned_until = None
        return len(ids), await self.plan_locked(session, patient, now)

    # ---- what operators change ----------------------------------------------------------

    async def add_session(self, patient_id: int, at: datetime, kind: str) -> Change:
        """Record a treatment session; its check-ins (and everyone after it) follow."""
        async with self.db.transaction() as session:
            patient = await locked_patient(session, patient_id)
            row = TreatmentSession(patient_id=patient_id, number=0, kind=kind, at=at)
            session.add(row)
            await session.flush()
            return await self._changed(session, patient, row, "treatment_added")

    async def move_session(self, session_id: int, at: datetime) -> Change:
        async with self.db.transaction() as session:
            row = await self._session_row(session, session_id)
            patient = await locked_patient(session, row.patient_id)
            row.at = at
            session.add(row)
            return await self._changed(session, patient, row, "treatment_moved")

    async def cancel_session(self, session_id: int) -> Change:
        async with self.db.transaction() as session:
            row = await self._session_row(session, session_id)
            patient = await locked_patient(session, row.patient_id)
            row.cancelled_at = self.clock()
            session.add(row)
            return await self._changed(session, patient, row, "treatment_cancelled")

    async def assign(self, patient_id: int, protocol: str | None) -> Change:
        """Give the patient a protocol (None: none); planned check-ins follow at once."""
        if protocol is not None:
            self.protocol(protocol)
        async with self.db.transaction() as session:
            patient = await locked_patient(session, patient_id)
            patient.protocol = protocol
            session.add(patient)
            return await self._changed(session, patient, None, "protocol_assigned")

    async def _session_row(self, session: AsyncSession, session_id: int) -> TreatmentSession:
        row = await session.get(TreatmentSession, session_id)
        if row is None:
            raise NotFound("treatment session", session_id)
        if row.cancelled_at is not None:
            raise ConfigError("treatment", str(session_id), "this session was cancelled")
        return row

    async def _changed(
        self,
        session: AsyncSession,
        patient: Patient,
        row: TreatmentSession | None,
        action: str,
    ) -> Change:
        assert patient.id is not None
        now = self.clock()
        await session.flush()
        await renumber(session, patient.id)
        cancelled, added = await self.replan(session, patient, now)
        detail: dict[str, Any] = {"cancelled": cancelled, "planned": len(added)}
        if row is not None:
            await session.refresh(row)
            detail |= {"session": row.id, "number": row.number}
        else:
            detail["protocol"] = patient.protocol
        await Repository(session).audit(now, "operator", action, f"patient:{patient.id}", **detail)
        return Change(row, cancelled, added)

    async def _store(self, session: AsyncSession, plans: Sequence[_Plan]) -> None:
        """Insert the plans' occurrences, then a check-in for each bundle whose occurrences
        were all inserted here (any already stored: planned meanwhile, never twice)."""
        occurrences = [
            {"patient_id": p.patient.id, "key": m.key, "rule": m.rule,
             "session_number": m.session, "due_at": m.due_at, "checkin_id": None}
            for p in plans for g in p.groups for m in g.members
        ]  # fmt: skip
        inserted = await bulk.insert_new(
            session, PlannedOccurrence, occurrences, ("patient_id", "key"),
            returning=("patient_id", "key", "id"),
        )  # fmt: skip
        ours = {(row.patient_id, row.key): row.id for row in inserted}
        checkins: list[dict[str, Any]] = []
        members: dict[str, list[int]] = {}  # a check-in's idempotency key -> occurrence ids
        for p in plans:
            for group in p.groups:
                ids = [ours.get((p.patient.id, m.key)) for m in group.members]
                instruments = self._askable(p.patient, group.instruments)
                if None in ids or not instruments:
                    continue
                row = _checkin_row(p.patient.id, group, instruments)
                checkins.append(row)
                members[row["idempotency_key"]] = [i for i in ids if i is not None]
        stored = await bulk.insert_new(
            session, Checkin, checkins, ("idempotency_key",), returning=("id", "idempotency_key")
        )
        created = {row.idempotency_key: row.id for row in stored}
        links = [
            {"id": occurrence, "checkin_id": created[key]}
            for key, ids in members.items() for occurrence in ids
        ]  # fmt: skip
        await bulk.update_by_id(session, PlannedOccurrence, links)
        plan_of = {p.patient.id: p for p in plans}
        for row in checkins:
            plan_of[row["patient_id"]].created.append(created[row["idempotency_key"]])

    def _askable(self, patient: _Plannable, instruments: Sequence[str]) -> tuple[str, ...]:
        """The instruments that can be asked of this patient (loaded, in their language)."""
        keep = []
        for key in instruments:
            instrument = self.catalog.instruments.get(key)
            if instrument is None or patient.language not in instrument.languages:
                log.warning(
                    "patient %s: protocol instrument %s skipped (not loaded, or no %s wording)",
                    patient.id,
                    key,
                    patient.language,
                )
                continue
            keep.append(key)
        return tuple(keep)


async def _claim(
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
            update(Patient).where(col(Patient.id).in_(ids)).values(plan_lease_until=now + lease)
        )
    return ids


@dataclass(frozen=True)
class _Plannable:
    """What planning reads of a patient (from a locked row, or the caller's ORM object)."""

    id: int
    status: str
    protocol: str | None
    timezone: str
    language: str
    enrolled_at: datetime
    planned_until: datetime | None

    @classmethod
    def of(cls, patient: Patient) -> _Plannable:
        assert patient.id is not None
        return cls(
            patient.id, patient.status, patient.protocol, patient.timezone, patient.language,
            enrolled_at(patient), patient.planned_until,
        )  # fmt: skip


@dataclass
class _Plan:
    """One patient's planning pass: the plan's new end, the occurrences due up to it, the
    bundles not stored yet, and the ids of the check-ins this pass created."""

    patient: _Plannable
    planned_until: datetime | None
    found: list[Occurrence] = field(default_factory=list)
    groups: list[Bundle] = field(default_factory=list)
    created: list[int] = field(default_factory=list)


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
        "reminder_after_s": int(reminder.total_seconds()) if reminder else None,
        "max_reminders": group.max_reminders if reminder else 0,
        "origin": "plan",
        "state": core.to_json(core.Conversation(instruments)),
        "version": 1,
    }


_PLANNABLE = ("id", "status", "protocol", "timezone", "language", "consent_at", "created_at",
              "planned_until")  # fmt: skip


async def _lock_plannable(session: AsyncSession, ids: Sequence[int]) -> list[_Plannable]:
    """Lock the patients `ids` in id order (two workers never deadlock); what planning reads."""
    table = bulk.table_of(Patient)
    statement = (
        sa.select(*(table.c[name] for name in _PLANNABLE))
        .where(table.c.id.in_(ids))
        .order_by(table.c.id)
        .with_for_update()
    )
    rows = await (await session.connection()).execute(statement)
    return [
        _Plannable(r.id, r.status, r.protocol, r.timezone, r.language,
                   r.consent_at or r.created_at, r.planned_until)
        for r in rows
    ]  # fmt: skip


async def _sessions_by_patient(
    session: AsyncSession, patient_ids: Sequence[int]
) -> dict[int, list[Session]]:
    """The treatment sessions of each patient, in time order."""
    if not patient_ids:
        return {}
    statement = (
        select(TreatmentSession)
        .where(col(TreatmentSession.patient_id).in_(patient_ids))
        .order_by(col(TreatmentSession.at), col(TreatmentSession.id))
    )
    found: dict[int, list[TreatmentSession]] = {}
    for row in (await session.exec(statement)).all():
        found.setdefault(row.patient_id, []).append(row)
    return {patient_id: domain_sessions(rows) for patient_id, rows in found.items()}


async def _known_pairs(session: AsyncSession, plans: Sequence[_Plan]) -> set[tuple[int, str]]:
    """Which (patient, occurrence key) of the plans are stored already."""
    patients = [p.patient.id for p in plans if p.found]
    keys = {o.key for p in plans for o in p.found}
    if not keys:
        return set()
    statement = select(PlannedOccurrence.patient_id, PlannedOccurrence.key).where(
        col(PlannedOccurrence.patient_id).in_(patients), col(PlannedOccurrence.key).in_(keys)
    )
    return {(row[0], row[1]) for row in (await session.exec(statement)).all()}


# ---- treatment sessions -----------------------------------------------------------------


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


# ---- preview ------------------------------------------------------------------------------


def preview(
    protocol: Protocol,
    patient: Patient,
    sessions: Sequence[TreatmentSession],
    *,
    start_day: date,
    days: int,
    clinic: Clinic,
    bundle_window: timedelta,
) -> list[dict[str, Any]]:
    """The check-ins `protocol` plans for the patient from local midnight of `start_day`,
    for `days` days: one entry per occurrence, with the bundle it is asked in."""
    zone = ZoneInfo(patient.timezone)
    start = datetime.combine(start_day, time(0), zone).astimezone(UTC)
    end = datetime.combine(start_day + timedelta(days=days), time(0), zone).astimezone(UTC)
    found = plan(
        protocol,
        timezone=patient.timezone,
        enrolled_at=enrolled_at(patient),
        sessions=domain_sessions(sessions),
        start=start,
        end=end,
        quiet=quiet_hours(clinic),
    )
    together: dict[str, str] = {}
    for group in bundle(found, bundle_window):
        for member in group.members:
            together[member.key] = group.key
    return [_entry(o, zone, together[o.key]) for o in found]


def _entry(occurrence: Occurrence, zone: ZoneInfo, bundle_key: str) -> dict[str, Any]:
    due = occurrence.due_at
    return {
        "due_at_local": due.astimezone(zone).isoformat(),
        "due_at_utc": due.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "rule": occurrence.rule,
        "instruments": list(occurrence.instruments),
        "key": occurrence.key,
        "session": occurrence.session,
        "expires_at_utc": (due + occurrence.expires_after).isoformat().replace("+00:00", "Z"),
        "bundle": bundle_key,
    }


async def locked_patient(session: AsyncSession, patient_id: int) -> Patient:
    patient = await Repository(session).lock_patient(patient_id)
    if patient is None:
        raise NotFound("patient", patient_id)
    return patient

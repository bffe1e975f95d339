"""Protocols become check-in rows: planning, re-planning when treatment changes, preview.

The database is the only source of truth. A patient's protocol is planned a horizon
ahead (``[scheduler] plan_ahead_days``) into :class:`PlannedOccurrence` rows, unique per
``(patient, occurrence key)``, and :class:`Checkin` rows (one per bundle of occurrences
due close together). Planning the same patient twice, or by two workers at once, finds
the occurrences already stored and creates nothing new; the tick's start stage then sends
each check-in once (see :meth:`bot.services.Services.start_due`).

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
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import delete, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.config import Clinic
from bot.domain import conversation as core
from bot.domain.errors import ConfigError, NotFound
from bot.domain.schedule import Bundle, Occurrence, Protocol, QuietHours, Session, bundle, plan
from bot.instruments import Catalog
from bot.ports import Clock
from bot.storage.database import Database
from bot.storage.repository import Repository
from bot.storage.tables import Checkin, Patient, PlannedOccurrence, TreatmentSession

log = logging.getLogger(__name__)
CHUNK = 50  # patients planned in one transaction


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

    def protocol(self, name: str) -> Protocol:
        found = self.protocols.get(name)
        if found is None:
            known = ", ".join(sorted(self.protocols)) or "none configured"
            raise ConfigError("protocols", name, f"no such protocol (known: {known})")
        return found

    # ---- the tick's stage -------------------------------------------------------------

    async def plan_due(self) -> int:
        """Plan the patients whose stored plan runs out soon; how many check-ins were added."""
        now = self.clock()
        async with self.db.transaction() as session:
            ids = await _claim(
                Repository(session), now, now + self.plan_ahead / 2, self.batch, self.lease
            )
        added = 0
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start : start + CHUNK]
            try:  # many in one transaction: one commit instead of one each
                async with self.db.transaction() as session:
                    repo = Repository(session)
                    for patient_id in chunk:
                        patient = await repo.lock_patient(patient_id)
                        if patient is not None:
                            added += len(await self.plan_locked(session, patient, now))
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

    async def plan_patient(self, patient_id: int) -> int:
        async with self.db.transaction() as session:
            patient = await Repository(session).lock_patient(patient_id)
            if patient is None:
                return 0
            return len(await self.plan_locked(session, patient, self.clock()))

    # ---- in the caller's transaction, the patient's row locked -------------------------

    async def plan_locked(
        self, session: AsyncSession, patient: Patient, now: datetime
    ) -> list[Checkin]:
        """Store the patient's check-ins up to the horizon; the check-ins added."""
        assert patient.id is not None
        patient.plan_lease_until = None
        end = now + self.plan_ahead
        if patient.status != "active" or patient.protocol is None:
            patient.planned_until = None  # planned from scratch when it becomes plannable
            session.add(patient)
            return []
        protocol = self.protocols.get(patient.protocol)
        if protocol is None:
            log.warning("patient %s has a protocol that is not configured", patient.id)
            patient.planned_until = end  # looked at again next horizon, not every tick
            session.add(patient)
            return []
        catchup = max(rule.expires_after for rule in protocol.rules)
        start = patient.planned_until or now - catchup
        sessions = domain_sessions(await sessions_of(session, patient.id))
        found = plan(
            protocol,
            timezone=patient.timezone,
            enrolled_at=enrolled_at(patient),
            sessions=sessions,
            start=start,
            end=end + self.bundle_window,
            quiet=quiet_hours(self.clinic),
        )
        found = [o for o in found if o.due_at + o.expires_after > now]  # not already too late
        known = await _known_keys(session, patient.id, [o.key for o in found])
        fresh = [o for o in found if o.key not in known]
        created = []
        for group in bundle(fresh, self.bundle_window):
            if group.due_at >= end:
                continue  # the next planning pass takes it, with whatever joins it
            checkin = await self._store(session, patient, group)
            if checkin is not None:
                created.append(checkin)
        patient.planned_until = end
        session.add(patient)
        await session.flush()
        return created

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

    async def _store(
        self, session: AsyncSession, patient: Patient, group: Bundle
    ) -> Checkin | None:
        assert patient.id is not None
        repo = Repository(session)
        rows = []
        for member in group.members:
            row = await repo.insert_new(
                PlannedOccurrence(
                    patient_id=patient.id,
                    key=member.key,
                    rule=member.rule,
                    session_number=member.session,
                    due_at=member.due_at,
                ),
                ("patient_id", "key"),
            )
            if row is not None:
                rows.append(row)
        if len(rows) != len(group.members):  # planned meanwhile: never twice
            return None
        instruments = self._askable(patient, group.instruments)
        if not instruments:
            return None
        reminder = group.reminder_after
        checkin = await repo.create_checkin(
            Checkin(
                patient_id=patient.id,
                # unique by itself: the occurrences' keys are what keep planning idempotent,
                # and a bundle planned again after a change must not meet its old row
                idempotency_key=f"plan:{patient.id}:{group.key}:{uuid.uuid4().hex[:12]}",
                instruments=list(instruments),
                due_at=group.due_at,
                expires_at=group.expires_at,
                reminder_after_s=int(reminder.total_seconds()) if reminder else None,
                max_reminders=group.max_reminders if reminder else 0,
                origin="plan",
                state=core.to_json(core.Conversation(instruments)),
            )
        )
        assert checkin is not None and checkin.id is not None
        await session.exec(
            update(PlannedOccurrence)
            .where(col(PlannedOccurrence.id).in_([r.id for r in rows]))
            .values(checkin_id=checkin.id)
        )
        return checkin

    def _askable(self, patient: Patient, instruments: Sequence[str]) -> tuple[str, ...]:
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


async def _known_keys(session: AsyncSession, patient_id: int, keys: Sequence[str]) -> set[str]:
    if not keys:
        return set()
    statement = select(PlannedOccurrence.key).where(
        PlannedOccurrence.patient_id == patient_id, col(PlannedOccurrence.key).in_(keys)
    )
    return set((await session.exec(statement)).all())


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

"""Protocols become check-in rows: planning, re-planning when treatment changes, preview.

The database is the only source of truth. A patient's protocol is planned a horizon
ahead (``[scheduler] plan_ahead_days``) into :class:`PlannedOccurrence` rows, unique per
``(patient, occurrence key)``, and :class:`Checkin` rows (one per bundle of occurrences
due close together). Planning the same patient twice, or by two workers at once, finds
the occurrences already stored and creates nothing new; the tick's start stage then sends
each check-in once (see :meth:`bot.app.conversations.starting.Starting.start_due`).

* :meth:`Planner.plan_due` is the tick's planning stage: it claims patients whose stored
  plan ends within half the horizon (PostgreSQL: ``FOR UPDATE SKIP LOCKED`` and a lease,
  so workers take different patients) and plans each in its own transaction under the
  patient's row lock.
* :meth:`Planner.replan` runs when the plan's inputs change (treatment sessions, the
  protocol): check-ins planned but not yet sent are cancelled with their occurrences, and
  the patient is planned again at once. What was already sent stays, and its occurrence
  keys keep it from being planned twice.
* :func:`preview` is pure: what the protocol plans for a patient over some days.

The planner is here; the rows a planning pass reads and writes are
:mod:`bot.app.planning.rows`; treatment sessions and the operator's changes,
:mod:`bot.app.planning.session_changes`; the protocol checks and the preview,
:mod:`bot.app.planning.protocols`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from time import monotonic

from sqlalchemy import delete, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.app.planning.protocols import quiet_hours, without_wording
from bot.app.planning.rows import (
    PatientPlan,
    Plannable,
    claim_due,
    lock_plannable,
    sessions_by_patient,
    store_plans,
    stored_occurrences,
)
from bot.app.planning.session_changes import Change, locked_patient, record_change, session_row
from bot.app.ports import Clock
from bot.config import Clinic
from bot.domain.dosing import Dose
from bot.domain.errors import ConfigError
from bot.domain.schedule import (
    Bundle,
    Occurrence,
    Protocol,
    Session,
    bundle,
    plan,
    reconcile,
    to_close,
)
from bot.instruments import Catalog
from bot.storage import bulk
from bot.storage.database import Database
from bot.storage.repository import Repository
from bot.storage.tables import Checkin, Patient, PlannedOccurrence, TreatmentSession

# Change, preview and sessions_of: bot/commands/schedule.py imports them from here

log = logging.getLogger(__name__)
StartPlanned = Callable[[AsyncSession, Sequence[int]], Awaitable[int]]
CATCH_UP_S = 5.0  # how long a tick's stage goes on claiming while it finds full batches
CHUNK = 250  # patients planned in one transaction


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
    # the start stage's chunk (Starting.start_planned), given the check-ins a planning
    # chunk created already due, in the same transaction: see plan_chunk
    start_planned: StartPlanned | None = None
    started: int = 0  # check-ins start_planned has started in this process

    def protocol(self, name: str) -> Protocol:
        found = self.protocols.get(name)
        if found is None:
            known = ", ".join(sorted(self.protocols)) or "none configured"
            raise ConfigError("protocols", name, f"no such protocol (known: {known})")
        return found

    def no_wording(self, protocol: str, language: str) -> tuple[str, ...]:
        """The instruments of `protocol` a patient speaking `language` cannot be asked."""
        return without_wording(self.protocol(protocol), self.catalog, language)

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
                ids = await claim_due(
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
        """Lock the patients `ids` (in id order) and plan them all; the check-ins added.

        Check-ins already due (a wave enrolled a moment ago) are handed to `start_planned`
        before the transaction ends, under the locks planning took: started exactly as
        the start stage would start them a moment later, without that stage claiming,
        leasing, locking and reading each of them again. If starting fails, the chunk is
        planned again one patient at a time, and the start stage starts them."""
        patients = await lock_plannable(session, ids)
        plans = await self._plan_many(session, patients, now)
        due = sorted((at, i) for p in plans for i, at in p.due_at.items() if at <= now)
        if due and self.start_planned is not None:
            self.started += await self.start_planned(session, [i for _, i in due])
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
        (done,) = await self._plan_many(session, [Plannable.of(patient)], now)
        patient.plan_lease_until = None
        patient.planned_until = done.planned_until
        session.add(patient)
        await session.flush()
        if not done.created:
            return []
        statement = select(Checkin).where(col(Checkin.id).in_(done.created))
        return list((await session.exec(statement.order_by(col(Checkin.id)))).all())

    async def _plan_many(
        self, session: AsyncSession, patients: Sequence[Plannable], now: datetime
    ) -> list[PatientPlan]:
        """Plan `patients` (their rows locked): a few statements, however many they are."""
        plannable = [p.id for p in patients if p.status == "active" and p.protocol is not None]
        sessions = await sessions_by_patient(session, plannable)
        intended: dict[tuple[object, ...], list[Occurrence]] = {}  # the pure plan, by its inputs
        plans = [self._intend(p, sessions.get(p.id, []), now, intended) for p in patients]
        known = await _known_pairs(session, plans)
        stored = await stored_occurrences(session, [p.patient.id for p in plans if p.found])
        end = now + self.plan_ahead
        closing: list[dict[str, object]] = []
        bundles: dict[tuple[Occurrence, ...], list[Bundle]] = {}  # patients alike bundle alike
        for p in plans:
            # a moved session's pre-session check-in: planned again, or already answered
            outlooks = reconcile(p.found, stored.get(p.patient.id, []))
            closing += [
                {"id": i, "expires_at": at, "closes_at": at} for i, at in to_close(outlooks)
            ]
            fresh = [
                o.occurrence for o in outlooks
                if o.status == "new" and (p.patient.id, o.occurrence.key) not in known
                and o.occurrence.expires_at > now  # not already too late
            ]  # fmt: skip
            # a bundle due past the horizon waits for the next pass, with whatever joins it
            key = tuple(fresh)
            if key not in bundles:
                bundles[key] = [g for g in bundle(fresh, self.bundle_window) if g.due_at < end]
            p.groups = bundles[key]
        await bulk.update_by_id(session, Checkin, closing)
        await store_plans(session, plans, self.catalog)
        return plans

    def _intend(
        self,
        patient: Plannable,
        sessions: list[Session],
        now: datetime,
        intended: dict[tuple[object, ...], list[Occurrence]] | None = None,
    ) -> PatientPlan:
        """What the protocol plans for the patient up to the horizon (pure). Patients with
        the same inputs (a wave enrolled together: protocol, zone, enrolment, sessions)
        share one call of the pure core through `intended`, keyed by every input."""
        end = now + self.plan_ahead
        if patient.status != "active" or patient.protocol is None:
            return PatientPlan(patient, None)  # planned from scratch when it becomes plannable
        protocol = self.protocols.get(patient.protocol)
        if protocol is None:
            log.warning("patient %s has a protocol that is not configured", patient.id)
            return PatientPlan(patient, end)  # looked at again next horizon, not every tick
        catchup = max(rule.expires_after for rule in protocol.rules)
        start, quiet = patient.planned_until or now - catchup, quiet_hours(self.clinic)
        key = (patient.protocol, patient.timezone, patient.enrolled_at, tuple(sessions), start, end)
        found = None if intended is None else intended.get(key)
        if found is None:
            found = plan(
                protocol,
                timezone=patient.timezone,
                enrolled_at=patient.enrolled_at,
                sessions=sessions,
                start=start,
                end=end + self.bundle_window,
                quiet=quiet,
            )
            if intended is not None:
                intended[key] = found
        # those already too late too: a stored one may yet have to close earlier (to_close)
        return PatientPlan(patient, end, found)

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

    async def add_session(
        self, patient_id: int, at: datetime, kind: str, dose: Dose | None = None,
        actor: str = "operator", note: str | None = None,
    ) -> Change:  # fmt: skip
        """Record a treatment session (with what was given, when known); its check-ins
        (and everyone after it) follow. Audited by `actor`, with `note` if any."""
        async with self.db.transaction() as session:
            patient = await locked_patient(session, patient_id)
            row = TreatmentSession(patient_id=patient_id, number=0, kind=kind, at=at)
            if dose is not None:
                row.route, row.dose, row.dose_unit = dose.route, dose.amount, dose.unit
            session.add(row)
            await session.flush()
            return await record_change(
                session, patient, row, "treatment_added", self.clock(), self.replan, actor, note
            )

    async def move_session(
        self, session_id: int, at: datetime, actor: str = "operator", note: str | None = None
    ) -> Change:
        async with self.db.transaction() as session:
            row = await session_row(session, session_id)
            patient = await locked_patient(session, row.patient_id)
            row.at = at
            session.add(row)
            return await record_change(
                session, patient, row, "treatment_moved", self.clock(), self.replan, actor, note
            )

    async def cancel_session(self, session_id: int, actor: str = "operator") -> Change:
        async with self.db.transaction() as session:
            row = await session_row(session, session_id)
            patient = await locked_patient(session, row.patient_id)
            row.cancelled_at = self.clock()
            session.add(row)
            return await record_change(
                session, patient, row, "treatment_cancelled", self.clock(), self.replan, actor
            )

    async def assign(self, patient_id: int, protocol: str | None) -> Change:
        """Give the patient a protocol (None: none); planned check-ins follow at once."""
        if protocol is not None:
            self.protocol(protocol)
        async with self.db.transaction() as session:
            patient = await locked_patient(session, patient_id)
            patient.protocol = protocol
            session.add(patient)
            return await record_change(
                session, patient, None, "protocol_assigned", self.clock(), self.replan
            )


async def _known_pairs(session: AsyncSession, plans: Sequence[PatientPlan]) -> set[tuple[int, str]]:
    """Which (patient, occurrence key) of the plans are stored already."""
    patients = [p.patient.id for p in plans if p.found]
    keys = {o.key for p in plans for o in p.found}
    if not keys:
        return set()
    dialect = session.get_bind().dialect.name
    statement = select(PlannedOccurrence.patient_id, PlannedOccurrence.key).where(
        bulk.among(dialect, col(PlannedOccurrence.patient_id), patients),
        bulk.among(dialect, col(PlannedOccurrence.key), sorted(keys)),
    )
    return {(row[0], row[1]) for row in (await session.exec(statement)).all()}

"""A patient's treatment sessions (infusions, doses) as an operator records them: add, move,
cancel, list. Sessions are numbered 1, 2, ... in time order; every change re-plans the
patient's check-ins not sent yet, at once (:class:`bot.app.planning.planner.Planner` does that and
audits it).

A time is given as ISO 8601 text: with an offset (or ``Z``) it is that instant, without
one it is the patient's local time, read by the protocols' wall-clock rule
(:func:`bot.domain.schedule.resolve_local`): a time the clock skips (02:30 on a
spring-forward day) becomes the moment the gap ends (03:00), a time it shows twice (01:30
on a fall-back day) its first showing. :attr:`Replanned.at_note` then says what the time
became. Text that is not such a time raises :class:`UnreadableTime`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from bot.app.operator.refusals import AlreadyCancelled
from bot.app.planning.planner import Planner
from bot.app.planning.session_changes import Change, sessions_of
from bot.app.ports import Clock
from bot.domain.dosing import Dose
from bot.domain.errors import CheckinError, NotFound
from bot.domain.schedule import resolve_local
from bot.storage.database import Database
from bot.storage.repository import Repository
from bot.storage.tables import Checkin, TreatmentSession


class UnreadableTime(CheckinError):
    def __init__(self, text: str) -> None:
        self.text = text
        super().__init__(f"{text!r} is not an ISO 8601 time")


@dataclass(frozen=True)
class SessionView:
    id: int
    patient_id: int
    number: int
    kind: str
    at: datetime
    at_local: datetime  # `at` in the patient's time zone (as stored, when not known)
    cancelled_at: datetime | None
    route: str | None = None
    dose: float | None = None
    dose_unit: str | None = None

    @classmethod
    def of(cls, row: TreatmentSession, zone: ZoneInfo | None = None) -> SessionView:
        assert row.id is not None
        local = row.at.astimezone(zone) if zone else row.at
        return cls(row.id, row.patient_id, row.number, row.kind, row.at, local,
                   row.cancelled_at, row.route, row.dose, row.dose_unit)  # fmt: skip

    @property
    def given(self) -> Dose | None:
        """The dose as recorded (the panel writes it in the clinic's locale); None
        without an amount."""
        if self.route is None or self.dose is None:
            return None
        return Dose(self.route, self.dose, self.dose_unit)

    @property
    def dose_text(self) -> str:
        """``0.5 mg/kg``; empty when no dose was recorded."""
        if self.route is None:
            return ""
        return Dose(self.route, self.dose, self.dose_unit).text()


@dataclass(frozen=True)
class PlannedView:
    id: int
    instruments: tuple[str, ...]
    due_at: datetime
    expires_at: datetime

    @classmethod
    def of(cls, row: Checkin) -> PlannedView:
        assert row.id is not None
        return cls(row.id, tuple(row.instruments), row.due_at, row.expires_at)


@dataclass(frozen=True)
class Replanned:
    """What a change did: the session it touched (None for a new protocol), how many
    planned check-ins were cancelled, and the check-ins planned in their place."""

    session: SessionView | None
    cancelled: int
    planned: tuple[PlannedView, ...]
    no_wording: tuple[str, ...] = ()  # a new protocol's instruments without their language
    at_note: str | None = None  # what a skipped or repeated local --at time became

    @classmethod
    def of(cls, change: Change) -> Replanned:
        session = SessionView.of(change.session) if change.session is not None else None
        return cls(session, change.cancelled, tuple(map(PlannedView.of, change.planned)))


async def add_session(
    db: Database,
    planner: Planner,
    patient_id: int,
    at: str,
    kind: str = "treatment",
    dose: Dose | None = None,
    actor: str = "operator",
) -> Replanned:
    """Record a session at `at` (with its route and dose, when given: a `kind` left at
    "treatment" then names the route); the protocol's check-ins around it are planned at
    once. Audited by `actor`, with the note on a skipped or repeated local time."""
    instant, note = local_instant(at, await patient_zone(db, patient_id))
    if dose is not None and kind == "treatment":
        kind = dose.route
    change = await planner.add_session(patient_id, instant, kind, dose, actor, note)
    return replace(Replanned.of(change), at_note=note)


async def set_dose(
    db: Database, clock: Clock, session_id: int, dose: Dose, actor: str
) -> SessionView:
    """Record or correct what a session gave (the dose is often settled at the chair);
    audited (the session and the route). The plan does not depend on it."""
    async with db.transaction() as session:
        row = await session.get(TreatmentSession, session_id, with_for_update=True)
        if row is None:
            raise NotFound("treatment session", session_id)
        row.route, row.dose, row.dose_unit = dose.route, dose.amount, dose.unit
        session.add(row)
        repo = Repository(session)
        # the audit names the session and the route; the dose itself is health information
        await repo.audit(clock(), actor, "treatment_dose_set", f"patient:{row.patient_id}",
                         session=session_id, route=dose.route)  # fmt: skip
        patient = await repo.get_patient(row.patient_id)
        zone = ZoneInfo(patient.timezone) if patient is not None else None
        return SessionView.of(row, zone)


async def move_session(
    db: Database, planner: Planner, session_id: int, at: str, actor: str = "operator"
) -> Replanned:
    """Move a session; its check-ins move with it (those already sent stay)."""
    async with db.transaction() as session:
        row = await session.get(TreatmentSession, session_id)
    if row is None:
        raise NotFound("treatment session", session_id)
    instant, note = local_instant(at, await patient_zone(db, row.patient_id))
    change = await planner.move_session(session_id, instant, actor, note)
    return replace(Replanned.of(change), at_note=note)


async def cancel_session(planner: Planner, session_id: int, actor: str = "operator") -> Replanned:
    """Cancel a session that will not happen; its check-ins not yet sent are cancelled and
    later sessions renumbered. A session cancelled before is refused as such
    (:class:`AlreadyCancelled`), its cancellation time and the plan left as they were."""
    async with planner.db.transaction() as session:
        row = await session.get(TreatmentSession, session_id)
    if row is not None and row.cancelled_at is not None:
        when = row.cancelled_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
        raise AlreadyCancelled(session_id, when)
    return Replanned.of(await planner.cancel_session(session_id, actor))


async def list_sessions(db: Database, clock: Clock, patient_id: int) -> list[SessionView]:
    """The patient's sessions, cancelled ones too, in time order (local times in theirs)."""
    zone = await patient_zone(db, patient_id)
    async with db.transaction() as session:
        rows = await sessions_of(session, patient_id)
        await Repository(session).audit(
            clock(), "operator", "treatment_listed", f"patient:{patient_id}"
        )
    return [SessionView.of(r, zone) for r in rows]


async def patient_zone(db: Database, patient_id: int) -> ZoneInfo:
    async with db.transaction() as session:
        patient = await Repository(session).get_patient(patient_id)
    if patient is None:
        raise NotFound("patient", patient_id)
    return ZoneInfo(patient.timezone)


def local_instant(text: str, zone: ZoneInfo) -> tuple[datetime, str | None]:
    """An ISO 8601 time; without an offset it is a local time in `zone`. With it, a note
    when the clock skipped that local time or showed it twice (None otherwise)."""
    try:
        parsed = datetime.fromisoformat(text.strip().replace("z", "Z"))
    except ValueError:
        raise UnreadableTime(text) from None
    if parsed.tzinfo is not None:
        return parsed, None
    found = resolve_local(parsed, zone)
    local = found.at.astimezone(zone)
    typed = f"{parsed:%Y-%m-%d %H:%M}"
    if found.clock == "skipped":
        return found.at, (
            f"{typed} does not exist in {zone.key} (the clock jumps forward); "
            f"taken as {local:%H:%M %Z} ({local.isoformat()}), when the gap ends"
        )
    if found.clock == "repeated":
        return found.at, (
            f"{typed} happens twice in {zone.key} (the clock falls back); "
            f"taken as the first, {local:%H:%M %Z} ({local.isoformat()})"
        )
    return found.at.astimezone(zone), None

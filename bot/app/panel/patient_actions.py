"""What a clinician does to one patient from the panel: add a treatment session, move or
cancel one, record what it gave; record a MADRS total or a blood-pressure reading; pause,
resume or discharge the patient.

Invariants:

* The viewer's right to see the patient is checked first (:mod:`bot.app.panel.access`),
  before the form is read: a patient they may not see, or a session that is not that
  patient's, is ``NotFound`` (404), whatever else the form says.
* The checks and the change itself are the operator's use cases (the CLI's): nothing is
  validated twice. Each is audited by that use case with the viewer as actor
  (``clinician:<id>``); a measure's rater is the viewer.
* What the form got wrong is a :class:`FormProblem` naming the field, raised before
  anything is stored. A change that no longer applies (a session cancelled before, a
  pause of a patient who is not active) returns False: nothing changed, nothing failed.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlmodel.ext.asyncio.session import AsyncSession

from bot.app.operator import measures, patients, retention, treatments
from bot.app.operator.refusals import AlreadyCancelled, Refused
from bot.app.operator.treatments import Replanned, SessionView, UnreadableTime
from bot.app.panel.access import patient_for
from bot.app.panel.signin import Viewer
from bot.app.planning.planner import Planner
from bot.app.ports import Clock
from bot.domain.dosing import ROUTES, BadDose, Dose, read_dose
from bot.domain.errors import AnswerError, NotFound
from bot.domain.instruments import BloodPressure
from bot.domain.measures import BP_POINTS
from bot.storage.database import Database
from bot.storage.repository import Repository
from bot.storage.tables import TreatmentSession

STATUS_ACTIONS = ("pause", "resume", "discharge")
KIND_MAX = 60  # characters of a session's free-text kind


class FormProblem(Refused):
    """A form field that cannot be taken as given. `reason` is a key the page words
    (``required``, ``whole_number``, ``confirm``, ``choose``, ``refused``); `detail` the
    refusing use case's own one-line reason, for ``refused``."""

    def __init__(self, field: str, reason: str, detail: str = "") -> None:
        self.field, self.reason, self.detail = field, reason, detail
        super().__init__(f"{field}: {detail or reason}")


@dataclass(frozen=True)
class Subject:
    """What a form page shows of the patient (and of the session it is about)."""

    patient_id: int
    name: str
    status: str
    zone: ZoneInfo
    now_local: datetime  # the patient's wall clock, to fill a time field
    session: SessionView | None = None


async def subject(
    db: Database, clock: Clock, viewer: Viewer, patient_id: int, session_id: int | None = None
) -> Subject:
    """The patient (and session), if the viewer may see them; NotFound otherwise. A form
    shows the patient: the view is audited like the patient's page."""
    async with db.transaction() as session:
        patient = await patient_for(session, viewer, patient_id)
        row = await _session_of(session, patient_id, session_id) if session_id else None
        await Repository(session).audit(clock(), viewer.actor, "panel_patient_form_viewed",
                                        f"patient:{patient_id}", session=session_id)  # fmt: skip
    zone = ZoneInfo(patient.timezone)
    view = SessionView.of(row, zone) if row is not None else None
    return Subject(patient_id, patient.display_name, patient.status, zone,
                   clock().astimezone(zone), view)  # fmt: skip


# ---- treatment sessions -------------------------------------------------------------------


@dataclass(frozen=True)
class SessionForm:
    """A new session as typed: a local date-time, the route, the dose, its unit, a kind."""

    at: str
    route: str
    dose: str = ""
    unit: str = ""
    kind: str = ""


async def add_session(
    planner: Planner, viewer: Viewer, patient_id: int, form: SessionForm
) -> Replanned:
    """Record a session; the protocol's check-ins around it are planned at once."""
    await subject(planner.db, planner.clock, viewer, patient_id)
    dose = _dose(form.route, form.dose, form.unit)
    kind = form.kind.strip() or "treatment"
    if len(kind) > KIND_MAX:
        raise FormProblem("kind", "too_long")
    at = _required(form.at, "at")
    with _field("at", UnreadableTime):
        return await treatments.add_session(
            planner.db, planner, patient_id, at, kind, dose, viewer.actor
        )


async def move_session(
    planner: Planner, viewer: Viewer, patient_id: int, session_id: int, at: str
) -> Replanned | None:
    """Move the session (None: it was cancelled, nothing moved)."""
    seen = await subject(planner.db, planner.clock, viewer, patient_id, session_id)
    at = _required(at, "at")
    if seen.session is None or seen.session.cancelled_at is not None:
        return None
    with _field("at", UnreadableTime):
        return await treatments.move_session(planner.db, planner, session_id, at, viewer.actor)


async def set_dose(
    db: Database, clock: Clock, viewer: Viewer, patient_id: int, session_id: int,
    route: str, dose: str, unit: str = "",
) -> SessionView:  # fmt: skip
    """Record or correct what the session gave."""
    await subject(db, clock, viewer, patient_id, session_id)
    given = _dose(route, dose, unit)
    return await treatments.set_dose(db, clock, session_id, given, viewer.actor)


async def cancel_session(
    planner: Planner, viewer: Viewer, patient_id: int, session_id: int
) -> bool:
    """Cancel the session; False when it was cancelled before (nothing changed)."""
    await subject(planner.db, planner.clock, viewer, patient_id, session_id)
    try:
        await treatments.cancel_session(planner, session_id, viewer.actor)
    except AlreadyCancelled:
        return False
    return True


# ---- clinician-rated measures -----------------------------------------------------------


async def record_madrs(
    db: Database, clock: Clock, viewer: Viewer, patient_id: int, total: str, at: str = ""
) -> measures.MeasureRecorded:
    """Store the viewer's MADRS total, taken at `at` (the patient's local time; empty: now)."""
    await subject(db, clock, viewer, patient_id)
    value = _whole(total, "total")
    with _field("at", UnreadableTime, AnswerError, Refused):
        return await measures.record_madrs(
            db, clock, patient_id, value, at.strip() or None, viewer.clinician_id, viewer.actor
        )


async def record_blood_pressure(
    db: Database, clock: Clock, viewer: Viewer, patient_id: int,
    systolic: str, diastolic: str, point: str, at: str = "",
) -> measures.MeasureRecorded:  # fmt: skip
    """Store a blood-pressure reading the viewer took at `point` (see ``BP_POINTS``)."""
    await subject(db, clock, viewer, patient_id)
    reading = BloodPressure(_whole(systolic, "systolic"), _whole(diastolic, "diastolic"))
    if point not in BP_POINTS:
        raise FormProblem("point", "choose")
    with _field("at", UnreadableTime, AnswerError, Refused):
        return await measures.record_blood_pressure(
            db, clock, patient_id, reading, point, at.strip() or None,
            viewer.clinician_id, viewer.actor,
        )  # fmt: skip


# ---- the patient's status ---------------------------------------------------------------


async def change_status(
    db: Database, clock: Clock, viewer: Viewer, patient_id: int, action: str, confirm: bool
) -> bool:
    """Pause, resume or discharge (the last only with `confirm`); False when the patient's
    status does not allow it (nothing changed)."""
    seen = await subject(db, clock, viewer, patient_id)
    if action not in STATUS_ACTIONS:
        raise FormProblem("action", "choose")
    if action == "discharge" and not confirm:
        raise FormProblem("confirm", "confirm")
    try:
        if action == "discharge":
            if seen.status == "discharged":
                return False
            await retention.discharge(db, patient_id, clock(), actor=viewer.actor)
        else:
            change = patients.pause if action == "pause" else patients.resume
            await change(db, clock, patient_id, viewer.actor)
    except (Refused, retention.AlreadyErased):
        return False
    return True


# ---- reading a form ---------------------------------------------------------------------


def _dose(route: str, amount: str, unit: str) -> Dose:
    if route.strip().lower() not in ROUTES:
        raise FormProblem("route", "choose")
    try:
        return read_dose(route, amount, unit)
    except BadDose as exc:
        raise FormProblem(exc.field, "refused", str(exc)) from None


def _required(text: str, field: str) -> str:
    if not text.strip():
        raise FormProblem(field, "required")
    return text.strip()


def _whole(text: str, field: str) -> int:
    text = _required(text, field)
    try:
        return int(text)
    except ValueError:
        raise FormProblem(field, "whole_number") from None


@contextmanager
def _field(name: str, *errors: type[Exception]) -> Iterator[None]:
    """Within it, the given errors become a :class:`FormProblem` about `name` (for an
    ``AnswerError``, the field its item key names: ``blood_pressure.systolic``)."""
    try:
        yield
    except FormProblem:
        raise
    except UnreadableTime:
        raise FormProblem(name, "unreadable") from None
    except AnswerError as exc:
        raise FormProblem(exc.item_key.rsplit(".", 1)[-1], "refused", exc.problem) from None
    except errors as exc:
        raise FormProblem(name, "refused", str(exc)) from None


async def _session_of(session: AsyncSession, patient_id: int, session_id: int) -> TreatmentSession:
    row = await session.get(TreatmentSession, session_id)
    if row is None or row.patient_id != patient_id:
        raise NotFound("treatment session", session_id)
    return row

"""Clinician-rated measures as an operator (now) or the panel (later) records them: a MADRS
total, a blood-pressure reading at a monitoring time point. Each is stored as a score
without a check-in, with its place in the treatment series fixed at the time it was
taken (``bot.storage.series.place_of``) and the rating clinician if named, and audited
(which measure, never its value).

A time is ISO 8601 text as for treatment sessions (``treatments.local_instant``: without
an offset it is the patient's local time); none means now; a time still to come is
refused. A blood-pressure reading after dosing is compared with the patient's pre-dose
reading of the :data:`PRE_DOSE_WINDOW` before it, if there is one (``bp_rise``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.app.operator.refusals import Refused
from bot.app.operator.treatments import local_instant, patient_zone
from bot.app.operator.views import ScoreView
from bot.app.ports import Clock
from bot.domain import measures
from bot.domain.errors import NotFound
from bot.domain.instruments import BloodPressure
from bot.domain.outcomes import Observation, assess
from bot.storage.database import Database
from bot.storage.repository import Repository
from bot.storage.series import place_of
from bot.storage.tables import Clinician, Score

PRE_DOSE_WINDOW = timedelta(hours=6)  # a session's pre-dose reading precedes its +2 h one


@dataclass(frozen=True)
class MeasureRecorded:
    """The stored score; for MADRS, the series' baseline, change and statuses with it."""

    score: ScoreView
    baseline: int | None = None
    improvement_pct: float | None = None
    statuses: tuple[str, ...] = ()  # "response", "remission", ...


async def record_madrs(
    db: Database, clock: Clock, patient_id: int, total: int,
    at: str | None = None, rater: int | None = None, actor: str = "operator",
) -> MeasureRecorded:  # fmt: skip
    """Store a clinician's MADRS total; the assessment covers every MADRS of the patient."""
    measured = measures.madrs(total)
    when = await _when(db, clock, patient_id, at)
    async with db.transaction() as session:
        repo = Repository(session)
        score = await _store(repo, clock, patient_id, measured, when, rater, actor)
        history = await Repository(session).scores_for_patient(patient_id, measures.MADRS)
    observations = [
        Observation(s.completed_at, s.total, s.session_number)
        for s in history
        if s.total is not None
    ]
    found = assess(observations, measures.MADRS_RULES)
    return MeasureRecorded(score, found.baseline, found.improvement_pct, found.statuses)


async def record_blood_pressure(
    db: Database, clock: Clock, patient_id: int, reading: BloodPressure, point: str,
    at: str | None = None, rater: int | None = None, actor: str = "operator",
) -> MeasureRecorded:  # fmt: skip
    """Store a blood-pressure reading taken at `point` ("pre", "40min", "2h")."""
    measures.blood_pressure(reading, point)  # refused before anything is read
    when = await _when(db, clock, patient_id, at)
    async with db.transaction() as session:
        pre = await _pre_dose(session, patient_id, when) if point != "pre" else None
        measured = measures.blood_pressure(reading, point, pre)
        repo = Repository(session)
        score = await _store(repo, clock, patient_id, measured, when, rater, actor)
    return MeasureRecorded(score)


async def _when(db: Database, clock: Clock, patient_id: int, at: str | None) -> datetime:
    zone = await patient_zone(db, patient_id)  # NotFound for an unknown patient
    now = clock()
    if at is None:
        return now
    when, _ = local_instant(at, zone)
    if when > now + timedelta(minutes=1):
        raise Refused(f"{at} is still to come; a measure is recorded once taken")
    return when


async def _store(
    repo: Repository, clock: Clock, patient_id: int, measured: measures.Measured,
    at: datetime, rater: int | None, actor: str,
) -> ScoreView:  # fmt: skip
    if rater is not None and await repo.session.get(Clinician, rater) is None:
        raise NotFound("clinician", rater)
    place = await place_of(repo.session, patient_id, at)
    row = Score(
        checkin_id=None, patient_id=patient_id, instrument=measured.instrument,
        total=measured.total, band=measured.band, valid=True, flags=list(measured.flags),
        completed_at=at, session_number=place.session_number,
        hours_since_session=place.hours_since_session, rated_by=rater,
        time_point=measured.time_point, components=dict(measured.components) or None,
    )  # fmt: skip
    await repo.add(row)
    await repo.audit(
        clock(), actor, "measure_recorded", f"patient:{patient_id}",
        instrument=measured.instrument, score=row.id,
    )  # fmt: skip
    return ScoreView.of(row)


async def _pre_dose(session: AsyncSession, patient_id: int, at: datetime) -> BloodPressure | None:
    statement = (
        select(Score)
        .where(
            Score.patient_id == patient_id,
            Score.instrument == measures.BLOOD_PRESSURE,
            Score.time_point == "pre",
            col(Score.completed_at) <= at,
            col(Score.completed_at) >= at - PRE_DOSE_WINDOW,
        )
        .order_by(col(Score.completed_at).desc())
        .limit(1)
    )
    found = (await session.exec(statement)).first()
    if found is None or not found.components:
        return None
    return BloodPressure(found.components["systolic"], found.components["diastolic"])

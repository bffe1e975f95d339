"""One patient's page on the panel: who they are, how their series is going (baseline,
latest, outcome badges from :func:`bot.domain.outcomes.assess`), every score with the
session and dose it followed, the treatment sessions, alerts, recent check-ins and
side-effect answers, and the charts' data.

Invariants:

* One read, in one transaction, in a fixed number of queries whatever the patient's
  history: the patient (through :func:`bot.app.panel.access.patient_for`, so a patient
  the viewer may not see is ``NotFound``), scores, sessions, alerts, check-ins,
  side-effect answers, the clinicians named, and the audit event
  (``panel_patient_viewed``, the viewer as actor, no health information in it).
* Outcomes are the domain's: thresholds live in the instruments' ``[outcomes]`` tables and
  ``MADRS_RULES``, never here. A score's place in the series for the assessment is the
  report's rule (held sessions started before it), so the page and the series report agree.
* Times shown to the viewer are in the viewer's zone; treatment sessions also in the
  patient's own zone (where the chair is).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.app.panel.access import patient_for
from bot.app.panel.signin import Viewer
from bot.app.ports import Clock
from bot.domain.dosing import Dose
from bot.domain.measures import MADRS, MADRS_BANDS, MADRS_MAX, MADRS_RULES
from bot.domain.outcomes import Observation, OutcomeRules, assess
from bot.domain.sessions import session_position
from bot.instruments import Catalog
from bot.rendering.series_svg import Mark, SeriesChart, SessionLine, Shade, time_span
from bot.storage.database import Database
from bot.storage.repository import Repository
from bot.storage.tables import Alert, Answer, Checkin, Clinician, Score, TreatmentSession

PHQ9 = "phq9"
SIDE_EFFECTS = "side_effects"
RECENT_CHECKINS = 30
RECENT_SIDE_EFFECT_ANSWERS = 60
LANGUAGE = "en"  # the panel's language: band and item labels


@dataclass(frozen=True)
class Header:
    id: int
    name: str
    status: str
    protocol: str | None
    clinician: str | None
    channel: str
    language: str
    timezone: str


@dataclass(frozen=True)
class Outcome:
    instrument: str
    name: str
    baseline: int | None
    baseline_band: str | None
    latest: int | None
    latest_band: str | None
    latest_session: int  # held sessions before the latest score (0: before the series)
    improvement_pct: float | None
    statuses: tuple[str, ...]  # Assessment.statuses: "response", "remission", ...
    early_improvement: bool | None  # None: not known yet


@dataclass(frozen=True)
class ScoreRow:
    at: datetime
    instrument: str
    name: str
    value: str  # the total, or a blood pressure's "150/95"
    band: str | None
    session_number: int | None
    hours_since_session: float | None
    dose: Dose | None  # what the held session with that number gave; None when not recorded
    flags: tuple[str, ...]
    rated_by: str | None  # clinician-rated measures: who rated
    time_point: str | None


@dataclass(frozen=True)
class SessionRow:
    id: int
    number: int
    kind: str
    at_local: datetime  # in the patient's zone
    route: str | None
    dose: Dose | None  # None when not recorded
    cancelled: bool


@dataclass(frozen=True)
class AlertRow:
    id: int
    level: str
    rule: str
    status: str
    raised_at: datetime
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    resolved_at: datetime | None
    resolved_by: str | None  # a clinician's name, or the system's key ("system")


@dataclass(frozen=True)
class CheckinRow:
    id: int
    instruments: tuple[str, ...]
    due_at: datetime
    status: str


@dataclass(frozen=True)
class SideEffectRow:
    checkin_id: int
    at: datetime
    item: str
    answer: str | None  # the option's label; None: skipped
    flagged: bool  # the answer raises one of the item's flags


@dataclass(frozen=True)
class PatientPage:
    now: datetime
    header: Header
    outcomes: tuple[Outcome, ...]
    scores: tuple[ScoreRow, ...]  # newest first
    sessions: tuple[SessionRow, ...]
    alerts: tuple[AlertRow, ...]  # newest first
    checkins: tuple[CheckinRow, ...]
    side_effects: tuple[SideEffectRow, ...]
    phq9_chart: SeriesChart | None
    madrs_chart: SeriesChart | None


async def patient_page(
    db: Database, clock: Clock, catalog: Catalog, viewer: Viewer, patient_id: int
) -> PatientPage:
    """Everything the page shows; ``NotFound`` unless the viewer may see the patient."""
    async with db.transaction() as session:
        repo = Repository(session)
        patient = await patient_for(session, viewer, patient_id)
        scores = await repo.scores_for_patient(patient_id)
        sessions = await _sessions(session, patient_id)
        alerts = await repo.alerts_for_patient(patient_id)
        checkins = await repo.checkins_for_patient(patient_id, limit=RECENT_CHECKINS)
        answers = await _side_effect_answers(session, patient_id)
        named = {patient.clinician_id, *(s.rated_by for s in scores),
                 *(a.acknowledged_by for a in alerts), *map(_clinician_of, alerts)}  # fmt: skip
        names = await _clinician_names(session, {n for n in named if n is not None})
        await repo.audit(clock(), viewer.actor, "panel_patient_viewed", f"patient:{patient_id}")
    zone, home = viewer.zone, ZoneInfo(patient.timezone)
    held = [s for s in sessions if s.cancelled_at is None]
    doses = {s.number: _dose(s) for s in held}
    header = Header(patient_id, patient.display_name, patient.status, patient.protocol,
                    names.get(patient.clinician_id or 0), patient.channel, patient.language,
                    patient.timezone)  # fmt: skip
    return PatientPage(
        now=clock().astimezone(zone),
        header=header,
        outcomes=_outcomes(catalog, scores, held),
        scores=tuple(_score_row(catalog, s, doses, names, zone) for s in reversed(scores)),
        sessions=tuple(_session_row(s, home) for s in sessions),
        alerts=tuple(_alert_row(a, names, zone) for a in alerts),
        checkins=tuple(
            CheckinRow(c.id or 0, tuple(c.instruments), c.due_at.astimezone(zone), c.status)
            for c in checkins
        ),
        side_effects=tuple(_side_effect_row(catalog, a, zone) for a in answers),
        **_charts(catalog, scores, held, zone),
    )


async def visible_patient(db: Database, viewer: Viewer, patient_id: int) -> int:
    """The patient's id when the viewer may see them (``NotFound`` otherwise), for the
    report and the export, which audit their own reading."""
    async with db.transaction() as session:
        await patient_for(session, viewer, patient_id)
    return patient_id


# ---- the queries ---------------------------------------------------------------------


async def _sessions(session: AsyncSession, patient_id: int) -> list[TreatmentSession]:
    statement = select(TreatmentSession).where(TreatmentSession.patient_id == patient_id)
    ordered = statement.order_by(col(TreatmentSession.at), col(TreatmentSession.id))
    return list((await session.exec(ordered)).all())


async def _side_effect_answers(session: AsyncSession, patient_id: int) -> list[Answer]:
    statement = (
        select(Answer)
        .join(Checkin, col(Checkin.id) == col(Answer.checkin_id))
        .where(
            Checkin.patient_id == patient_id,
            Answer.instrument == SIDE_EFFECTS,
            col(Answer.superseded_at).is_(None),
        )
        .order_by(col(Answer.answered_at).desc(), col(Answer.id).desc())
        .limit(RECENT_SIDE_EFFECT_ANSWERS)
    )
    return list((await session.exec(statement)).all())


async def _clinician_names(session: AsyncSession, ids: set[int]) -> dict[int, str]:
    if not ids:
        return {}
    statement = select(Clinician).where(col(Clinician.id).in_(ids))
    return {c.id or 0: c.display_name for c in (await session.exec(statement)).all()}


def _clinician_of(alert: Alert) -> int | None:
    """The clinician id in an alert's ``resolved_by`` ("clinician:7"), if one resolved it."""
    kind, _, number = (alert.resolved_by or "").partition(":")
    return int(number) if kind == "clinician" and number.isdigit() else None


# ---- outcomes and charts ---------------------------------------------------------------


def _rules(catalog: Catalog, key: str) -> tuple[str, OutcomeRules] | None:
    if key == MADRS:
        return "MADRS", MADRS_RULES
    if key in catalog.instruments:
        instrument = catalog.get(key)
        return instrument.name, instrument.outcomes
    return None


def _outcomes(
    catalog: Catalog, scores: Sequence[Score], held: Sequence[TreatmentSession]
) -> tuple[Outcome, ...]:
    starts = [s.at for s in held]
    rows = []
    for key in (PHQ9, MADRS):
        found = _rules(catalog, key)
        totals = [(s.completed_at, s.total) for s in scores
                  if s.instrument == key and s.valid and s.total is not None]  # fmt: skip
        if found is None or not totals:
            continue
        name, rules = found
        observations = [
            Observation(at, total, session_position(starts, at).session_number)
            for at, total in totals
        ]
        seen = assess(observations, rules)
        last = max(observations, key=lambda o: o.at).session or 0
        bands = _band(catalog, key, seen.baseline), _band(catalog, key, seen.latest)
        rows.append(
            Outcome(key, name, seen.baseline, bands[0], seen.latest, bands[1], last,
                    seen.improvement_pct, seen.statuses, seen.early_improvement)
        )  # fmt: skip
    return tuple(rows)


def _band(catalog: Catalog, key: str, total: int | None) -> str | None:
    if total is None:
        return None
    if key == MADRS:
        return next((name for top, name in MADRS_BANDS if total <= top), None)
    band = catalog.get(key).band_for(total) if key in catalog.instruments else None
    return band.label.get(LANGUAGE) if band else None


def _charts(
    catalog: Catalog, scores: Sequence[Score], held: Sequence[TreatmentSession], zone: ZoneInfo
) -> dict[str, SeriesChart | None]:
    marks = {
        key: tuple(Mark(s.completed_at.astimezone(zone), s.total) for s in scores
                   if s.instrument == key and s.valid and s.total is not None)
        for key in (PHQ9, MADRS)
    }  # fmt: skip
    lines = tuple(SessionLine(s.at.astimezone(zone), s.number, _dose(s)) for s in held)
    times = [m.at for series in marks.values() for m in series] + [s.at for s in lines]
    if not times:
        return {"phq9_chart": None, "madrs_chart": None}
    start, end = time_span(times)
    phq9 = None
    if marks[PHQ9] and PHQ9 in catalog.instruments:
        instrument = catalog.get(PHQ9)
        bands = tuple(Shade(b.low, b.high, b.label.get(LANGUAGE)) for b in instrument.bands)
        top = instrument.max_total or 27
        phq9 = SeriesChart(PHQ9, top, start, end, marks[PHQ9], lines, bands)
    madrs = None
    if marks[MADRS]:
        lows = (0, *(top + 1 for top, _ in MADRS_BANDS[:-1]))
        bands = tuple(
            Shade(low, top, name.capitalize())
            for low, (top, name) in zip(lows, MADRS_BANDS, strict=True)
        )
        madrs = SeriesChart(MADRS, MADRS_MAX, start, end, marks[MADRS], lines, bands)
    return {"phq9_chart": phq9, "madrs_chart": madrs}


# ---- rows ------------------------------------------------------------------------------


def _dose(row: TreatmentSession) -> Dose | None:
    """What the session gave (the page writes it in the clinic's locale); None when no
    amount was recorded."""
    if row.route is None or row.dose is None:
        return None
    return Dose(row.route, row.dose, row.dose_unit)


def _score_row(
    catalog: Catalog,
    score: Score,
    doses: dict[int, Dose | None],
    names: dict[int, str],
    zone: ZoneInfo,
) -> ScoreRow:
    parts = score.components or {}
    if "systolic" in parts:
        value = f"{parts['systolic']}/{parts['diastolic']}"
    else:
        value = "" if score.total is None else str(score.total)
    found = _rules(catalog, score.instrument)
    band = _band(catalog, score.instrument, score.total) if score.band else None
    number = score.session_number
    return ScoreRow(
        at=score.completed_at.astimezone(zone),
        instrument=score.instrument,
        name=found[0] if found else score.instrument,
        value=value,
        band=band or score.band,
        session_number=number,
        hours_since_session=score.hours_since_session,
        dose=doses.get(number) if number else None,
        flags=tuple(score.flags),
        rated_by=names.get(score.rated_by) if score.rated_by else None,
        time_point=score.time_point,
    )


def _session_row(row: TreatmentSession, home: ZoneInfo) -> SessionRow:
    return SessionRow(row.id or 0, row.number, row.kind, row.at.astimezone(home), row.route,
                      _dose(row), row.cancelled_at is not None)  # fmt: skip


def _alert_row(alert: Alert, names: dict[int, str], zone: ZoneInfo) -> AlertRow:
    by = _clinician_of(alert)
    acked = alert.acknowledged_by
    return AlertRow(
        id=alert.id or 0,
        level=alert.level,
        rule=alert.rule,
        status=alert.status,
        raised_at=alert.created_at.astimezone(zone),
        acknowledged_at=_local(alert.acknowledged_at, zone),
        acknowledged_by=names.get(acked) if acked else None,
        resolved_at=_local(alert.resolved_at, zone),
        resolved_by=names.get(by, alert.resolved_by) if by else alert.resolved_by,
    )


def _local(at: datetime | None, zone: ZoneInfo) -> datetime | None:
    return at.astimezone(zone) if at else None


def _side_effect_row(catalog: Catalog, answer: Answer, zone: ZoneInfo) -> SideEffectRow:
    item = None
    if SIDE_EFFECTS in catalog.instruments:
        item = next((i for i in catalog.get(SIDE_EFFECTS).items if i.key == answer.item_key), None)
    label = (item.short_label if item else "") or answer.item_key
    value = answer.value_int
    option = item.option(value) if item and value is not None else None
    shown = option.label.get(LANGUAGE) if option else (None if value is None else str(value))
    flagged = bool(item and value is not None and any(f.fires(value) for f in item.flags))
    return SideEffectRow(answer.checkin_id, answer.answered_at.astimezone(zone), label, shown,
                         flagged)  # fmt: skip

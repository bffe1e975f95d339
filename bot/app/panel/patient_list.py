"""The Patients page: a row per patient the viewer may see (:mod:`bot.app.panel.access`),
with their treatment sessions so far, baseline and latest PHQ-9 (band, change), outcome
badges, last check-in and open alerts; searched and filtered.

Invariants:

* A fixed number of queries whatever the number of patients: the patients, then their
  sessions, PHQ-9 scores, last check-ins and open alerts, each in one query over all of
  them, and the audit event. (Names are encrypted, so the search runs here, on the
  decrypted names, before the four queries: they read only the patients shown.)
* The outcome badges are :func:`bot.domain.outcomes.assess` over the instrument's own
  ``[outcomes]`` rules, with each score placed in the series as the series report places
  it (the sessions started before it): one implementation of the thresholds.
* A filter value the page does not know is ignored and named in ``Filters.ignored``,
  never an error.
* One ``panel_patients_viewed`` audit event per view, with the count and no names.
"""

from __future__ import annotations

import bisect
import dataclasses
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.app.panel.access import visible
from bot.app.panel.signin import Viewer
from bot.app.ports import Clock
from bot.domain.outcomes import Assessment, Observation, assess
from bot.instruments import Catalog
from bot.storage.alerts import UNRESOLVED
from bot.storage.database import Database
from bot.storage.repository import Repository
from bot.storage.tables import PATIENT_STATUSES, Alert, Checkin, Patient, Score, TreatmentSession

INSTRUMENT = "phq9"
OUTCOMES = ("early_improvement", "response", "remission", "non_response")  # the badges
WHO = ("mine", "all")


@dataclass(frozen=True)
class Filters:
    q: str = ""
    who: str = "all"
    status: str = ""
    outcome: str = ""
    ignored: tuple[str, ...] = ()  # the query parameters whose value was not understood


@dataclass(frozen=True)
class Measure:
    total: int
    band: str  # the instrument's band label ("" without bands)


@dataclass(frozen=True)
class PatientRow:
    id: int
    name: str
    protocol: str | None
    status: str
    sessions: int  # held so far: not cancelled, at or before now
    baseline: Measure | None
    latest: Measure | None
    change_pct: float | None  # latest against baseline, in %: negative is better
    badges: tuple[str, ...]  # of OUTCOMES, in that order
    last_checkin_at: datetime | None  # in the viewer's zone
    last_checkin_status: str | None
    open_alerts: int


@dataclass(frozen=True)
class PatientList:
    now: datetime
    filters: Filters
    rows: list[PatientRow]
    statuses: tuple[str, ...] = PATIENT_STATUSES
    outcomes: tuple[str, ...] = OUTCOMES


def filters_from(params: Mapping[str, str], viewer: Viewer) -> Filters:
    """The filters of the page's query string; a value not understood is dropped and named."""
    ignored = []
    picked = {}
    for name, allowed, default in (
        ("who", WHO, "all" if viewer.admin else "mine"),
        ("status", PATIENT_STATUSES, ""),
        ("outcome", OUTCOMES, ""),
    ):
        value = params.get(name, "")
        if value and value not in allowed:
            ignored.append(name)
        picked[name] = value if value in allowed else default
    q = params.get("q", "").strip()
    return Filters(q[:100], picked["who"], picked["status"], picked["outcome"], tuple(ignored))


async def patient_list(
    db: Database, clock: Clock, catalog: Catalog, viewer: Viewer, filters: Filters
) -> PatientList:
    now = clock()
    async with db.transaction() as session:
        patients = [p for p in await _patients(session, viewer, filters) if _found(p, filters.q)]
        ids = [p.id for p in patients if p.id is not None]
        rows = await _rows(session, catalog, patients, ids, now, viewer)
        if filters.outcome:
            rows = [r for r in rows if filters.outcome in r.badges]
        subject = f"clinician:{viewer.clinician_id}"
        await Repository(session).audit(
            now, viewer.actor, "panel_patients_viewed", subject, count=len(rows)
        )
    return PatientList(now.astimezone(viewer.zone), filters, rows)


async def _patients(session: AsyncSession, viewer: Viewer, filters: Filters) -> list[Patient]:
    # "mine" is what a clinician sees (own and covered), for an admin too
    seeing = viewer if filters.who == "all" else dataclasses.replace(viewer, role="clinician")
    statement = select(Patient).where(visible(seeing))
    if filters.status:
        statement = statement.where(col(Patient.status) == filters.status)
    return list((await session.exec(statement.order_by(col(Patient.id)))).all())


def _found(patient: Patient, q: str) -> bool:
    if not q:
        return True
    return q.casefold() in patient.display_name.casefold() or (q.isdigit() and int(q) == patient.id)


async def _rows(
    session: AsyncSession, catalog: Catalog, patients: Sequence[Patient], ids: list[int],
    now: datetime, viewer: Viewer,
) -> list[PatientRow]:  # fmt: skip
    if not ids:
        return []
    sessions = await _sessions(session, ids)
    scores = await _scores(session, ids)
    last = await _last_checkins(session, ids, now)
    alerts = await _open_alerts(session, ids)
    rows = []
    for p in patients:
        pid = p.id or 0
        held = sessions.get(pid, [])
        phq9 = _assessment(catalog, scores.get(pid, []), held)
        checkin = last.get(pid)
        rows.append(PatientRow(
            id=pid, name=p.display_name, protocol=p.protocol, status=p.status,
            sessions=bisect.bisect_right(held, now), baseline=_measure(catalog, phq9.baseline),
            latest=_measure(catalog, phq9.latest),
            change_pct=None if phq9.improvement_pct is None else -phq9.improvement_pct,
            badges=tuple(o for o in OUTCOMES if getattr(phq9, o) is True),
            last_checkin_at=checkin[0].astimezone(viewer.zone) if checkin else None,
            last_checkin_status=checkin[1] if checkin else None, open_alerts=alerts.get(pid, 0),
        ))  # fmt: skip
    return sorted(rows, key=lambda r: (r.name.casefold(), r.id))


def _assessment(
    catalog: Catalog, scores: Sequence[tuple[datetime, int]], held: Sequence[datetime]
) -> Assessment:
    if INSTRUMENT not in catalog.instruments or not scores:
        return Assessment(None, None, None, None, None)
    # a score's place: the sessions started before it (as the series report counts them)
    observations = [Observation(at, total, bisect.bisect_left(held, at)) for at, total in scores]
    return assess(observations, catalog.get(INSTRUMENT).outcomes)


def _measure(catalog: Catalog, total: int | None) -> Measure | None:
    if total is None:
        return None
    band = catalog.get(INSTRUMENT).band_for(total)
    return Measure(total, band.label.get("en") if band else "")


def _among(column: Any, ids: list[int]) -> Any:
    return col(column).in_(ids)


async def _sessions(session: AsyncSession, ids: list[int]) -> dict[int, list[datetime]]:
    statement = select(TreatmentSession.patient_id, TreatmentSession.at).where(
        _among(TreatmentSession.patient_id, ids), col(TreatmentSession.cancelled_at).is_(None)
    )
    found: dict[int, list[datetime]] = defaultdict(list)
    for pid, at in (await session.exec(statement.order_by(col(TreatmentSession.at)))).all():
        found[pid].append(at)
    return found


async def _scores(session: AsyncSession, ids: list[int]) -> dict[int, list[tuple[datetime, int]]]:
    statement = select(Score.patient_id, Score.completed_at, Score.total).where(
        _among(Score.patient_id, ids),
        col(Score.instrument) == INSTRUMENT,
        col(Score.total).is_not(None),
        col(Score.valid).is_(True),
    )
    found: dict[int, list[tuple[datetime, int]]] = defaultdict(list)
    for pid, at, total in (await session.exec(statement.order_by(col(Score.completed_at)))).all():
        if total is not None:
            found[pid].append((at, total))
    return found


async def _last_checkins(
    session: AsyncSession, ids: list[int], now: datetime
) -> dict[int, tuple[datetime, str]]:
    """Each patient's check-in that came due last (at or before now): when, and its status."""
    latest = (
        select(Checkin.patient_id, func.max(Checkin.due_at).label("due"))
        .where(_among(Checkin.patient_id, ids), col(Checkin.due_at) <= now)
        .group_by(col(Checkin.patient_id))
        .subquery()
    )
    same_due = col(Checkin.due_at) == latest.c.due
    statement = (
        select(Checkin.patient_id, Checkin.due_at, Checkin.status, Checkin.id)
        .join(latest, (col(Checkin.patient_id) == latest.c.patient_id) & same_due)
        .order_by(col(Checkin.id))
    )
    return {pid: (due, status) for pid, due, status, _ in (await session.exec(statement)).all()}


async def _open_alerts(session: AsyncSession, ids: list[int]) -> dict[int, int]:
    statement = (
        select(Alert.patient_id, func.count())
        .where(_among(Alert.patient_id, ids), col(Alert.status).in_(UNRESOLVED))
        .group_by(col(Alert.patient_id))
    )
    return {pid: n for pid, n in (await session.exec(statement)).all()}

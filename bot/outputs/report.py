"""A patient's series report: one self-contained HTML page a clinician can file or print.

It summarises what is stored, as stored: the name (or pseudonym) and protocol, each
instrument's baseline and latest outcome status (``bot.domain.outcomes.assess``; the
clinician's MADRS with ``bot.domain.measures.MADRS_RULES``), every score with its session
number and hours since that session (fixed when it was made), every
treatment session with the scores just before and just after it, side-effect flags (from
scores and from ``flag_raised`` audit events), alerts with their status, and the trend chart
embedded as a base64 PNG. :func:`load_report` reads, :func:`render_html` lays out (Jinja,
autoescaped), :func:`write_report` does both, writes the file (mode 0600) and audits it.
"""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

import jinja2
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.app.trends import load_trend
from bot.domain.dosing import Dose
from bot.domain.errors import NotFound
from bot.domain.measures import MADRS, MADRS_RULES
from bot.domain.outcomes import Observation, assess
from bot.instruments import Catalog
from bot.rendering.chart import render_trend
from bot.rendering.renderer import TEMPLATES_DIR
from bot.storage.database import Database
from bot.storage.repository import Repository
from bot.storage.tables import Alert, AuditEvent, Score, TreatmentSession

FORMATS = ("html",)  # PDF would need a layout engine (a heavy dependency); print the HTML


@dataclass(frozen=True)
class Outcome:
    instrument: str
    name: str
    baseline: int | None
    latest: int | None
    best: int | None
    change: int | None
    improvement_pct: float | None
    statuses: tuple[str, ...]
    count: int


@dataclass(frozen=True)
class SessionRow:
    number: int
    kind: str
    at: datetime
    before: dict[str, int]  # instrument -> the last valid total before this session
    after: dict[str, int]  # instrument -> the first valid total after it (before the next)
    dose: str = ""  # "0.5 mg/kg", "84 mg"; empty when not recorded


@dataclass(frozen=True)
class ScoreRow:
    """One score with its place in the series, as fixed when it was made."""

    at: datetime
    instrument: str
    value: str  # the total, or a blood pressure's "150/95"
    band: str | None
    session_number: int | None
    hours_since_session: float | None
    time_point: str | None  # blood pressure: "pre", "40min", "2h"
    rated: bool  # a clinician-rated measure (no check-in)


@dataclass(frozen=True)
class FlagRow:
    at: datetime
    source: str  # "score:<instrument>" or "check-in"
    flags: tuple[str, ...]


@dataclass(frozen=True)
class AlertRow:
    id: int
    rule: str
    level: str
    status: str
    created_at: datetime
    acknowledged_at: datetime | None
    resolved_at: datetime | None


@dataclass(frozen=True)
class Report:
    patient_id: int
    name: str
    status: str
    protocol: str | None
    generated_at: datetime
    outcomes: tuple[Outcome, ...]
    sessions: tuple[SessionRow, ...]
    flags: tuple[FlagRow, ...]
    alerts: tuple[AlertRow, ...]
    scores: tuple[ScoreRow, ...] = ()
    chart_png: bytes | None = None

    @property
    def chart_base64(self) -> str | None:
        return base64.b64encode(self.chart_png).decode("ascii") if self.chart_png else None


async def load_report(
    session: AsyncSession, catalog: Catalog, patient_id: int, now: datetime
) -> Report:
    """Everything the report shows but the chart; NotFound for an unknown patient."""
    repo = Repository(session)
    patient = await repo.get_patient(patient_id)
    if patient is None:
        raise NotFound("patient", patient_id)
    scores = await repo.scores_for_patient(patient_id)
    sessions = await _sessions(session, patient_id)
    valid = [s for s in scores if s.valid and s.total is not None]
    return Report(
        patient_id=patient_id,
        name=patient.display_name,
        status=patient.status,
        protocol=patient.protocol,
        generated_at=now,
        outcomes=_outcomes(catalog, valid, sessions),
        sessions=_session_rows(valid, sessions),
        flags=await _flags(session, scores, patient_id),
        alerts=tuple(_alert_row(a) for a in reversed(await repo.alerts_for_patient(patient_id))),
        scores=tuple(map(_score_row, scores)),
    )


async def _sessions(session: AsyncSession, patient_id: int) -> list[TreatmentSession]:
    statement = select(TreatmentSession).where(
        TreatmentSession.patient_id == patient_id, col(TreatmentSession.cancelled_at).is_(None)
    )
    return list((await session.exec(statement.order_by(col(TreatmentSession.at)))).all())


def _outcomes(
    catalog: Catalog, scores: Sequence[Score], sessions: Sequence[TreatmentSession]
) -> tuple[Outcome, ...]:
    rows = []
    for key in sorted({s.instrument for s in scores}):
        if key not in catalog.instruments and key != MADRS:
            continue
        name, rules = (
            ("MADRS (clinician)", MADRS_RULES)
            if key == MADRS
            else (catalog.get(key).name, catalog.get(key).outcomes)
        )
        observations = [
            Observation(s.completed_at, s.total, _completed_before(sessions, s.completed_at))
            for s in scores
            if s.instrument == key and s.total is not None
        ]
        found = assess(observations, rules)
        rows.append(
            Outcome(key, name, found.baseline, found.latest, found.best, found.change,
                    found.improvement_pct, found.statuses, len(observations))
        )  # fmt: skip
    return tuple(rows)


def _completed_before(sessions: Sequence[TreatmentSession], at: datetime) -> int:
    """How many treatment sessions had started before `at` (Observation.session). A score
    completed at a session's very start (a pre-session check-in closed as dosing began)
    is before it; one completed after it started never is."""
    return sum(1 for s in sessions if s.at < at)


def _session_rows(
    scores: Sequence[Score], sessions: Sequence[TreatmentSession]
) -> tuple[SessionRow, ...]:
    rows = []
    for n, treatment in enumerate(sessions):
        until = sessions[n + 1].at if n + 1 < len(sessions) else None
        before: dict[str, int] = {}
        after: dict[str, int] = {}
        for s in scores:  # oldest first: the last before wins, the first after stays
            if s.total is None:
                continue
            if s.completed_at <= treatment.at:  # at its start at the latest: see above
                before[s.instrument] = s.total
            elif until is None or s.completed_at < until:
                after.setdefault(s.instrument, s.total)
        dose = (
            Dose(treatment.route, treatment.dose, treatment.dose_unit) if treatment.route else None
        )
        rows.append(SessionRow(treatment.number, treatment.kind, treatment.at, before, after,
                               dose.text() if dose else ""))  # fmt: skip
    return tuple(rows)


async def _flags(
    session: AsyncSession, scores: Sequence[Score], patient_id: int
) -> tuple[FlagRow, ...]:
    rows = [
        FlagRow(s.completed_at, f"score:{s.instrument}", tuple(s.flags)) for s in scores if s.flags
    ]
    statement = select(AuditEvent).where(
        AuditEvent.subject == f"patient:{patient_id}", AuditEvent.action == "flag_raised"
    )
    for event in (await session.exec(statement.order_by(col(AuditEvent.id)))).all():
        rows.append(FlagRow(event.at, "check-in", (str(event.detail.get("flag", "")),)))
    return tuple(sorted(rows, key=lambda r: r.at))


def _score_row(score: Score) -> ScoreRow:
    parts = score.components or {}
    value = (
        f"{parts['systolic']}/{parts['diastolic']}"
        if "systolic" in parts
        else ("" if score.total is None else str(score.total))
    )
    return ScoreRow(score.completed_at, score.instrument, value, score.band,
                    score.session_number, score.hours_since_session, score.time_point,
                    score.checkin_id is None)  # fmt: skip


def _alert_row(alert: Alert) -> AlertRow:
    assert alert.id is not None
    return AlertRow(alert.id, alert.rule, alert.level, alert.status, alert.created_at,
                    alert.acknowledged_at, alert.resolved_at)  # fmt: skip


def environment(directory: Path = TEMPLATES_DIR / "report") -> jinja2.Environment:
    """The report templates' environment: HTML, so autoescaped; undefined names are errors."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(directory),
        undefined=jinja2.StrictUndefined,
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_html(report: Report, env: jinja2.Environment | None = None) -> str:
    """The report as one HTML document (the chart inline, nothing fetched)."""
    template = (env or environment()).get_template("series.html.j2")
    return template.render(report=report)


async def write_report(
    db: Database, catalog: Catalog, patient_id: int, out: Path, now: datetime, actor: str
) -> Report:
    """Load, draw (in a worker thread), render and write the report; audited."""
    report = await _drawn(db, catalog, patient_id, now)
    _write_private(out, render_html(report))
    async with db.transaction() as session:
        await Repository(session).audit(
            now, actor, "report_written", f"patient:{patient_id}", format="html"
        )
    return report


async def report_html(
    db: Database, catalog: Catalog, patient_id: int, now: datetime, actor: str
) -> str:
    """The report as HTML for the panel to serve (nothing written); audited as viewed."""
    html = render_html(await _drawn(db, catalog, patient_id, now))
    async with db.transaction() as session:
        await Repository(session).audit(
            now, actor, "report_viewed", f"patient:{patient_id}", format="html"
        )
    return html


async def _drawn(db: Database, catalog: Catalog, patient_id: int, now: datetime) -> Report:
    async with db.transaction() as session:
        report = await load_report(session, catalog, patient_id, now)
        trend = await load_trend(session, catalog, patient_id, report.name)
    if trend.series:
        png = await asyncio.to_thread(render_trend, trend)
        report = replace(report, chart_png=png)
    return report


def _write_private(path: Path, text: str) -> None:
    """Write `text` to `path`, readable by its owner only (also when it existed before)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as fh:
        fh.write(text)

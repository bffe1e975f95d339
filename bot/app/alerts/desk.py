"""What a linked clinician can ask for, on whichever channel they use: ``ACK CODE`` (or
``/ack CODE``, or the Acknowledge button on a notice), ``ALERTS`` / ``/alerts``,
``/patients``, ``/trend PATIENT`` (a chart, sent as a photo) and ``/help``.

A clinician sees and acknowledges only the alerts of their own patients and the alerts
they were told about (``Alert.recipients``, e.g. as the backup); a trend only for those
patients. A code or a patient outside that is answered as unknown, never confirmed to
exist. Every acknowledgement, every patient list and every trend view is audited.

A list answer (ALERTS, /patients) too long for one message goes as several, cut between
items (:func:`bot.app.alerts.notices.tell_parts`); ALERTS lists the most urgent first, as a
digest does, so that if even five messages cannot hold them all, what is left for the web
panel is the least urgent.

:class:`bot.app.alerts.alerting.Alerting` hands a linked clinician's message to :func:`handle`;
the answers go out through :mod:`bot.app.alerts.notices`.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from datetime import datetime

from sqlmodel import col, select

from bot.app.alerts.actions import acknowledge_alert
from bot.app.alerts.notices import tell, tell_parts
from bot.app.trends import load_trend
from bot.domain import events as ev
from bot.domain.alerts import normalize_code
from bot.domain.alerts.digest import urgency
from bot.instruments import Catalog
from bot.rendering.renderer import ACK_BUTTON, Renderer
from bot.storage.alerts import UNRESOLVED, may_see, visible_to
from bot.storage.repository import Repository
from bot.storage.tables import Alert, Clinician, Patient, Score

COMMANDS = ("ack", "alerts", "patients", "trend", "help")
GONE = ("discharged",)  # patients no longer listed


def parse(text: str, kind: str) -> tuple[str, str]:
    """(command, argument): ``"/trend@bot 12"`` -> ("trend", "12"); anything else -> help."""
    if kind == "button":
        return (
            ("ack", text.removeprefix(ACK_BUTTON)) if text.startswith(ACK_BUTTON) else ("help", "")
        )
    words = text.strip().split(maxsplit=1)
    name = words[0].lstrip("/").split("@", 1)[0].lower() if words else ""
    argument = words[1].strip() if len(words) > 1 else ""
    if name not in COMMANDS or (name == "ack" and not argument):
        return "help", ""
    return name, argument


async def handle(
    catalog: Catalog,
    renderer: Renderer,
    repo: Repository,
    clinician: Clinician,
    text: str,
    kind: str,
    source: str,
    now: datetime,
) -> None:
    command, argument = parse(text, kind)
    if command == "ack":
        await _ack(renderer, repo, clinician, argument, source, now)
    elif command == "alerts":
        await _alerts(renderer, repo, clinician, source, now)
    elif command == "patients":
        await _patients(renderer, repo, clinician, source, now)
    elif command == "trend":
        await _trend(catalog, renderer, repo, clinician, argument, source, now)
    else:
        await tell(renderer, repo, clinician, ev.ClinicianHelp(), source, now)


async def _ack(
    renderer: Renderer,
    repo: Repository,
    clinician: Clinician,
    typed: str,
    source: str,
    now: datetime,
) -> None:
    assert clinician.id is not None
    code = normalize_code(typed)
    row = None
    if code is not None:
        statement = select(Alert, Patient).join(Patient, col(Patient.id) == col(Alert.patient_id))
        statement = statement.where(Alert.code == code, col(Alert.status).in_(UNRESOLVED))
        found = (await repo.session.exec(statement)).first()
        if found is not None and may_see(found[0], found[1], clinician.id):
            row = found[0]
    if row is None:
        await tell(renderer, repo, clinician, ev.AckUnknown(typed[:12]), source, now)
        return
    await acknowledge_alert(repo, row, clinician.id, now)
    await tell(renderer, repo, clinician, ev.AckConfirmed(row.code), source, now)


async def _alerts(
    renderer: Renderer, repo: Repository, clinician: Clinician, source: str, now: datetime
) -> None:
    assert clinician.id is not None
    found = await visible_to(repo.session, clinician.id)
    lines = sorted(
        (ev.AlertLine(a.code, a.level, a.rule, p.display_name, a.status, a.created_at)
         for a, p in found),
        key=lambda x: (urgency(x.level), x.at, x.code),
    )  # fmt: skip
    for patient_id in sorted({p.id for _, p in found if p.id is not None}):
        await _audit(repo, clinician, "alerts_viewed", patient_id, now)

    def alerts(shown: Sequence[ev.AlertLine], part: int, parts: int, more: int) -> ev.Intent:
        return ev.ClinicianAlerts(tuple(shown), len(lines), part, parts, more)

    await tell_parts(renderer, repo, clinician, lines, alerts, source, now)


async def _patients(
    renderer: Renderer, repo: Repository, clinician: Clinician, source: str, now: datetime
) -> None:
    patients = await _own_patients(repo, clinician)
    open_counts = await _open_alert_counts(repo, [p.id for p in patients if p.id is not None])
    lines = []
    for patient in patients:
        assert patient.id is not None
        instrument, last, previous = await _last_two(repo, patient.id)
        lines.append(
            ev.PatientLine(patient.id, patient.display_name, instrument, last, previous,
                           open_counts[patient.id])
        )  # fmt: skip
        await _audit(repo, clinician, "patient_listed", patient.id, now)

    def listed(shown: Sequence[ev.PatientLine], part: int, parts: int, more: int) -> ev.Intent:
        return ev.ClinicianPatients(tuple(shown), len(lines), part, parts, more)

    await tell_parts(renderer, repo, clinician, lines, listed, source, now)


async def _trend(
    catalog: Catalog,
    renderer: Renderer,
    repo: Repository,
    clinician: Clinician,
    query: str,
    source: str,
    now: datetime,
) -> None:
    if not query:
        await tell(renderer, repo, clinician, ev.TrendUnavailable("usage"), source, now)
        return
    patient = _match(await _reachable_patients(repo, clinician), query)
    if patient is None or patient.id is None:
        await tell(renderer, repo, clinician, ev.TrendUnavailable("unknown"), source, now)
        return
    from bot.rendering.chart import render_trend  # matplotlib: loaded only when charting

    trend = await load_trend(repo.session, catalog, patient.id, patient.display_name)
    await _audit(repo, clinician, "trend_viewed", patient.id, now)
    if not trend.series:
        await tell(renderer, repo, clinician, ev.TrendUnavailable("no_scores"), source, now)
        return
    png = await asyncio.to_thread(render_trend, trend)  # off the event loop
    count = len({p.at for s in trend.series for p in s.points})
    caption = ev.TrendChart(patient.display_name, count)
    await tell(renderer, repo, clinician, caption, source, now, photo=png)


# ---- queries -----------------------------------------------------------------------------


async def _own_patients(repo: Repository, clinician: Clinician) -> list[Patient]:
    statement = select(Patient).where(
        Patient.clinician_id == clinician.id, col(Patient.status).not_in(GONE)
    )
    return list((await repo.session.exec(statement.order_by(col(Patient.id)))).all())


async def _reachable_patients(repo: Repository, clinician: Clinician) -> list[Patient]:
    """Their own patients, and the patients of any alert they were told about."""
    assert clinician.id is not None
    own = await _own_patients(repo, clinician)
    told = await visible_to(
        repo.session, clinician.id, statuses=("open", "acknowledged", "resolved")
    )
    extra = [p for _, p in told if p.id not in {o.id for o in own}]
    return own + list({p.id: p for p in extra}.values())


def _match(patients: list[Patient], query: str) -> Patient | None:
    """By id, by whole name (any case), or by the start of exactly one name."""
    if query.isdigit():
        return next((p for p in patients if p.id == int(query)), None)
    wanted = query.casefold()
    exact = [p for p in patients if p.display_name.casefold() == wanted]
    starts = [p for p in patients if p.display_name.casefold().startswith(wanted)]
    chosen = exact or starts
    return chosen[0] if len(chosen) == 1 else None


async def _last_two(repo: Repository, patient_id: int) -> tuple[str | None, int | None, int | None]:
    """The latest valid PHQ-9 total and the one before (else the latest of any instrument)."""
    statement = select(Score).where(
        Score.patient_id == patient_id,
        col(Score.total).is_not(None),
        Score.valid == True,  # noqa: E712
    )
    scores = (await repo.session.exec(statement.order_by(col(Score.completed_at).desc()))).all()
    if not scores:
        return None, None, None
    key = "phq9" if any(s.instrument == "phq9" for s in scores) else scores[0].instrument
    chosen = [s for s in scores if s.instrument == key]
    previous = chosen[1].total if len(chosen) > 1 else None
    return chosen[0].instrument, chosen[0].total, previous


async def _open_alert_counts(repo: Repository, patient_ids: list[int]) -> Counter[int]:
    if not patient_ids:
        return Counter()
    statement = select(Alert.patient_id).where(
        col(Alert.patient_id).in_(patient_ids), col(Alert.status).in_(UNRESOLVED)
    )
    return Counter((await repo.session.exec(statement)).all())


async def _audit(
    repo: Repository, clinician: Clinician, action: str, patient_id: int, now: datetime
) -> None:
    await repo.audit(now, f"clinician:{clinician.id}", action, f"patient:{patient_id}")

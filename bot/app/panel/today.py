"""The Today page: the viewer's open alerts, most urgent first, and the check-ins due, open
and missed today (the viewer's day, in their time zone); acknowledging and resolving an
alert from it. Only patients the viewer may see (:mod:`bot.app.panel.access`); each view
and each action is audited with the viewer as actor.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.app.alerts.actions import acknowledge_alert, resolve_alert
from bot.app.operator.refusals import Refused
from bot.app.panel.access import alert_for, visible
from bot.app.panel.signin import Viewer
from bot.app.ports import Clock
from bot.domain import alerts
from bot.storage.alerts import UNRESOLVED
from bot.storage.database import Database
from bot.storage.repository import Repository
from bot.storage.tables import Alert, Checkin, Patient

# why an alert was closed: the panel offers these and nothing else (labels: templates)
RESOLUTIONS = ("patient_contacted", "care_plan_updated", "not_a_concern", "duplicate", "other")
URGENCY: dict[str, int] = {lv: n for n, lv in enumerate(reversed(alerts.LEVELS))}  # crisis 0
OPEN_CHECKINS = ("sent", "in_progress", "paused")


@dataclass(frozen=True)
class AlertRow:
    id: int
    patient_id: int
    patient: str
    rule: str
    level: str
    status: str
    raised_at: datetime  # in the viewer's zone, like every time below
    deadline: datetime | None
    overdue: bool
    escalations: int
    resolvable: bool  # crisis alerts too: the viewer is a clinician


@dataclass(frozen=True)
class CheckinRow:
    id: int
    patient_id: int
    patient: str
    instruments: tuple[str, ...]
    status: str
    due_at: datetime
    expires_at: datetime


@dataclass(frozen=True)
class Today:
    now: datetime
    alerts: list[AlertRow]
    due: list[CheckinRow]
    open: list[CheckinRow]
    missed: list[CheckinRow]


async def today(db: Database, clock: Clock, viewer: Viewer) -> Today:
    now = clock().astimezone(viewer.zone)
    start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    end = (start + timedelta(days=1, hours=1)).replace(hour=0)  # a DST day: 23 or 25 h
    async with db.transaction() as session:
        rows = await _alerts(session, viewer, now)
        checkins = await _checkins(session, viewer, start, end)
        await Repository(session).audit(clock(), viewer.actor, "panel_today_viewed",
                                        f"clinician:{viewer.clinician_id}",
                                        alerts=len(rows), checkins=len(checkins))  # fmt: skip
    return Today(
        now,
        rows,
        due=[c for c in checkins if c.status == "pending"],
        open=[c for c in checkins if c.status in OPEN_CHECKINS],
        missed=[c for c in checkins if c.status == "expired"],
    )


async def acknowledge(db: Database, clock: Clock, viewer: Viewer, alert_id: int) -> bool:
    """Acknowledge the alert (404 unless the viewer may see its patient); audited. False
    when it was not open."""
    async with db.transaction() as session:
        row = await alert_for(session, viewer, alert_id)
        return await acknowledge_alert(Repository(session), row, viewer.clinician_id, clock())


async def resolve(db: Database, clock: Clock, viewer: Viewer, alert_id: int, reason: str) -> bool:
    """Resolve the alert for one of :data:`RESOLUTIONS`; audited with the reason."""
    if reason not in RESOLUTIONS:
        raise Refused(f"resolution {reason!r} is not one of {', '.join(RESOLUTIONS)}")
    async with db.transaction() as session:
        row = await alert_for(session, viewer, alert_id)
        by = alerts.clinician(viewer.clinician_id)
        return await resolve_alert(Repository(session), row, by, clock(), reason=reason)


async def _alerts(session: AsyncSession, viewer: Viewer, now: datetime) -> list[AlertRow]:
    statement = (
        select(Alert, Patient)
        .join(Patient, col(Patient.id) == col(Alert.patient_id))
        .where(col(Alert.status).in_(UNRESOLVED), visible(viewer))
    )
    found = [_alert_row(a, p, now, viewer) for a, p in (await session.exec(statement)).all()]
    far = now + timedelta(days=3650)
    return sorted(
        found,
        key=lambda r: (URGENCY.get(r.level, 9), r.status != "open", r.deadline or far, r.id),
    )


def _alert_row(alert: Alert, patient: Patient, now: datetime, viewer: Viewer) -> AlertRow:
    deadline = alert.ack_deadline.astimezone(viewer.zone) if alert.ack_deadline else None
    return AlertRow(
        id=alert.id or 0,
        patient_id=patient.id or 0,
        patient=patient.display_name,
        rule=alert.rule,
        level=alert.level,
        status=alert.status,
        raised_at=alert.created_at.astimezone(viewer.zone),
        deadline=deadline,
        overdue=alert.status == "open" and deadline is not None and deadline < now,
        escalations=alert.escalation_count,
        resolvable=True,
    )


async def _checkins(
    session: AsyncSession, viewer: Viewer, start: datetime, end: datetime
) -> list[CheckinRow]:
    due = (col(Checkin.status) == "pending") & col(Checkin.due_at).between(start, end)
    missed = (col(Checkin.status) == "expired") & col(Checkin.expires_at).between(start, end)
    statement = (
        select(Checkin, Patient)
        .join(Patient, col(Patient.id) == col(Checkin.patient_id))
        .where(visible(viewer), due | missed | col(Checkin.status).in_(OPEN_CHECKINS))
        .order_by(col(Checkin.due_at), col(Checkin.id))
    )
    rows = (await session.exec(statement)).all()
    return [
        CheckinRow(c.id or 0, p.id or 0, p.display_name, tuple(c.instruments), c.status,
                   c.due_at.astimezone(viewer.zone), c.expires_at.astimezone(viewer.zone))
        for c, p in rows
    ]  # fmt: skip

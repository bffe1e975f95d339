"""Clinician alerts as an operator reviews them: list, acknowledge, resolve. Every step is
audited. A crisis alert (and a suicidality or red-flag alert at any level) is resolved
only by a clinician: anyone else is refused, and the refusal audited too
(:class:`bot.app.alerts.alerting.Alerting` decides and records that)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.app.operator.refusals import Refused
from bot.app.ports import Clock
from bot.app.services import Services
from bot.domain.alerts import OPERATOR, clinician, clinician_only
from bot.domain.errors import NotFound
from bot.storage.alerts import UNRESOLVED, state_of, undelivered_counts, unrouted_counts
from bot.storage.database import Database
from bot.storage.repository import Repository
from bot.storage.tables import Alert, Clinician, Patient


@dataclass(frozen=True)
class AlertView:
    id: int
    patient_id: int
    patient: str  # the patient's display name
    rule: str
    level: str
    status: str
    code: str
    detail: dict[str, Any]
    created_at: datetime
    ack_deadline: datetime | None
    acknowledged_by: int | None
    acknowledged_at: datetime | None
    resolved_by: str | None
    resolved_at: datetime | None
    escalations: int
    occurrences: int
    notified: tuple[int, ...]  # the clinicians told so far
    unrouted: int  # notices nobody could be sent
    clinician_only: bool  # only a clinician may resolve it
    undelivered: int = 0  # notices the provider refused for good (told to the next in line)

    @classmethod
    def of(cls, alert: Alert, patient: Patient, unrouted: int, undelivered: int = 0) -> AlertView:
        assert alert.id is not None
        return cls(
            alert.id, alert.patient_id, patient.display_name, alert.rule, alert.level,
            alert.status, alert.code, dict(alert.detail), alert.created_at, alert.ack_deadline,
            alert.acknowledged_by, alert.acknowledged_at, alert.resolved_by, alert.resolved_at,
            alert.escalation_count, alert.occurrences, tuple(alert.recipients), unrouted,
            clinician_only(state_of(alert)), undelivered,
        )  # fmt: skip


async def list_alerts(
    db: Database, clock: Clock, *, open_only: bool = False, patient_id: int | None = None
) -> list[AlertView]:
    """Alerts (unresolved only, one patient's only), newest first."""
    async with db.transaction() as session:
        statement = select(Alert, Patient).join(Patient, col(Patient.id) == col(Alert.patient_id))
        if open_only:
            statement = statement.where(col(Alert.status).in_(UNRESOLVED))
        if patient_id is not None:
            statement = statement.where(Alert.patient_id == patient_id)
        order = (col(Alert.created_at).desc(), col(Alert.id).desc())
        found = (await session.exec(statement.order_by(*order))).all()
        ids = [a.id for a, _ in found if a.id is not None]
        unrouted = await unrouted_counts(session, ids)
        undelivered = await undelivered_counts(session, ids)
        subject = f"patient:{patient_id}" if patient_id is not None else "alerts"
        await Repository(session).audit(clock(), "operator", "alerts_listed", subject)
        return [AlertView.of(a, p, unrouted[a.id or 0], undelivered[a.id or 0]) for a, p in found]


@dataclass(frozen=True)
class Outcome:
    """Where an alert stands after an acknowledgement or a resolution."""

    done: bool  # False: nothing changed (already acknowledged; resolution refused)
    status: str
    code: str
    level: str  # before the change
    rule: str


async def acknowledge(
    db: Database, clock: Clock, services: Services, alert_id: int, by: int | None = None
) -> Outcome:
    """Clinician `by` (None: the operator) has seen the alert: its reminders and escalation
    stop."""
    async with db.transaction() as session:
        row = await _alert(session, alert_id, by)
        level, rule = row.level, row.rule
        assert services.alerting is not None
        done = await services.alerting.acknowledge(Repository(session), row, by, clock())
        return Outcome(done, row.status, row.code, level, rule)


async def resolve(
    db: Database, clock: Clock, services: Services, alert_id: int, by: int | None = None
) -> Outcome:
    """Close the alert; for clinician-only alerts, only with `by` (a clinician id)."""
    async with db.transaction() as session:
        row = await _alert(session, alert_id, by)
        before = state_of(row)
        actor = clinician(by) if by is not None else OPERATOR
        assert services.alerting is not None
        await services.alerting.resolve(Repository(session), row, actor, clock())
        done = row.status == "resolved"
        return Outcome(done, row.status, row.code, before.level, before.rule)


async def _alert(session: AsyncSession, alert_id: int, by: int | None) -> Alert:
    row = await session.get(Alert, alert_id)
    if row is None:
        raise NotFound("alert", alert_id)
    if by is not None and await session.get(Clinician, by) is None:
        raise NotFound("clinician", by)
    if row.status == "resolved":
        raise Refused(f"alert {alert_id} is already resolved; nothing to do")
    return row

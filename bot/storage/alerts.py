"""Alert rows: to and from the pure core's :class:`AlertState`, and the queries the alert
use cases need (a patient's unresolved alerts, who is responsible, a clinician's alerts,
how each ended up unrouted). Small functions over one session."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from sqlmodel.sql.expression import SelectOfScalar

from bot.domain.alerts import AlertState, CheckinOutcome
from bot.storage.checkins import CLOSED_STATUSES
from bot.storage.tables import (
    Alert,
    Answer,
    AuditEvent,
    Checkin,
    Clinician,
    Patient,
    TreatmentSession,
)

UNRESOLVED = ("open", "acknowledged")


def state_of(row: Alert) -> AlertState:
    return AlertState(
        code=row.code,
        rule=row.rule,
        level=row.level,  # type: ignore[arg-type]
        created_at=row.created_at,
        ack_deadline=row.ack_deadline,
        detail=dict(row.detail),
        status=row.status,  # type: ignore[arg-type]
        escalation_count=row.escalation_count,
        last_notified_at=row.last_notified_at,
        recipients=tuple(row.recipients),
        occurrences=row.occurrences,
        last_triggered_at=row.last_triggered_at,
        acknowledged_by=row.acknowledged_by,
        acknowledged_at=row.acknowledged_at,
    )


def store(row: Alert, state: AlertState) -> None:
    """Copy `state` onto the row (the caller adds it to the session)."""
    values: dict[str, Any] = {
        "rule": state.rule,
        "level": state.level,
        "status": state.status,
        "code": state.code,
        "detail": dict(state.detail),
        "created_at": state.created_at,
        "ack_deadline": state.ack_deadline,
        "escalation_count": state.escalation_count,
        "last_notified_at": state.last_notified_at,
        "recipients": list(state.recipients),
        "occurrences": state.occurrences,
        "last_triggered_at": state.last_triggered_at,
        "acknowledged_by": state.acknowledged_by,
        "acknowledged_at": state.acknowledged_at,
        "resolved_at": state.resolved_at,
        "resolved_by": str(state.resolved_by) if state.resolved_by else None,
    }
    for name, value in values.items():
        setattr(row, name, value)


def _unresolved(patient_id: int) -> SelectOfScalar[Alert]:
    statement = select(Alert).where(
        Alert.patient_id == patient_id, col(Alert.status).in_(UNRESOLVED)
    )
    return statement.order_by(col(Alert.id))


async def unresolved(session: AsyncSession, patient_id: int) -> list[Alert]:
    """The patient's open and acknowledged alerts, by id: to read (see
    :func:`unresolved_for_update` to write them back)."""
    return list((await session.exec(_unresolved(patient_id))).all())


async def unresolved_for_update(session: AsyncSession, patient_id: int) -> list[Alert]:
    """The patient's unresolved alerts, by id, to be written back (a turn's raise or
    amendment, under the patient's lock). PostgreSQL: the same statement ``FOR UPDATE``:
    locked in id order, read afresh (a copy already in the session is refreshed), waiting
    for one another transaction holds (never skipping it: a raise is never lost). Alert
    rows have no version counter, and an update writes each column it changed whole:
    without the lock, an escalation, a reroute or an acknowledgement committed between
    this read and the write would lose its ``detail`` (a failure round), ``recipients``
    or ``last_notified_at`` to the stale copy. SQLite: its one writer holds the lock from
    BEGIN already.

    Lock order: the patient's row first (a turn's, a start's or a reminder's lock; and
    ``mark_unreachable`` and ``Alerting.message_set_aside`` take it), then their alerts
    by id. A caller without it would deadlock with a turn: its new alert's insert waits
    for the patient's row (the foreign key's share lock) while it holds their alerts.
    None of the others waits for a patient's row: the escalation pass skips locked
    alerts (it never waits), a reroute locks its notice's alerts by id, an
    acknowledgement one alert: no deadlock."""
    statement = _unresolved(patient_id)
    if session.get_bind().dialect.name == "postgresql":
        statement = statement.with_for_update().execution_options(populate_existing=True)
    return list((await session.exec(statement)).all())


async def primary(session: AsyncSession, patient: Patient) -> int | None:
    """The responsible clinician if active; else their backup if active; else the clinic's
    first active clinician (an alert must reach someone who still reads them)."""
    if patient.clinician_id is not None:
        own = await session.get(Clinician, patient.clinician_id)
        if own is not None and own.active:
            return own.id
        if own is not None and own.backup_clinician_id is not None:
            cover = await session.get(Clinician, own.backup_clinician_id)
            if cover is not None and cover.active:
                return cover.id
    statement = select(Clinician.id).where(Clinician.active == True).order_by(col(Clinician.id))  # noqa: E712
    return (await session.exec(statement)).first()


async def backup(session: AsyncSession, primary_id: int | None) -> int | None:
    if primary_id is None:
        return None
    clinician = await session.get(Clinician, primary_id)
    if clinician is None or clinician.backup_clinician_id is None:
        return None
    cover = await session.get(Clinician, clinician.backup_clinician_id)
    return cover.id if cover is not None and cover.active else None


async def next_in_line(session: AsyncSession, primary_id: int | None) -> list[int]:
    """Whom a notice that failed for good goes to, in order: the primary's backup, then the
    clinic's other active clinicians with an address, by id (as :func:`primary` falls back
    to the first). The primary is not among them: every notice of an alert goes to them."""
    cover = await backup(session, primary_id)
    statement = (
        select(Clinician.id)
        .where(Clinician.active == True, col(Clinician.address).is_not(None))  # noqa: E712
        .order_by(col(Clinician.id))
    )
    others = [i for i in (await session.exec(statement)).all() if i not in (primary_id, cover)]
    return [i for i in (cover, *others) if i is not None]


async def session_times(session: AsyncSession, patient_id: int) -> list[datetime]:
    statement = select(TreatmentSession.at).where(
        TreatmentSession.patient_id == patient_id, col(TreatmentSession.cancelled_at).is_(None)
    )
    return sorted((await session.exec(statement)).all())


def count_before(sessions: Sequence[datetime], at: datetime) -> int | None:
    done = sum(1 for s in sessions if s < at)
    return done or None


async def recent_outcomes(
    session: AsyncSession, patient_id: int, limit: int = 10
) -> list[CheckinOutcome]:
    """How the patient's latest ended check-ins ended, oldest first."""
    statement = (
        select(Checkin)
        .where(Checkin.patient_id == patient_id, col(Checkin.status).in_(CLOSED_STATUSES))
        .order_by(col(Checkin.due_at).desc(), col(Checkin.id).desc())
        .limit(limit)
    )
    rows = (await session.exec(statement)).all()
    return [CheckinOutcome(r.due_at, r.status, r.partial) for r in reversed(rows)]  # type: ignore[arg-type]


async def answers_since(
    session: AsyncSession, patient_id: int, since: datetime, item_keys: Sequence[str]
) -> list[tuple[str, int, datetime]]:
    """The patient's whole-number answers to these items given at or after `since`:
    (item key, value, answered at). Values only, never reply text."""
    if not item_keys:
        return []
    statement = (
        select(Answer.item_key, Answer.value_int, Answer.answered_at)
        .join(Checkin, col(Checkin.id) == col(Answer.checkin_id))
        .where(
            Checkin.patient_id == patient_id,
            col(Answer.item_key).in_(item_keys),
            col(Answer.answered_at) >= since,
            col(Answer.value_int).is_not(None),
        )
    )
    rows = (await session.exec(statement)).all()
    return [(key, value, at) for key, value, at in rows if value is not None]


async def visible_to(
    session: AsyncSession, clinician_id: int, statuses: Sequence[str] = UNRESOLVED
) -> list[tuple[Alert, Patient]]:
    """Alerts a clinician may see: of their own patients, or ones they were told about."""
    statement = (
        select(Alert, Patient)
        .join(Patient, col(Patient.id) == col(Alert.patient_id))
        .where(col(Alert.status).in_(statuses))
        .order_by(col(Alert.created_at), col(Alert.id))
    )
    rows = (await session.exec(statement)).all()
    return [(a, p) for a, p in rows if may_see(a, p, clinician_id)]


def may_see(alert: Alert, patient: Patient, clinician_id: int) -> bool:
    return patient.clinician_id == clinician_id or clinician_id in alert.recipients


async def unrouted_counts(session: AsyncSession, alert_ids: Sequence[int]) -> Counter[int]:
    """How many times each alert had nobody to notify (from the `alert_unrouted` audits)."""
    return await audit_counts(session, "alert_unrouted", alert_ids)


async def undelivered_counts(session: AsyncSession, alert_ids: Sequence[int]) -> Counter[int]:
    """How many of each alert's notices failed for good (the `alert_undelivered` audits)."""
    return await audit_counts(session, "alert_undelivered", alert_ids)


async def audit_counts(
    session: AsyncSession, action: str, alert_ids: Sequence[int]
) -> Counter[int]:
    """How many audit events of `action` name each alert (``alert_id`` in their detail)."""
    if not alert_ids:
        return Counter()
    statement = select(AuditEvent.detail).where(AuditEvent.action == action)
    wanted = set(alert_ids)
    found = Counter[int]()
    for detail in (await session.exec(statement)).all():
        alert_id = detail.get("alert_id")
        if isinstance(alert_id, int) and alert_id in wanted:
            found[alert_id] += 1
    return found

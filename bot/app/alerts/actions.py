"""What a person does to an alert: acknowledge it (escalation stops) or resolve it. The
decisions are the pure core's (:mod:`bot.domain.alerts`); each is audited. A clinician
acknowledges through :mod:`bot.app.alerts.desk`, an operator through the CLI
(by way of :class:`bot.app.alerts.alerting.Alerting`).
"""

from __future__ import annotations

from datetime import datetime

from bot.domain import alerts
from bot.storage.alerts import state_of, store
from bot.storage.repository import Repository
from bot.storage.tables import Alert


async def acknowledge_alert(repo: Repository, row: Alert, by: int | None, now: datetime) -> bool:
    """Clinician `by` (None: the operator) has seen the alert; escalation stops. Audited.
    False when it was not open (already acknowledged or resolved): nothing changes."""
    change = alerts.acknowledge(state_of(row), by or 0, now)
    if change.event is None:
        return False
    store(row, change.alert)
    row.acknowledged_by = by
    await repo.add(row)
    actor = f"clinician:{by}" if by is not None else "operator"
    await repo.audit(
        now, actor, "AlertAcknowledged", f"patient:{row.patient_id}", code=row.code,
        alert_id=row.id,
    )  # fmt: skip
    return True


async def resolve_alert(
    repo: Repository, row: Alert, by: alerts.Actor, now: datetime, reason: str | None = None
) -> bool:
    """Close the alert; crisis (and clinician-only) alerts only for a clinician: anyone
    else is refused, and the refusal audited. True when it is resolved now. `reason`: a
    key of the panel's fixed list, kept in the audit event."""
    change = alerts.resolve(state_of(row), by, now)
    if change.event is None:
        return row.status == "resolved"
    refused = isinstance(change.event, alerts.AlertResolutionRefused)
    if not refused:
        store(row, change.alert)
        await repo.add(row)
    await repo.audit(
        now, str(by), type(change.event).__name__, f"patient:{row.patient_id}",
        code=row.code, alert_id=row.id, **({"reason": reason} if reason else {}),
    )  # fmt: skip
    return not refused

"""A patient the provider says is gone (blocked the bot, opted out at the carrier): marked
so, for the operator and the clinician. Sending and delivery receipts both find out."""

from __future__ import annotations

from datetime import datetime

from bot.app.alerts.alerting import Alerting
from bot.domain.alerts import OptOutHow
from bot.storage.outbox import Outgoing
from bot.storage.repository import Repository
from bot.storage.tables import OutboundMessage


async def mark_unreachable(
    repo: Repository,
    message: Outgoing | OutboundMessage,
    now: datetime,
    alerting: Alerting | None = None,
) -> None:
    """The patient blocked the bot (or opted out at the carrier): visible to the operator,
    and to the clinician through the ``opted_out`` alert (unless they had left already)."""
    patient = await repo.get_patient(message.recipient_id)
    if patient is None or patient.status in ("blocked", "opted_out", "discharged"):
        return
    if alerting is not None and patient.status in ("active", "paused"):
        how: OptOutHow = "stop" if message.channel == "sms" else "blocked"
        await alerting.unreachable(repo, patient, how, now)
    patient.status = "opted_out" if message.channel == "sms" else "blocked"
    await repo.add(patient)
    await repo.audit(
        now, "system", f"patient_{patient.status}", f"patient:{patient.id}", channel=message.channel
    )

"""Delivery receipts: a provider's word on a message after it accepted it (Twilio's status
callbacks, for SMS and WhatsApp). Delivered or failed, once: callbacks may arrive out of
order, and a later, older one never overwrites a final status. A number that opted out at
the carrier makes the patient unreachable (see ``bot.app.outbox.sending.mark_unreachable``)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlmodel import col, select

from bot.app.alerts.alerting import Alerting
from bot.app.outbox.sending import mark_unreachable
from bot.app.ports import Clock
from bot.storage.database import Database
from bot.storage.repository import Repository
from bot.storage.tables import OutboundMessage

FINAL = ("delivered", "failed")
_OUTCOMES = {"delivered": "delivered", "failed": "failed", "undelivered": "failed"}


async def record_status(
    db: Database,
    clock: Clock,
    channel: str,
    provider_id: str,
    status: str,
    error_code: str | None,
    *,
    opted_out: bool,
    alerting: Alerting | None = None,
) -> None:
    """Record a final status of the message the provider knows as `provider_id`; statuses
    on the way (queued, sent) change nothing. `opted_out`: the provider's error says the
    recipient opted out."""
    outcome = _OUTCOMES.get(status)
    if outcome is None or not provider_id:
        return
    async with db.transaction() as session:
        statement = select(OutboundMessage).where(
            OutboundMessage.channel == channel,
            OutboundMessage.provider_id == provider_id,
            col(OutboundMessage.status).not_in(FINAL),
        )
        message = (await session.exec(statement.with_for_update())).first()
        if message is None:
            return
        message.status = outcome
        if outcome == "failed":
            message.last_error = (
                f"{channel}: twilio error {error_code or 'unknown'} (after sending)"
            )
        repo = Repository(session)
        await repo.add(message)
        if opted_out and message.recipient_kind == "patient":
            await mark_unreachable(repo, message, clock(), alerting)


async def record_read(db: Database, clock: Clock, channel: str, provider_id: str) -> None:
    """The recipient opened the message (WhatsApp's ``read``): when, kept once; a message
    read was delivered, whatever callback is still on its way."""
    async with db.transaction() as session:
        await session.exec(
            sa.update(OutboundMessage)
            .where(
                col(OutboundMessage.channel) == channel,
                col(OutboundMessage.provider_id) == provider_id,
                col(OutboundMessage.read_at).is_(None),
            )
            .values(read_at=clock(), status="delivered")
        )

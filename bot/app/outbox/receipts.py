"""Delivery receipts: a provider's word on a message after it accepted it (Twilio's status
callbacks, for SMS and WhatsApp). Delivered or failed, once: callbacks may arrive out of
order, and a later, older one never overwrites a final status. A number that opted out at
the carrier makes the patient unreachable (see ``bot.app.outbox.unreachable``).

A receipt may arrive before its send is recorded (Twilio called back before its answer to
the send reached us, or the mark was held for the line's next send): it is kept
(``bot.storage.early_receipts``) and applied by the transaction that records the send
(:func:`apply_early`), under the same rules. Kept receipts that never meet their message
are pruned after :data:`KEEP_EARLY` (:func:`prune_early`, from the scheduler tick).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.app.alerts.alerting import Alerting
from bot.app.outbox.unreachable import mark_unreachable
from bot.app.ports import Clock
from bot.storage import early_receipts
from bot.storage.database import Database
from bot.storage.early_receipts import EarlyReceipt
from bot.storage.repository import Repository
from bot.storage.tables import OutboundMessage

log = logging.getLogger(__name__)
FINAL = ("delivered", "failed")
KEEP_EARLY = timedelta(days=1)  # a receipt's message not sent by then never will be ours
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
    recipient opted out. No message carries the id yet: the receipt is kept for its send."""
    outcome = _OUTCOMES.get(status)
    if outcome is None or not provider_id:
        return
    now = clock()
    receipt = EarlyReceipt(
        channel=channel, provider_id=provider_id, outcome=outcome, error_code=error_code,
        opted_out=opted_out, received_at=now,
    )  # fmt: skip
    async with db.transaction() as session:
        message = await _message(session, channel, provider_id)
        if message is None:  # look again where no send can be recorded in between
            await early_receipts.lock(session)
            message = await _message(session, channel, provider_id)
        if message is None:
            await early_receipts.keep(session, receipt)
            log.info("%s receipt kept for its send", channel)
            return
        await _apply(Repository(session), message, receipt, now, alerting)


async def apply_early(
    session: AsyncSession,
    sent: Mapping[tuple[str, str], int],
    now: datetime,
    alerting: Alerting | None = None,
) -> None:
    """Apply the receipts kept for sends being recorded in this transaction: `sent` maps
    each (channel, provider id) to its message's id. One statement when none were kept."""
    for receipt in await early_receipts.take(session, list(sent)):
        message = await session.get(OutboundMessage, sent[receipt.channel, receipt.provider_id])
        if message is not None:
            await _apply(Repository(session), message, receipt, now, alerting)
            log.info("outbound %s: an early %s receipt applied", message.id, receipt.outcome)


async def prune_early(db: Database, clock: Clock) -> int:
    """Delete kept receipts older than KEEP_EARLY; how many."""
    async with db.transaction() as session:
        pruned = await early_receipts.prune(session, clock() - KEEP_EARLY)
    if pruned:
        log.info("early receipts pruned: %d", pruned)
    return pruned


async def _message(session: AsyncSession, channel: str, provider_id: str) -> OutboundMessage | None:
    statement = select(OutboundMessage).where(
        OutboundMessage.channel == channel, OutboundMessage.provider_id == provider_id
    )
    return (await session.exec(statement.with_for_update())).first()


async def _apply(
    repo: Repository,
    message: OutboundMessage,
    receipt: EarlyReceipt,
    now: datetime,
    alerting: Alerting | None,
) -> None:
    """The receipt's outcome, unless the message has one already."""
    if message.status in FINAL:
        return
    message.status = receipt.outcome
    if receipt.outcome == "failed":
        code = receipt.error_code or "unknown"
        message.last_error = f"{receipt.channel}: twilio error {code} (after sending)"
    await repo.add(message)
    if receipt.opted_out and message.recipient_kind == "patient":
        await mark_unreachable(repo, message, now, alerting)


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

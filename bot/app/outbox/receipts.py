"""Delivery receipts: a provider's word on a message after it accepted it (Twilio's status
callbacks, for SMS and WhatsApp). Delivered or failed, once: callbacks may arrive out of
order, and a later, older one never overwrites a final status. A number that opted out at
the carrier makes the patient unreachable (see ``bot.app.outbox.unreachable``). WhatsApp
adds two: ``read`` (when, kept once; a message read was delivered, even if a failure came
first) and error 63016, the 24-hour window was shut (a patient's message is queued again
as held, ``bot.app.conversations.whatsapp_window.hold_sent``, unless it was delivered).
A held message keeps its sid until it is sent again: a later failure or 63016 for it
changes nothing, and a later delivered or read wins over the 63016 (:func:`_arrived`). A
clinician's message refused with 63016 is not held (nothing would release it): it failed,
as any refusal, so an alert it carried goes at once to the next clinician in line
(``Alerting.undelivered``, as for any failed receipt of a clinician's message) and the
operator's count of delivery failures shows it.

A receipt may arrive before its send is recorded (Twilio called back before its answer to
the send reached us, or the mark was held for the line's next send): it is kept
(``bot.storage.early_receipts``), whichever of the four it is, and applied by the
transaction that records the send (:func:`apply_early`), in the order the receipts
arrived, under the same rules. One exception: a kept 63016 is void beside a kept
delivered or read for the same sid, whatever their order. A message that arrived was not
refused (Twilio never says both of one message), and holding it would send it twice;
live, the arrival wins too, whichever came first. Kept receipts that never meet their message
are pruned after :data:`KEEP_EARLY` (:func:`prune_early`, from the scheduler tick).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timedelta

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.app.alerts.alerting import Alerting
from bot.app.alerts.rerouting import reroute_undelivered
from bot.app.conversations.whatsapp_window import hold_sent
from bot.app.outbox.unreachable import mark_unreachable
from bot.app.ports import Clock
from bot.storage import early_receipts
from bot.storage.database import Database
from bot.storage.early_receipts import EarlyReceipt
from bot.storage.outbox import UNFINISHED
from bot.storage.repository import Repository
from bot.storage.tables import OutboundMessage

log = logging.getLogger(__name__)
FINAL = ("delivered", "failed")
READ, HELD = "read", "held"  # WhatsApp's: the message was opened; 63016, held for a reply
ARRIVED = ("delivered", READ)  # a message that arrived was not refused outside the window
KEEP_EARLY = timedelta(days=1)  # a receipt's message not sent by then never will be ours
REFUSED = "twilio error 63016 (outside the 24-hour window)"
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
) -> bool:
    """Record a final status of the message the provider knows as `provider_id`; statuses
    on the way (queued, sent) change nothing. `opted_out`: the provider's error says the
    recipient opted out. No message carries the id yet: the receipt is kept for its send.
    True when the transaction, committed, queued messages (see :func:`_record`)."""
    outcome = _OUTCOMES.get(status)
    if outcome is None:
        return False
    receipt = _receipt(clock, channel, provider_id, outcome, error_code, opted_out)
    return await _record(db, receipt, alerting)


async def record_read(db: Database, clock: Clock, channel: str, provider_id: str) -> None:
    """The recipient opened the message (WhatsApp's ``read``): when, kept once; a message
    read was delivered, whatever callback is still on its way."""
    await _record(db, _receipt(clock, channel, provider_id, READ))


async def record_held(
    db: Database, clock: Clock, provider_id: str, alerting: Alerting | None = None
) -> bool:
    """WhatsApp's 63016 after Twilio took the message (the 24-hour window was shut): the
    message is held for the patient's reply (``whatsapp_window.hold_sent``); a clinician's
    failed (:func:`_refused`). True when the transaction queued messages."""
    return await _record(db, _receipt(clock, "whatsapp", provider_id, HELD, "63016"), alerting)


async def apply_early(
    session: AsyncSession,
    sent: Mapping[tuple[str, str], int],
    now: datetime,
    alerting: Alerting | None = None,
) -> None:
    """Apply the receipts kept for sends being recorded in this transaction: `sent` maps
    each (channel, provider id) to its message's id. One statement when none were kept.
    In the order they arrived; a held one is void beside a delivered or read one."""
    taken = await early_receipts.take(session, list(sent))
    arrived = {(r.channel, r.provider_id) for r in taken if r.outcome in ARRIVED}
    for receipt in taken:
        key = (receipt.channel, receipt.provider_id)
        if receipt.outcome == HELD and key in arrived:
            log.info("%s: an early 63016 receipt void: the message arrived", receipt.channel)
            continue
        message = await session.get(OutboundMessage, sent[key])
        if message is not None and message.provider_id == receipt.provider_id:
            await _apply(Repository(session), message, receipt, now, alerting)
            log.info("outbound %s: an early %s receipt applied", message.id, receipt.outcome)


async def prune_early(db: Database, clock: Clock) -> int:
    """Delete kept receipts older than KEEP_EARLY; how many."""
    async with db.transaction() as session:
        pruned = await early_receipts.prune(session, clock() - KEEP_EARLY)
    if pruned:
        log.info("early receipts pruned: %d", pruned)
    return pruned


def _receipt(
    clock: Clock,
    channel: str,
    provider_id: str,
    outcome: str,
    error_code: str | None = None,
    opted_out: bool = False,
) -> EarlyReceipt:
    return EarlyReceipt(
        channel=channel, provider_id=provider_id, outcome=outcome, error_code=error_code,
        opted_out=opted_out, received_at=clock(),
    )  # fmt: skip


async def _record(db: Database, receipt: EarlyReceipt, alerting: Alerting | None = None) -> bool:
    """Apply the receipt to its message, or keep it if no message carries its id yet.
    True when the transaction queued messages (a failed clinician's message rerouted to
    the next in line, a clinician told that their patient opted out): the webhook wakes
    this process's courier for them once it returns, committed, so that they do not wait
    for the next tick. A notice held for a digest counts too (its digest's timer wakes
    the courier again when it is due)."""
    if not receipt.provider_id:
        return False
    channel, provider_id = receipt.channel, receipt.provider_id
    async with db.transaction() as session:
        message = await _message(session, channel, provider_id)
        if message is None:  # look again where no send can be recorded in between
            await early_receipts.lock(session)
            message = await _message(session, channel, provider_id)
        if message is None:
            await early_receipts.keep(session, receipt)
            log.info("%s %s receipt kept for its send", channel, receipt.outcome)
            return False
        repo = Repository(session)
        await _apply(repo, message, receipt, receipt.received_at, alerting)
    return repo.queued > 0


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
    """The receipt's effect: on a message held after a 63016, only an arrival; else a read
    once, a hold unless delivered (a clinician's message fails instead), else its outcome
    unless the message has one already."""
    if message.status in UNFINISHED:  # queued again under this sid: held after a 63016
        changed = _arrived(message, receipt)
    elif receipt.outcome == READ:
        changed = _read(message, receipt.received_at)
    elif receipt.outcome == HELD and message.recipient_kind != "patient":
        changed = _refused(message)
    elif receipt.outcome == HELD:
        changed = hold_sent(message, now)
    else:
        changed = _final(message, receipt)
    if not changed:
        return
    await repo.add(message)
    if receipt.opted_out and message.recipient_kind == "patient":
        await mark_unreachable(repo, message, now, alerting)
    if message.status == "failed" and message.recipient_kind == "clinician" and alerting:
        await reroute_undelivered(alerting, repo, message, now)  # on to the next in line


def _read(message: OutboundMessage, at: datetime) -> bool:
    if message.read_at is not None:
        return False
    message.read_at, message.status = at, "delivered"
    return True


def _arrived(message: OutboundMessage, receipt: EarlyReceipt) -> bool:
    """A delivered or read for a message held after its 63016. Twilio never says both of
    one message, so one of them is wrong; the arrival wins, as it does when both come
    before the send is recorded (:func:`apply_early`) and as a read wins over a failure
    (:func:`_read`): a message the patient read is not refused, and releasing it would
    send them the same message twice. Recorded in ``last_error`` and a WARNING (ids
    only). Too late once it is being sent again: then only the WARNING."""
    if receipt.outcome not in ARRIVED:
        return False  # another 63016 or failure: held already
    contradiction = f"{receipt.outcome} after twilio error 63016"
    if message.status != "queued":
        log.warning("outbound %s: %s, while sent again", message.id, contradiction)
        return False
    message.status, message.last_error = "delivered", f"whatsapp: {contradiction}: not held"
    if receipt.outcome == READ:
        message.read_at = receipt.received_at
    log.warning("outbound %s: %s: it arrived, no longer held", message.id, contradiction)
    return True


def _refused(message: OutboundMessage) -> bool:
    """63016 on a message to a clinician: nothing holds it for their reply (a clinician's
    window opens only when they write, and an alert goes as a template already), so it
    failed, as any refusal: counted by ``checkin_delivery_failures``, and an alert it
    carried, still unacknowledged, goes to the next clinician in line at once
    (:func:`_apply`). Opaque ids in the log."""
    if message.status in FINAL:
        return False
    message.status, message.last_error = "failed", f"whatsapp: {REFUSED} (after sending)"
    log.warning("outbound %s to %s %s failed: %s",
                message.id, message.recipient_kind, message.recipient_id, REFUSED)  # fmt: skip
    return True


def _final(message: OutboundMessage, receipt: EarlyReceipt) -> bool:
    if message.status in FINAL:
        return False
    message.status = receipt.outcome
    if receipt.outcome == "failed":
        code = receipt.error_code or "unknown"
        message.last_error = f"{receipt.channel}: twilio error {code} (after sending)"
    return True

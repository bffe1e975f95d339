"""WhatsApp's 24-hour window, for a patient's messages.

WhatsApp lets a business write freely only within 24 hours of the person's last message;
outside it only an approved template may open the conversation. The window is not stored
apart: it is the time of the patient's latest inbound WhatsApp message in the inbox.

A message that finds the window shut is *held*: the channel sends the check-in template
in its place and the message stays queued (``last_error`` starting :data:`HELD`) with
its next attempt a day away, so it is never retried as free text. The patient's reply
opens the window and releases what was held, in order; the check-in's clocks (reminder,
expiry) move on by the time it waited, so a patient who answers the template late still
has the whole check-in ahead. While messages are held the reminder and expiry stages
leave the check-in alone, up to :data:`MAX_WAIT`.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.storage import checkins as q
from bot.storage.crypto import lookup_hashes
from bot.storage.tables import InboundMessage, OutboundMessage, Patient

WINDOW = timedelta(hours=24)
MARGIN = timedelta(minutes=5)  # a send this close to the window's end is taken as outside
HELD = "whatsapp: outside the 24-hour window"
HOLD_S = 24 * 3600.0  # a held message's next attempt (the template again) if no reply comes
MAX_WAIT = timedelta(days=7)  # the clocks wait this long at most
OPEN_PAYLOAD = "checkin.open"  # the check-in template's button: opens the window, no answer


async def last_inbound_at(
    session: AsyncSession, address: str, before: datetime | None = None
) -> datetime | None:
    """When `address` last wrote to us on WhatsApp (before `before`, if given; None: never)."""
    statement = select(func.max(InboundMessage.received_at)).where(
        InboundMessage.channel == "whatsapp",
        col(InboundMessage.sender_hash).in_(lookup_hashes(address)),
    )
    if before is not None:
        statement = statement.where(col(InboundMessage.received_at) < before)
    return (await session.exec(statement)).one()


def window_open(last_inbound: datetime | None, now: datetime) -> bool:
    return last_inbound is not None and now < last_inbound + WINDOW - MARGIN


def _held(patient_id: int) -> sa.ColumnElement[bool]:
    return sa.and_(
        col(OutboundMessage.channel) == "whatsapp",
        col(OutboundMessage.recipient_kind) == "patient",
        col(OutboundMessage.recipient_id) == patient_id,
        col(OutboundMessage.status) == "queued",
        col(OutboundMessage.last_error).startswith(HELD),
    )


async def held(session: AsyncSession, patient_id: int) -> bool:
    """Some of the patient's messages wait for the window."""
    statement = select(func.count()).select_from(OutboundMessage).where(_held(patient_id))
    return bool((await session.exec(statement)).one())


async def held_since(session: AsyncSession, patient: Patient, now: datetime) -> datetime:
    """Since when the open check-in has waited for the window: from when it was sent, or
    when the window shut if that was later (the patient fell silent halfway through).
    The patient's messages from `now` on are not counted."""
    assert patient.id is not None and patient.address is not None
    checkin = await q.open_checkin(session, patient.id)
    last = await last_inbound_at(session, patient.address, before=now)
    starts = [t for t in (checkin and checkin.sent_at, last and last + WINDOW) if t]
    return min(now, max(starts, default=now))


async def waiting(session: AsyncSession, patient: Patient, now: datetime) -> bool:
    """The check-in's clocks wait: its messages are held, and not yet for MAX_WAIT."""
    assert patient.id is not None
    if not await held(session, patient.id):
        return False
    return now - await held_since(session, patient, now) < MAX_WAIT


async def release(
    session: AsyncSession, patient: Patient, now: datetime, received_at: datetime
) -> bool:
    """The patient wrote (a message received at `received_at`): send what was held now,
    and move the open check-in's clocks on by the time it waited. True if anything was."""
    assert patient.id is not None
    if not await held(session, patient.id):
        return False
    since = await held_since(session, patient, received_at)
    await session.exec(
        sa.update(OutboundMessage)
        .where(_held(patient.id))
        .values(next_attempt_at=now, last_error=None)
    )
    checkin = await q.open_checkin(session, patient.id)
    if checkin is not None:
        waited = max(timedelta(0), now - since)
        checkin.expires_at = checkin.expires_at + waited
        if checkin.next_reminder_at is not None:
            checkin.next_reminder_at = checkin.next_reminder_at + waited
        session.add(checkin)
    return True


def hold_sent(message: OutboundMessage, now: datetime) -> bool:
    """Twilio failed a sent message with 63016 (outside the window, reported after it took
    it): queue it again as held, never as free text again. It keeps its sid until it is
    sent again, so that a delivered or read that contradicts the 63016 still finds it
    (``bot.app.outbox.receipts``). Only a patient's WhatsApp message, not one delivered or
    given up on already. True if it was held (the caller saves it)."""
    if message.channel != "whatsapp" or message.recipient_kind != "patient":
        return False
    if message.status in ("delivered", "dead"):
        return False
    message.status = "queued"
    message.last_error = f"{HELD} (twilio error 63016)"
    message.next_attempt_at = now + timedelta(seconds=HOLD_S)
    return True

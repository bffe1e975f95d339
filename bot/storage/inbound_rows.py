"""The row an inbound message is stored as, shared by both ways of recording one
(`Repository.record_inbound`, and the inbox's fast path in bot/storage/inbound.py)."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.storage.crypto import provider_hashes
from bot.storage.tables import InboundMessage


async def new_inbound(
    session: AsyncSession,
    channel: str,
    provider_id: str,
    sender: str,
    text: str,
    received_at: datetime,
    kind: str = "text",
) -> InboundMessage | None:
    """The row to insert for an inbound message, or None when it was recorded before
    under an older key of the ring (before a rotation). The provider's id is stored as
    its keyed hash under the current key; a duplicate under that one is the INSERT's
    conflict."""
    current, *older = provider_hashes(channel, provider_id)
    if older and await _seen(session, channel, older):
        return None
    return InboundMessage(
        channel=channel,
        provider_hash=current,
        sender=sender,
        kind=kind,
        text=text,
        received_at=received_at,
    )


async def _seen(session: AsyncSession, channel: str, hashes: list[str]) -> bool:
    """A message of `channel` was recorded under one of these provider id hashes."""
    statement = select(InboundMessage.id).where(
        InboundMessage.channel == channel, col(InboundMessage.provider_hash).in_(hashes)
    )
    return (await session.exec(statement.limit(1))).first() is not None

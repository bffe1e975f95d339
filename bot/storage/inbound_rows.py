"""The row an inbound message is stored as, shared by both ways of recording one
(`Repository.record_inbound`, and the inbox's fast path in bot/storage/inbound.py)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.storage.crypto import lookup_hash, provider_hashes
from bot.storage.tables import InboundMessage


@dataclass(slots=True, kw_only=True)
class Received:
    """An inbound message to insert, as a plain object; once stored, the row as stored.

    Building an `InboundMessage` (a SQLModel table row) took about 250 Python calls, a
    thirtieth of a Telegram turn, for a row never added to a session: both ways of
    recording insert column values with Core. This one gives the same values
    (tests/storage/test_inbox.py compares the two column by column, so a column added to
    the table must be added here), its sender's lookup hash set as the ORM's insert event
    would set it (a Core INSERT runs none)."""

    channel: str
    provider_hash: str
    sender: str
    sender_hash: str | None = None
    kind: str = "text"
    text: str
    received_at: datetime
    processed_at: datetime | None = None
    error: str | None = None
    attempts: int = 0
    id: int | None = None  # the database's, once inserted

    def values(self) -> dict[str, Any]:
        """The column values of its INSERT (the database assigns the id)."""
        return {name: getattr(self, name) for name in _RECEIVED_COLUMNS}


_RECEIVED_COLUMNS = tuple(f.name for f in fields(Received) if f.name != "id")
StoredInbound = InboundMessage | Received  # a message a turn processes, read or just stored


async def new_inbound(
    session: AsyncSession,
    channel: str,
    provider_id: str,
    sender: str,
    text: str,
    received_at: datetime,
    kind: str = "text",
) -> Received | None:
    """The row to insert for an inbound message, or None when it was recorded before
    under an older key of the ring (before a rotation). The provider's id is stored as
    its keyed hash under the current key; a duplicate under that one is the INSERT's
    conflict."""
    current, *older = provider_hashes(channel, provider_id)
    if older and await _seen(session, channel, older):
        return None
    return Received(
        channel=channel,
        provider_hash=current,
        sender=sender,
        sender_hash=lookup_hash(sender),
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

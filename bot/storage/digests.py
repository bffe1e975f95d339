"""The alert notices waiting for their digest: outbox rows queued under a ``held:`` key
(bot/app/alerts/notices.py). Found by a range over the unique key's index, so the search
costs the few rows held now, not the whole outbox."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.storage.tables import OutboundMessage

HELD = "held:"
_AFTER_HELD = "held;"  # the first key past every "held:..." one


async def held_notices(session: AsyncSession, postgresql: bool) -> Sequence[OutboundMessage]:
    """Every notice held now, never tried, oldest first; on PostgreSQL locked, skipping
    those another worker is folding."""
    statement = (
        select(OutboundMessage)
        .where(
            col(OutboundMessage.idempotency_key) >= HELD,
            col(OutboundMessage.idempotency_key) < _AFTER_HELD,
            OutboundMessage.status == "queued",
            OutboundMessage.attempts == 0,
        )
        .order_by(col(OutboundMessage.id))
    )
    if postgresql:
        statement = statement.with_for_update(skip_locked=True)
    return (await session.exec(statement)).all()


async def drop(session: AsyncSession, ids: Sequence[int]) -> None:
    """Remove held notices now told in a digest (or alone, under their own key)."""
    await session.exec(delete(OutboundMessage).where(col(OutboundMessage.id).in_(ids)))

"""The alert notices waiting for their digest: outbox rows queued under a ``held:`` key
(bot/app/alerts/notices.py). Found by a range over the unique key's index, so the search
costs the few rows held now, not the whole outbox."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import delete
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.storage.tables import Clinician, OutboundMessage

HELD = "held:"
RECENT = 20  # a clinician's messages looked through for their last alert (answers between)
_AFTER_HELD = "held;"  # the first key past every "held:..." one


async def deciding_alone(session: AsyncSession, clinician_id: int, postgresql: bool) -> bool:
    """Whether this transaction alone decides now whether a notice to the clinician goes at
    once or waits for a digest. PostgreSQL: it takes the clinician's row lock until it
    ends (``FOR NO KEY UPDATE``: rows that only refer to the clinician are not held up),
    and False at once when another transaction holds it (``SKIP LOCKED``: never a wait,
    so never a deadlock with the patient and alert rows a turn locks before). Without
    it, fifty simultaneous crisis turns each saw no alert told yet (the others had not
    committed) and a clinician was sent several at once, then held by Telegram's limit
    for the others. SQLite: its one writer decides alone already."""
    if not postgresql:
        return True
    statement = (
        select(Clinician.id)
        .where(Clinician.id == clinician_id)
        .with_for_update(key_share=True, skip_locked=True)
    )
    return (await session.exec(statement)).first() is not None


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


async def last_alert(
    session: AsyncSession, clinician_id: int
) -> tuple[str, Mapping[str, Any]] | None:
    """The most recent alert message queued for a clinician (a notice or a digest, held or
    not) as its key and payload, among their last few messages; None: none of those.
    Read by the recipient index, newest first: a clinician's alert messages are few, and
    only the last one matters to the digest."""
    statement = (
        select(OutboundMessage.idempotency_key, OutboundMessage.payload)
        .where(
            OutboundMessage.recipient_kind == "clinician",
            OutboundMessage.recipient_id == clinician_id,
        )
        .order_by(col(OutboundMessage.id).desc())
        .limit(RECENT)
    )
    for key, payload in (await session.exec(statement)).all():
        if payload.get("intent") in ("AlertNotice", "AlertDigest"):
            return key, payload
    return None


async def drop(session: AsyncSession, ids: Sequence[int]) -> None:
    """Remove held notices now told in a digest (or alone, under their own key)."""
    await session.exec(delete(OutboundMessage).where(col(OutboundMessage.id).in_(ids)))

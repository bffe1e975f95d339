"""Delivery receipts that arrived before their message's provider id was recorded:
``early_receipt``.

Twilio may call a status callback before its answer to the send reaches us, and the
provider id is written only with the "sent" mark after that answer (held up to half a
second for a line's next send, and on SQLite behind the one writer). Such a receipt is kept
here and taken by the transaction that writes the mark (:func:`take`, one statement), so
it is applied as if it had come after.

Nothing is lost between the two: on SQLite every transaction starts with BEGIN IMMEDIATE,
so a receipt's look-up and its keeping cannot interleave with a mark. On PostgreSQL a
receipt that found no message takes :func:`lock` and looks again before keeping itself;
a mark's :func:`take` conflicts with that lock, so either the mark committed first (the
second look finds the message) or the mark's take waits and then sees the kept receipt.

A receipt whose message never turns up (another system's sid on the same account) is
deleted after a day (:func:`prune`). Only outcomes are kept (delivered, failed, and
WhatsApp's read and held, for error 63016: the 24-hour window was shut): statuses on the
way change nothing anyway. Sids and error codes only: no number, no text.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import CheckConstraint, delete, text, tuple_
from sqlmodel import Field, SQLModel, col
from sqlmodel.ext.asyncio.session import AsyncSession

import bot.storage.naming  # noqa: F401  (constraint names: set before any table is defined)

CHANNELS = ("sms", "whatsapp")  # the channels whose provider calls back with a status


class EarlyReceipt(SQLModel, table=True):
    """A receipt's outcome for a provider id no outbound message carried when it arrived."""

    __tablename__ = "early_receipt"
    __table_args__ = (
        CheckConstraint("channel IN ('sms', 'whatsapp')", name="channel"),
        CheckConstraint("outcome IN ('delivered', 'failed', 'read', 'held')", name="outcome"),
    )

    id: int | None = Field(default=None, primary_key=True)
    channel: str
    provider_id: str = Field(index=True)
    outcome: str
    error_code: str | None = None
    opted_out: bool = False  # the provider's error said the recipient opted out
    received_at: datetime = Field(index=True)


async def lock(session: AsyncSession) -> None:
    """Hold off marks' :func:`take` until this transaction ends (PostgreSQL; on SQLite the
    transaction holds the one write lock already)."""
    if session.get_bind().dialect.name == "postgresql":
        lock_table = text("LOCK TABLE early_receipt IN SHARE ROW EXCLUSIVE MODE")
        await session.exec(lock_table)  # type: ignore[call-overload]


async def keep(session: AsyncSession, receipt: EarlyReceipt) -> None:
    session.add(receipt)


async def take(session: AsyncSession, sent: Sequence[tuple[str, str]]) -> list[EarlyReceipt]:
    """Delete and return the receipts kept for these (channel, provider id) pairs, oldest
    first: one statement."""
    if not sent:
        return []
    statement = (
        delete(EarlyReceipt)
        .where(tuple_(col(EarlyReceipt.channel), col(EarlyReceipt.provider_id)).in_(sent))
        .returning(EarlyReceipt)
    )
    taken = list((await session.exec(statement)).scalars())
    return sorted(taken, key=lambda r: r.id or 0)


async def prune(session: AsyncSession, before: datetime) -> int:
    """Delete the receipts that arrived before `before` and never met their message."""
    statement = delete(EarlyReceipt).where(col(EarlyReceipt.received_at) < before)
    result = await session.exec(statement)
    return int(result.rowcount or 0)

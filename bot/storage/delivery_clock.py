"""Queries of the delivery clock (bot/domain/deadlines.py): which open check-ins' first
messages the provider has accepted since they were started, and their deadlines written
from that moment.

A check-in's opening messages are its outbox rows keyed ``begin<check-in id>:<n>``
(``bot.app.conversations.messages.outbox_rows``; the introduction is ``:0``, the first
question ``:1``). The earliest of them the provider accepted is the delivery.

Stamping does not take the patient's lock: each row is written only if its ``version`` is
still the one read (an answer or a reminder that changed it meanwhile wins, and the row
is stamped at the next pass), and without bumping it (delivery changes no column a
conversation step writes, so a step that read the row before stays valid).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.domain.deadlines import Deadlines
from bot.storage import bulk
from bot.storage.checkins import OPEN_STATUSES
from bot.storage.tables import Checkin, OutboundMessage

OPENINGS = (0, 1)  # the <n> of a check-in's opening messages
ACCEPTED = ("sent", "delivered")  # outbox statuses once the provider has the message


def _opening_key(checkin_id: sa.ColumnElement[Any], n: int) -> sa.ColumnElement[str]:
    return sa.literal("begin") + sa.cast(checkin_id, sa.String) + sa.literal(f":{n}")


async def delivered_unstamped(session: AsyncSession, limit: int) -> list[Any]:
    """Open check-ins not yet known as delivered whose opening went out: their deadline
    columns, ``version`` and ``delivered`` (the provider's acceptance), oldest first.

    Each open check-in looks up its own two opening rows by their unique key (a
    correlated subquery, two index probes a check-in). Written as a join, PostgreSQL
    planned it from the outbox side with statistics taken before the wave's messages
    went out, comparing every sent message with every open check-in: in a 100,000 wave
    one pass ran for minutes, and the tick waited on it between planning and starting."""
    result = await (await session.connection()).execute(unstamped(limit))
    return list(result.all())


def unstamped(limit: int) -> sa.Select[Any]:
    """The statement of :func:`delivered_unstamped`. The outbox's status is tested after
    the key lookup (inside ``min``), so no statistics can steer the lookup to the
    status index."""
    checkin, outbox = bulk.table_of(Checkin), bulk.table_of(OutboundMessage)
    keys = [_opening_key(checkin.c.id, n) for n in OPENINGS]
    accepted = sa.case((outbox.c.status.in_(ACCEPTED), outbox.c.sent_at))
    delivered = (
        sa.select(sa.func.min(accepted)).where(outbox.c.idempotency_key.in_(keys)).scalar_subquery()
    )
    candidates = (
        sa.select(*(checkin.c[name] for name in _CLOCK), delivered.label("delivered"))
        .where(checkin.c.delivered_at.is_(None), checkin.c.status.in_(OPEN_STATUSES))
        .subquery()
    )
    return (
        sa.select(candidates)
        .where(candidates.c.delivered.is_not(None))
        .order_by(candidates.c.id)
        .limit(limit)
    )


async def first_delivery(session: AsyncSession, checkin_id: int) -> datetime | None:
    """When the provider accepted the check-in's first opening message (None: not yet)."""
    outbox = bulk.table_of(OutboundMessage)
    keys = [f"begin{checkin_id}:{n}" for n in OPENINGS]
    accepted = sa.case((outbox.c.status.in_(ACCEPTED), outbox.c.sent_at))  # see `unstamped`
    statement = sa.select(sa.func.min(accepted)).where(outbox.c.idempotency_key.in_(keys))
    at = (await (await session.connection()).execute(statement)).scalar()
    return _aware(at)


def deadlines_of(row: Any) -> Deadlines:
    """The deadlines of a check-in row (an ORM object or a row of `delivered_unstamped`)."""
    return Deadlines(
        next_reminder_at=_aware(row.next_reminder_at),
        expires_at=_aware(row.expires_at) or row.expires_at,
        reminder_after=_seconds(row.reminder_after_s),
        expire_after=_seconds(row.expire_after_s),
        closes_at=_aware(row.closes_at),
    )


async def stamp(session: AsyncSession, rows: Sequence[Mapping[str, Any]]) -> None:
    """Write delivery and its deadlines: each of `rows` holds ``id``, ``version`` (as read),
    ``delivered_at``, ``next_reminder_at`` and ``expires_at``."""
    if not rows:
        return
    table = bulk.table_of(Checkin)
    statement = (
        sa.update(table)
        .where(
            table.c.id == sa.bindparam("b_id"),
            table.c.version == sa.bindparam("b_version"),
            table.c.delivered_at.is_(None),
        )
        .values(
            delivered_at=sa.bindparam("b_delivered_at"),
            next_reminder_at=sa.bindparam("b_next_reminder_at"),
            expires_at=sa.bindparam("b_expires_at"),
        )
    )
    params = [{f"b_{name}": value for name, value in row.items()} for row in rows]
    await (await session.connection()).execute(statement, params)


async def withdraw_openings(session: AsyncSession, checkin_id: int, reason: str) -> None:
    """Give up the check-in's opening messages still waiting in the outbox."""
    outbox = bulk.table_of(OutboundMessage)
    keys = [f"begin{checkin_id}:{n}" for n in OPENINGS]
    await (await session.connection()).execute(
        sa.update(outbox)
        .where(outbox.c.idempotency_key.in_(keys), outbox.c.status == "queued")
        .values(status="dead", last_error=reason)
    )


_CLOCK = ("id", "version", "next_reminder_at", "expires_at", "reminder_after_s",
          "expire_after_s", "closes_at")  # fmt: skip


def _seconds(value: int | None) -> timedelta | None:
    return None if value is None else timedelta(seconds=value)


def _aware(value: datetime | None) -> datetime | None:
    return value if value is None or value.tzinfo else value.replace(tzinfo=UTC)

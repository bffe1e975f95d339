"""Outbox claim statements: which queued messages are due, and how a worker takes them.

A message is *due* when it is queued and its ``next_attempt_at`` has come, or when a
worker claimed it and its lease ran out (the worker died or hung). Only the *head* of a
recipient's line is ever due: the oldest row of that recipient still queued or sending.
So a recipient never gets message N+1 before message N, even while N is being retried.
"""

from datetime import datetime, timedelta

from sqlalchemy import Update, and_, exists, or_, update
from sqlalchemy.orm import aliased
from sqlmodel import col, select
from sqlmodel.sql.expression import SelectOfScalar

from bot.storage.tables import OutboundMessage

UNFINISHED = ("queued", "sending")


def due_ids(now: datetime, limit: int) -> SelectOfScalar[int | None]:
    """Ids of due head-of-line messages, oldest first (to be locked or updated)."""
    row = aliased(OutboundMessage, name="candidate")
    earlier = aliased(OutboundMessage, name="earlier")
    ready = or_(
        and_(col(row.status) == "queued", col(row.next_attempt_at) <= now),
        and_(col(row.status) == "sending", col(row.lease_until) <= now),
    )
    waiting_behind = exists().where(
        col(earlier.recipient_kind) == col(row.recipient_kind),
        col(earlier.recipient_id) == col(row.recipient_id),
        col(earlier.status).in_(UNFINISHED),
        col(earlier.id) < col(row.id),
    )
    return (
        select(col(row.id))
        .where(ready, ~waiting_behind)
        .order_by(col(row.next_attempt_at), col(row.id))
        .limit(limit)
    )


def lease(
    ids: SelectOfScalar[int | None] | list[int | None], now: datetime, duration: timedelta
) -> Update:
    """Mark `ids` as being sent until the lease ends; returns the claimed rows."""
    return (
        update(OutboundMessage)
        .where(col(OutboundMessage.id).in_(ids))
        .values(
            status="sending",
            lease_until=now + duration,
            attempts=col(OutboundMessage.attempts) + 1,
        )
        .returning(OutboundMessage)
        .execution_options(populate_existing=True)
    )

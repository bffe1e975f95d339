"""Outbox claim statements: which queued messages are due, and how a worker takes them.

A message is *due* when it is queued and its ``next_attempt_at`` has come, or when a
worker claimed it and its lease ran out (the worker died or hung). Only the *head* of a
recipient's line is ever due: the oldest row of that recipient still queued or sending.
So a recipient never gets message N+1 before message N, even while N is being retried.
"""

from datetime import datetime
from typing import Any

from sqlalchemy import BindParameter, Update, and_, bindparam, exists, or_, update
from sqlalchemy.orm import aliased
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from sqlmodel.sql.expression import SelectOfScalar

from bot.storage.tables import OutboundMessage

UNFINISHED = ("queued", "sending")

# Claim order across recipients (``priority``, highest first). During a scheduled wave
# thousands of routine messages can be queued; a crisis message or a clinician alert
# must not wait behind them, nor a reply to someone in the middle of a check-in.
URGENT = 2  # crisis resources, clinician alerts and escalations
REPLY = 1  # answers to what someone just sent
ROUTINE = 0  # scheduled outreach: check-in openings, reminders, invitations


def _due_ids() -> SelectOfScalar[int | None]:
    """Ids of due head-of-line messages, most urgent first, then oldest first; parameters
    ``now`` and ``limit``."""
    row = aliased(OutboundMessage, name="candidate")
    earlier = aliased(OutboundMessage, name="earlier")
    now: BindParameter[datetime] = bindparam("now")
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
        .order_by(col(row.priority).desc(), col(row.next_attempt_at), col(row.id))
        .limit(bindparam("limit"))
    )


def _lease(ids: Any) -> Update:
    """Mark `ids` as being sent until ``lease_until``; returns the claimed rows."""
    return (
        update(OutboundMessage)
        .where(col(OutboundMessage.id).in_(ids))
        .values(
            status="sending",
            lease_until=bindparam("lease_until"),
            attempts=col(OutboundMessage.attempts) + 1,
        )
        .returning(OutboundMessage)
        .execution_options(populate_existing=True)
    )


# Built once: composing these (aliases, correlated EXISTS) took about a fifth of a
# turn's CPU when it was done for every claim. Run with ``params`` (see Repository).
DUE_IDS = _due_ids()
DUE_IDS_LOCKED = DUE_IDS.with_for_update(skip_locked=True)  # PostgreSQL: concurrent workers
LEASE_DUE = _lease(DUE_IDS)  # SQLite: claim in one statement
LEASE_IDS = _lease(bindparam("ids", expanding=True))  # PostgreSQL: the ids it locked


async def release_leases(session: AsyncSession, now: datetime) -> int:
    """Let every message being sent under a lease that has not ended be claimed at `now`
    (status stays ``sending``: a claim takes it as it takes an expired lease); how many."""
    statement = (
        update(OutboundMessage)
        .where(col(OutboundMessage.status) == "sending", col(OutboundMessage.lease_until) > now)
        .values(lease_until=now)
    )
    result = await session.exec(statement)
    return int(result.rowcount or 0)

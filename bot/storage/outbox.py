"""Outbox claim statements: which queued messages are due, and how a worker takes them.

A message is *due* when it is queued and its ``next_attempt_at`` has come, or when a
worker claimed it and its lease ran out (the worker died or hung). Only the *head* of a
recipient's line is ever due: the oldest row of that recipient still queued or sending.
So a recipient never gets message N+1 before message N, even while N is being retried.
A claim takes each due head that answers someone (a reply or an urgent message: someone
is waiting) with the messages behind it that are ready too (up to the first that is not:
one waiting for a retry, or leased to a live worker), so a recipient's consecutive
messages leave from one claim; the deliverer sends them one after the other. Scheduled
outreach (a wave) is still claimed head by head, so several workers share a wave rather
than the first to claim taking every patient's whole line.
The claim reads back only what sending needs (:class:`Outgoing`), not whole rows.

A turn may also *hand off* the rows it queues to the deliverer of its own process
(:class:`Claiming`): they are inserted already leased to it, so no claim reads them back;
a crash after the commit leaves them leased, and the lease running out makes them due
again like any other claim's.
"""

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Update,
    and_,
    bindparam,
    case,
    exists,
    null,
    or_,
    update,
)
from sqlalchemy.orm import aliased
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from sqlmodel.sql.expression import SelectOfScalar

from bot.storage.queued import NewOutbound
from bot.storage.tables import OutboundMessage

UNFINISHED = ("queued", "sending")

# Claim order across recipients (``priority``, highest first). During a scheduled wave
# thousands of routine messages can be queued; a crisis message or a clinician alert
# must not wait behind them, nor a reply to someone in the middle of a check-in.
URGENT = 2  # crisis resources, clinician alerts and escalations
REPLY = 1  # answers to what someone just sent
ROUTINE = 0  # scheduled outreach: check-in openings, reminders, invitations


@dataclass
class Outgoing:
    """What sending a message needs of its row: the columns a claim reads back (the
    others, its key, times and last error, are neither read nor decrypted)."""

    id: int
    channel: str
    recipient_kind: str
    recipient_id: int
    address: str
    body: str
    payload: dict[str, Any]
    priority: int
    attempts: int
    lease_until: datetime | None


_TABLE = OutboundMessage.__table__  # type: ignore[attr-defined]
OUTGOING = tuple(_TABLE.c[name] for name in Outgoing.__dataclass_fields__)


def _ready(row: Any, now: BindParameter[datetime]) -> ColumnElement[bool]:
    """`row` may be claimed at `now`: queued and due, or leased and the lease ran out."""
    return or_(
        and_(col(row.status) == "queued", col(row.next_attempt_at) <= now),
        and_(col(row.status) == "sending", col(row.lease_until) <= now),
    )


def _due_ids() -> SelectOfScalar[int | None]:
    """Ids of due head-of-line messages, most urgent first, then oldest first; parameters
    ``now`` and ``limit``."""
    row = aliased(OutboundMessage, name="candidate")
    earlier = aliased(OutboundMessage, name="earlier")
    now: BindParameter[datetime] = bindparam("now")
    ready = _ready(row, now)
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


def _behind(heads: Any) -> SelectOfScalar[int | None]:
    """Ids of the messages behind the heads `heads` that are replies or urgent, ready at
    ``now``, with nothing between them and their head that is unfinished and not ready."""
    head = aliased(OutboundMessage, name="head")
    row = aliased(OutboundMessage, name="behind")
    gap = aliased(OutboundMessage, name="gap")
    now: BindParameter[datetime] = bindparam("now")
    blocked = exists().where(
        col(gap.recipient_kind) == col(row.recipient_kind),
        col(gap.recipient_id) == col(row.recipient_id),
        col(gap.id) > col(head.id),
        col(gap.id) < col(row.id),
        col(gap.status).in_(UNFINISHED),
        ~_ready(gap, now),
    )
    same_line = and_(
        col(head.recipient_kind) == col(row.recipient_kind),
        col(head.recipient_id) == col(row.recipient_id),
        col(head.id) < col(row.id),
    )
    return (
        select(col(row.id))
        .join(head, same_line)
        .where(col(head.id).in_(heads), col(head.priority) >= REPLY, _ready(row, now), ~blocked)
    )


def _lease(heads: Any) -> Update:
    """Mark the heads `heads` and the ready messages behind them as being sent until
    ``lease_until``; returns what sending needs of them."""
    table = _TABLE
    return (
        update(table)
        .where(or_(table.c.id.in_(heads), table.c.id.in_(_behind(heads))))
        .values(
            status="sending",
            lease_until=bindparam("lease_until"),
            attempts=table.c.attempts + 1,
        )
        .returning(*OUTGOING)
    )


def leasing(prefix: str = "") -> dict[str, ColumnElement[Any]]:
    """The columns that lease a row as it is inserted, unless its line (the recipient
    named by the parameters ``line_kind`` and ``line_id``) is not empty: then it is
    queued as usual. Every row of one INSERT sees the line as it was before the
    statement, so they all go one way. Built once: with bound parameters, the INSERT is
    compiled once and cached (per-row expressions made it a new statement every turn).
    Each parameter appears once (``line_kind_status``, ...): PostgreSQL's driver numbers
    a repeated one once per row of a many-row INSERT, and the counts no longer match.
    `prefix` begins every parameter's name: one statement's several rows (bot/storage/
    steps.py) each take their own."""
    table = _TABLE

    def line(column: str) -> ColumnElement[bool]:
        return exists().where(
            table.c.recipient_kind == bindparam(f"{prefix}line_kind_{column}"),
            table.c.recipient_id == bindparam(f"{prefix}line_id_{column}"),
            or_(*(table.c.status == status for status in UNFINISHED)),  # (no IN: executemany)
        )

    until = bindparam(f"{prefix}leased_until", type_=table.c.lease_until.type)
    return {
        "status": case((line("status"), "queued"), else_="sending"),
        "lease_until": case((line("lease_until"), null()), else_=until),
        "attempts": case((line("attempts"), 0), else_=1),
    }


LEASING = leasing()
LEASED = tuple(LEASING)  # the columns it sets


@dataclass(frozen=True)
class Claiming:
    """Rows a transaction queues, leased as they are inserted to this process's deliverer,
    which was handed them after the commit (no claim reads them back). Only one
    recipient's rows (a patient's replies, or a clinician's alert raised by the same turn)
    that are due when they are queued (by `clock`, read then: a turn's rows are due
    at the turn's own time, a little after this was made), on a channel of `channels`,
    and only when nothing earlier of theirs is still queued or being sent (the line is
    empty: the hand-off cannot overtake).
    """

    clock: Callable[[], datetime]
    lease_until: datetime
    channels: frozenset[str]

    def covers(self, rows: Sequence[NewOutbound]) -> bool:
        """Whether `rows` (one INSERT's) may be handed off: one recipient's, due, our channel."""
        first, now = rows[0], self.clock()
        return all(
            row.recipient_kind == first.recipient_kind
            and row.recipient_id == first.recipient_id
            and row.channel in self.channels
            and row.next_attempt_at <= now
            for row in rows
        )

    def leased(self, row: NewOutbound) -> dict[str, Any]:
        """The parameters of `LEASING` (below) for `row`: its line, and our lease."""
        line = {f"line_kind_{c}": row.recipient_kind for c in LEASED} | {
            f"line_id_{c}": row.recipient_id for c in LEASED
        }
        return line | {"leased_until": self.lease_until}

    def not_due(
        self,
        inserted: Sequence[tuple[int, str, str]],
        rows: Sequence[NewOutbound],
        claimed: Sequence[Outgoing],
    ) -> int:
        """How many rows the INSERT queued without a lease are not due yet (an alert
        notice held for its digest, a reminder): nothing need wake for them now; their
        own time, or the tick, will."""
        now, leased = self.clock(), {m.id for m in claimed}
        later = {row.idempotency_key for row in rows if row.next_attempt_at > now}
        return sum(1 for row_id, _, key in inserted if row_id not in leased and key in later)

    def collect(
        self, inserted: Sequence[tuple[int, str, str]], rows: Sequence[NewOutbound]
    ) -> list[Outgoing]:
        """The rows leased by the INSERT that returned `inserted` (id, status, key), in id
        order, as sending needs them."""
        by_key = {row.idempotency_key: row for row in rows}
        leased = []
        for row_id, status, key in inserted:
            if status == "sending":
                row = by_key[key]
                leased.append(
                    Outgoing(
                        row_id, row.channel, row.recipient_kind, row.recipient_id,
                        row.address, row.body, row.payload, row.priority, 1, self.lease_until,
                    )
                )  # fmt: skip
        return leased


def by_line(claimed: Sequence[Outgoing]) -> list[Outgoing]:
    """`claimed` grouped by recipient, each line in id order; lines most urgent head first,
    then oldest head first (the order the deliverer starts, and paces, them in)."""
    lines: dict[tuple[str, int], list[Outgoing]] = {}
    for message in sorted(claimed, key=lambda m: m.id):
        lines.setdefault((message.recipient_kind, message.recipient_id), []).append(message)
    ordered = sorted(lines.values(), key=lambda line: (-line[0].priority, line[0].id))
    return [message for line in ordered for message in line]


# Built once: composing these (aliases, correlated EXISTS) took about a fifth of a
# turn's CPU when it was done for every claim. Run with ``params`` (see Repository).
DUE_IDS = _due_ids()
DUE_IDS_LOCKED = DUE_IDS.with_for_update(skip_locked=True)  # PostgreSQL: concurrent workers
LEASE_DUE = _lease(DUE_IDS)  # SQLite: claim in one statement
LEASE_IDS = _lease(bindparam("ids", expanding=True))  # PostgreSQL: the ids it locked


async def hand_back(session: AsyncSession, leases: Mapping[datetime, Sequence[int]]) -> int:
    """Messages claimed under our leases and not sent, by the end of the lease each is held
    under: queued again as they were (their attempt uncounted), in one statement, so they
    go at once (or after the one before them in their line) instead of waiting out the
    lease. A message whose lease is no longer ours (sent, given up, or claimed by another
    worker since) is left alone; how many were handed back."""
    table = _TABLE
    held = [
        and_(table.c.lease_until == until, table.c.id.in_(ids))
        for until, ids in leases.items()
        if ids
    ]
    if not held:
        return 0
    statement = (
        update(table)
        .where(table.c.status == "sending", or_(*held))
        .values(status="queued", lease_until=None, attempts=table.c.attempts - 1)
    )
    result = await session.exec(statement)
    return int(result.rowcount or 0)


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

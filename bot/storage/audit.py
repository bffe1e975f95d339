"""The audit trail: append-only events, each hash-chained to the one before it.

An event's ``hash`` is SHA-256 over the previous event's hash followed by the canonical
JSON of its at, actor, action, subject and detail (keys sorted, no spaces, UTC time with
microseconds). The chain runs in id order from ``GENESIS``; ``verify`` walks it and names
the first event whose link or content does not match, so altering, deleting, inserting
or reordering a row is detected. Removing the newest events leaves a shorter valid chain:
keep the head that ``verify`` prints somewhere else to detect that too.

Appending must see the true previous hash, so appends are serialised. Events are not
written when ``Repository.audit`` is called but buffered on the session and chained in
its ``before_commit`` hook: on PostgreSQL under ``pg_advisory_xact_lock`` (held until
the commit, a moment later), on SQLite under the ``BEGIN IMMEDIATE`` lock the
transaction already holds. Taking the lock last, just before commit, means a transaction
never waits for it while holding row locks another appender needs (no deadlock), and
ids, drawn under the lock, grow in chain order.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.orm import Session, SessionTransaction
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.storage.database import Database
from bot.storage.tables import AuditEvent

GENESIS = "0" * 64
PG_AUDIT_LOCK = 7_305_917_442  # any constant shared by every process of this service
_PENDING = "audit_pending"


def canonical(at: datetime, actor: str, action: str, subject: str, detail: Any) -> bytes:
    """The bytes an event's hash covers (besides the previous hash)."""
    document = {
        "at": at.astimezone(UTC).isoformat(timespec="microseconds"),
        "actor": actor,
        "action": action,
        "subject": subject,
        "detail": detail,
    }
    encoded = json.dumps(
        document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    return encoded.encode("utf-8")


def event_hash(prev_hash: str, row: AuditEvent) -> str:
    """The hash `row` must carry when it follows an event whose hash is `prev_hash`."""
    digest = hashlib.sha256(prev_hash.encode("ascii"))
    digest.update(canonical(row.at, row.actor, row.action, row.subject, row.detail))
    return digest.hexdigest()


def append(session: AsyncSession, row: AuditEvent) -> None:
    """Add `row` to the chain when `session`'s transaction commits (with its other writes).
    Appended inside a savepoint that is rolled back, it is dropped with that savepoint's
    writes; the transaction's other events stay."""
    sync = session.sync_session
    pending: list[tuple[SessionTransaction | None, AuditEvent]]
    pending = sync.info.setdefault(_PENDING, [])
    if not pending and not event.contains(sync, "before_commit", _chain_pending):
        event.listen(sync, "before_commit", _chain_pending)
        event.listen(sync, "after_soft_rollback", _forget_rolled_back)
    pending.append((sync.get_nested_transaction() or sync.get_transaction(), row))


def _chain_pending(session: Session) -> None:
    """Before commit: lock the chain, read its head, link and insert the buffered events."""
    pending = [row for _, row in session.info.pop(_PENDING, [])]
    if not pending:
        return
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": PG_AUDIT_LOCK})
    head = select(AuditEvent.hash).order_by(col(AuditEvent.id).desc()).limit(1)
    prev_hash = session.execute(head).scalar() or GENESIS
    for row in pending:
        row.prev_hash = prev_hash
        row.hash = prev_hash = event_hash(prev_hash, row)
    session.add_all(pending)  # inserted in this order, so ids follow the chain
    session.flush()


def _forget_rolled_back(session: Session, rolled_back: SessionTransaction) -> None:
    """A rollback (of the transaction, or of a savepoint) drops the events appended
    within it, in it or in a savepoint inside it."""
    if rolled_back.parent is None:  # the whole transaction
        session.info.pop(_PENDING, None)
        return
    pending: list[tuple[SessionTransaction | None, AuditEvent]] = session.info.get(_PENDING, [])
    session.info[_PENDING] = [
        (within, row) for within, row in pending if not _inside(within, rolled_back)
    ]


def _inside(transaction: SessionTransaction | None, outer: SessionTransaction) -> bool:
    while transaction is not None:
        if transaction is outer:
            return True
        transaction = transaction.parent
    return False


# ---- reading and verifying ----------------------------------------------------------


@dataclass(frozen=True)
class ChainReport:
    """The outcome of a walk: how many events matched, the head, and the first break."""

    checked: int
    head_id: int | None
    head_hash: str
    broken_id: int | None = None
    problem: str = ""

    @property
    def ok(self) -> bool:
        return self.broken_id is None


Progress = Callable[[int], None]


async def verify(
    db: Database, page_size: int = 1000, progress: Progress | None = None
) -> ChainReport:
    """Walk the chain in id order, a page per transaction; stop at the first broken link."""
    prev_hash, after_id, checked = GENESIS, 0, 0
    head_id: int | None = None
    while True:
        async with db.transaction() as session:
            rows = await _page(session, after_id, page_size)
        for row in rows:
            problem = _problem(prev_hash, row)
            if problem:
                return ChainReport(checked, head_id, prev_hash, row.id, problem)
            prev_hash, head_id, checked = row.hash, row.id, checked + 1
        if progress is not None and rows:
            progress(checked)
        if len(rows) < page_size:
            return ChainReport(checked, head_id, prev_hash)
        after_id = rows[-1].id or 0


async def _page(session: AsyncSession, after_id: int, size: int) -> Sequence[AuditEvent]:
    statement = (
        select(AuditEvent)
        .where(col(AuditEvent.id) > after_id)
        .order_by(col(AuditEvent.id))
        .limit(size)
    )
    return (await session.exec(statement)).all()


def _problem(prev_hash: str, row: AuditEvent) -> str:
    if row.prev_hash != prev_hash:
        return "does not follow the event before it (an event was deleted, inserted or moved)"
    if event_hash(prev_hash, row) != row.hash:
        return "its content does not match its hash (the event was altered)"
    return ""


async def events(
    session: AsyncSession, subject: str | None = None, limit: int = 100
) -> list[AuditEvent]:
    """The newest `limit` events (about one subject, if given), oldest first."""
    statement = select(AuditEvent).order_by(col(AuditEvent.id).desc()).limit(limit)
    if subject is not None:
        statement = statement.where(AuditEvent.subject == subject)
    return list(reversed((await session.exec(statement)).all()))

"""The audit trail as an operator reads it: the newest events (the reading itself audited),
a walk that verifies the hash chain, and the record of an export.

The chain itself (canonical form, hashing, appending under a lock) is
:mod:`bot.storage.audit`; :class:`ChainReport` is its verdict, a plain value.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot.app.ports import Clock
from bot.storage import audit
from bot.storage.audit import ChainReport as ChainReport
from bot.storage.database import Database
from bot.storage.repository import Repository
from bot.storage.tables import AuditEvent


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: datetime
    actor: str
    action: str
    subject: str
    detail: dict[str, Any]
    hash: str

    @classmethod
    def of(cls, row: AuditEvent) -> AuditEntry:
        assert row.id is not None
        return cls(row.id, row.at, row.actor, row.action, row.subject, dict(row.detail), row.hash)


async def verify(
    db: Database, *, page_size: int = 1000, progress: audit.Progress | None = None
) -> ChainReport:
    """Walk the whole chain in order, a page per transaction; stop at the first break."""
    return await audit.verify(db, page_size=page_size, progress=progress)


async def newest(
    db: Database, clock: Clock, *, subject: str | None = None, limit: int = 50
) -> list[AuditEntry]:
    """The newest `limit` events (about `subject`, if given), oldest first."""
    async with db.transaction() as session:
        rows = await audit.events(session, subject=subject, limit=limit)
        await Repository(session).audit(
            clock(), "operator", "audit_listed", subject or "audit", count=len(rows)
        )
        return [AuditEntry.of(row) for row in rows]


async def record_export(
    db: Database,
    clock: Clock,
    *,
    patient_id: int | None,
    format_: str,
    identifiers: bool,
    actor: str = "operator",
) -> None:
    """Audit an export written (of one patient, or of everyone), by `actor` (the CLI's
    operator, or a panel viewer's ``clinician:<id>``)."""
    async with db.transaction() as session:
        subject = f"patient:{patient_id}" if patient_id is not None else "all"
        await Repository(session).audit(
            clock(), actor, "exported", subject, format=format_, identifiers=identifiers
        )

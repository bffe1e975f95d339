"""An outbox row to insert, as a plain object (`QueuedMessage`), beside the table row."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

from bot.storage.tables import OutboundMessage, utcnow


@dataclass(slots=True, kw_only=True)
class QueuedMessage:
    """An outbox row to insert, as a plain object: what a turn queues.

    Building an `OutboundMessage` (a SQLModel table row) costs about a fifth of a
    millisecond: every field goes through pydantic's and the ORM's attribute machinery,
    for a row that is never added to a session (`Repository.enqueue` inserts column
    values with Core). A patient's turn queues two or three. This one costs a few
    microseconds and gives the same values (tests/storage/test_outbox.py compares the
    two column by column, so a column added to the table must be added here)."""

    channel: str
    recipient_kind: str
    recipient_id: int
    address: str
    body: str
    payload: dict[str, Any] = field(default_factory=dict)
    idempotency_key: str
    priority: int = 0
    status: str = "queued"
    attempts: int = 0
    next_attempt_at: datetime
    lease_until: datetime | None = None
    provider_id: str | None = None
    last_error: str | None = None
    created_at: datetime = field(default_factory=utcnow)
    sent_at: datetime | None = None
    read_at: datetime | None = None

    def values(self) -> dict[str, Any]:
        """The column values of its INSERT (the database assigns the id)."""
        return {name: getattr(self, name) for name in _QUEUED_COLUMNS}


_QUEUED_COLUMNS = tuple(f.name for f in fields(QueuedMessage))
NewOutbound = OutboundMessage | QueuedMessage  # what `Repository.enqueue` inserts

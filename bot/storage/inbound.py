"""Recording a patient's message for processing at once: the fast path of the inbox.

A patient's message is usually the only one of theirs not yet processed. Then it is
inserted already processed, and the caller processes it in the same transaction, under
the patient's lock: a failure rolls both back. Whether any earlier message of theirs is
waiting is asked by the INSERT itself (a subquery), so the usual turn costs no statement
to find out, none to read the message back and none to mark it processed.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import case, literal, null, select
from sqlalchemy.dialects import postgresql, sqlite

from bot.storage.crypto import lookup_hashes
from bot.storage.inbound_rows import new_inbound
from bot.storage.repository import Repository
from bot.storage.tables import InboundMessage, set_lookup_hash

INBOUND = InboundMessage.__table__  # type: ignore[attr-defined]


async def record_first(
    repo: Repository,
    channel: str,
    provider_id: str,
    sender: str,
    text: str,
    received_at: datetime,
    kind: str = "text",
    *,
    now: datetime,
) -> InboundMessage | None:
    """Store an inbound message once (as `Repository.record_inbound` does), processed at
    `now` unless an earlier message of its sender waits; the row as stored (not in the
    session), its `processed_at` None when one waits: those are processed first. None
    when the message was recorded before."""
    row = await new_inbound(repo.session, channel, provider_id, sender, text, received_at, kind)
    if row is None:
        return None
    set_lookup_hash(row)  # a Core INSERT runs no ORM flush events
    waiting = select(INBOUND.c.id).where(
        INBOUND.c.channel == channel,
        INBOUND.c.sender_hash.in_(lookup_hashes(sender)),
        INBOUND.c.processed_at.is_(None),
    )
    values = row.model_dump(exclude={"id"})
    stamp = literal(now, INBOUND.c.processed_at.type)
    values["processed_at"] = case((waiting.exists(), null()), else_=stamp)
    insert = postgresql.insert if repo.dialect == "postgresql" else sqlite.insert
    statement = (
        insert(INBOUND)
        .values(values)
        .on_conflict_do_nothing(index_elements=("channel", "provider_hash"))
        .returning(INBOUND.c.id, INBOUND.c.processed_at)
    )
    stored = (await repo.session.exec(statement)).first()
    if stored is None:
        return None
    row.id, row.processed_at = stored
    return row

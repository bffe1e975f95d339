"""Recording a patient's message for processing at once: the fast path of the inbox.

A patient's message is usually the only one of theirs not yet processed. Then it is
inserted already processed, and the caller processes it in the same transaction, under
the patient's lock: a failure rolls both back. Whether any earlier message of theirs is
waiting is asked by the INSERT itself (a subquery), so the usual turn costs no statement
to find out, none to read the message back and none to mark it processed.
"""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, case, null, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.dml import ReturningInsert

from bot.storage import prebuilt
from bot.storage.crypto import lookup_hashes
from bot.storage.inbound_rows import Received, new_inbound
from bot.storage.repository import Repository
from bot.storage.tables import InboundMessage

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
) -> Received | None:
    """Store an inbound message once (as `Repository.record_inbound` does), processed at
    `now` unless an earlier message of its sender waits; the row as stored (a plain
    object, not in the session), its `processed_at` None when one waits: those are
    processed first. None when the message was recorded before."""
    row = await new_inbound(repo.session, channel, provider_id, sender, text, received_at, kind)
    if row is None:
        return None
    params = prebuilt.params(row.values())
    params |= {"w_channel": channel, "w_hashes": lookup_hashes(sender), "w_now": now}
    statement = _insert_first(repo.dialect)
    stored = (await (await repo.connection()).execute(statement, params)).first()
    if stored is None:
        return None
    row.id, row.processed_at = stored
    return row


@functools.cache
def _insert_first(dialect: str) -> ReturningInsert[Any]:
    """The INSERT of `record_first`, built once per dialect, its values the parameters
    ``b_<column>`` (as in `bot.storage.prebuilt`): processed at ``w_now`` unless a
    message of the sender (``w_channel``, ``w_hashes``) waits."""
    waiting = select(INBOUND.c.id).where(
        INBOUND.c.channel == bindparam("w_channel"),
        INBOUND.c.sender_hash.in_(bindparam("w_hashes", expanding=True)),
        INBOUND.c.processed_at.is_(None),
    )
    values = prebuilt.column_params(INBOUND)
    stamp = bindparam("w_now", type_=INBOUND.c.processed_at.type)
    values["processed_at"] = case((waiting.exists(), null()), else_=stamp)
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return (
        insert(INBOUND)
        .values(values)
        .on_conflict_do_nothing(index_elements=("channel", "provider_hash"))
        .returning(INBOUND.c.id, INBOUND.c.processed_at)
    )

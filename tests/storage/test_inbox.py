"""The inbox: a provider message is stored once, however often it is delivered."""

import asyncio
from datetime import datetime

from sqlmodel import select

from bot.storage.crypto import KeyRing, lookup_hash, new_key, provider_text, use_keys
from bot.storage.database import Database
from bot.storage.inbound import record_first
from bot.storage.inbound_rows import Received
from bot.storage.repository import Repository
from bot.storage.tables import InboundMessage
from tests.conftest import TEST_RING


async def _deliver(db: Database, now: datetime, provider_id: str = "SM123") -> bool:
    async with db.transaction() as session:
        row_id = await Repository(session).record_inbound("sms", provider_id, "+15550100", "2", now)
    return row_id is not None


async def test_first_delivery_is_recorded(db: Database, now: datetime) -> None:
    """The first delivery returns the new row's id; the row holds what was delivered."""
    async with db.transaction() as session:
        row_id = await Repository(session).record_inbound("telegram", "77", "4242", "hello", now)
    assert row_id is not None
    async with db.transaction() as session:
        row = await session.get(InboundMessage, row_id)
    assert row is not None
    assert (row.channel, row.text, row.received_at) == ("telegram", "hello", now)
    assert row.provider_hash == TEST_RING.lookup_hash(provider_text("telegram", "77"))


async def test_redelivery_returns_none(db: Database, now: datetime) -> None:
    """A second delivery of the same (channel, provider id) returns None and stores nothing."""
    assert await _deliver(db, now) is True
    assert await _deliver(db, now) is False


async def test_same_id_on_another_channel_is_a_new_message(db: Database, now: datetime) -> None:
    """Provider ids are unique per channel only."""
    async with db.transaction() as session:
        repo = Repository(session)
        assert await repo.record_inbound("sms", "1", "+15550100", "a", now) is not None
        assert await repo.record_inbound("telegram", "1", "4242", "a", now) is not None


async def test_ten_concurrent_deliveries_store_one_row(db: Database, now: datetime) -> None:
    """Ten concurrent deliveries in ten transactions store exactly one row; one caller wins."""
    results = await asyncio.gather(*(_deliver(db, now) for _ in range(10)))
    assert sorted(results) == [False] * 9 + [True]
    async with db.transaction() as session:
        rows = (await session.exec(select(InboundMessage))).all()
    assert len(rows) == 1


async def test_mark_processed_records_outcome(db: Database, now: datetime) -> None:
    """Marking an inbound message processed stores when, and the error if there was one."""
    async with db.transaction() as session:
        row_id = await Repository(session).record_inbound("sms", "SM9", "+15550100", "x", now)
        assert row_id is not None
        await Repository(session).mark_processed(row_id, now, error="unparseable")
    async with db.transaction() as session:
        stored = await session.get(InboundMessage, row_id)
    assert stored is not None
    assert (stored.processed_at, stored.error) == (now, "unparseable")


async def test_a_message_recorded_before_a_key_rotation_is_still_a_duplicate(
    db: Database, now: datetime
) -> None:
    """Its id was hashed under the old key; redelivered under a new current key, the ring's
    older hashes find it, and it is not stored twice."""
    assert await _deliver(db, now, "SM9") is True
    use_keys(KeyRing((*TEST_RING.keys, new_key())))
    assert await _deliver(db, now, "SM9") is False
    assert await _deliver(db, now, "SM10") is True


def test_a_received_message_has_every_column_of_the_inbox() -> None:
    """`Received` (what a turn inserts) stands for an `InboundMessage`: a column added to
    the table and not to it would be left to its default by every turn."""
    columns = {c.name for c in InboundMessage.__table__.columns} - {"id"}  # type: ignore[attr-defined]
    received = Received(channel="sms", provider_hash="h", sender="+15550100", text="2",
                        received_at=datetime(2026, 1, 1))  # fmt: skip
    assert set(received.values()) == columns


async def test_a_received_message_is_stored_as_the_table_row_would_be(
    db: Database, now: datetime
) -> None:
    """Recorded from a plain `Received`, the row equals one the ORM inserts from an
    `InboundMessage`, its sender's lookup hash set as the ORM's insert event sets it."""
    async with db.transaction() as session:
        orm_row = InboundMessage(channel="sms", provider_hash="orm", sender="+15550100",
                                 kind="text", text="2", received_at=now)  # fmt: skip
        session.add(orm_row)
        await session.flush()
        plain_id = await Repository(session).record_inbound("sms", "SM7", "+15550100", "2", now)
    async with db.transaction() as session:
        rows = {r.id: r for r in (await session.exec(select(InboundMessage))).all()}
    ignored = {"id", "provider_hash"}
    plain = rows[plain_id].model_dump(exclude=ignored)
    assert plain == rows[orm_row.id].model_dump(exclude=ignored)
    assert plain["sender_hash"] == lookup_hash("+15550100")


async def test_a_first_message_is_given_back_as_stored(db: Database, now: datetime) -> None:
    """The fast path's row comes back with the id the database gave it and stamped
    processed (none of its sender's messages waits), as its turn goes on to use it."""
    async with db.transaction() as session:
        given = await record_first(Repository(session), "sms", "SM8", "+15550100", "1", now,
                                   now=now)  # fmt: skip
    assert isinstance(given, Received) and given.id is not None
    async with db.transaction() as session:
        stored = await session.get(InboundMessage, given.id)
    assert stored is not None and stored.processed_at == given.processed_at == now
    assert (stored.text, stored.sender, stored.sender_hash) == (
        given.text, given.sender, given.sender_hash,
    )  # fmt: skip

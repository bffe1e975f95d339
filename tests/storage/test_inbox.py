"""The inbox: a provider message is stored once, however often it is delivered."""

import asyncio
from datetime import datetime

from sqlmodel import select

from bot.storage.crypto import KeyRing, new_key, provider_text, use_keys
from bot.storage.database import Database
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

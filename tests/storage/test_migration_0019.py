"""Migration 0019 on a database at 0018 with a message sent: ``early_receipt`` is added,
empty, and takes a receipt (only a final one, on a channel Twilio calls back on);
downgrading drops it and leaves the messages, and upgrading again adds it once more."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from alembic import command
from sqlalchemy import Row, text
from sqlalchemy.exc import DBAPIError, IntegrityError

from bot.storage import migrate
from bot.storage.database import Database
from tests.conftest import TEST_RING

AT = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
_RECEIPT = (
    "INSERT INTO early_receipt (channel, provider_id, outcome, error_code, opted_out,"
    " received_at) VALUES (:c, 'SM1', :o, NULL, false, :at)"
)


async def _at_0018_with_a_message(url: str) -> None:
    await migrate.upgrade_async(url, "0018")
    async with Database(url) as db:
        await _sql(db, "INSERT INTO outbound_message (channel, recipient_kind, recipient_id,"
                   " address, body, payload, idempotency_key, priority, status, attempts,"
                   " next_attempt_at, provider_id, created_at) VALUES ('sms', 'patient', 1,"
                   " :a, :b, '{}', 'k1', 0, 'sent', 1, :at, 'SM1', :at)",
                   a=TEST_RING.encrypt("outbound_message.address", "+15555550123"),
                   b=TEST_RING.encrypt("outbound_message.body", "hi"), at=AT)  # fmt: skip


async def test_0019_adds_an_empty_table_for_early_receipts(db_url: str) -> None:
    """Empty after the upgrade; a delivered SMS receipt fits, a 'sent' or a Telegram one not."""
    await _at_0018_with_a_message(db_url)
    await migrate.upgrade_async(db_url)
    async with Database(db_url) as db:
        assert await _sql(db, "SELECT id FROM early_receipt") == []
        await _sql(db, _RECEIPT, c="sms", o="delivered", at=AT)
        for channel, outcome in (("sms", "sent"), ("telegram", "failed")):
            with pytest.raises(IntegrityError):
                await _sql(db, _RECEIPT, c=channel, o=outcome, at=AT)


async def test_0019_downgrades_and_upgrades_again(db_url: str) -> None:
    """Back at 0018 the table is gone and the message stays; upgrading again adds it."""
    await _at_0018_with_a_message(db_url)
    await migrate.upgrade_async(db_url)
    await _alembic(db_url, command.downgrade, "0018")
    async with Database(db_url) as db:
        with pytest.raises(DBAPIError):
            await _sql(db, "SELECT id FROM early_receipt")
        assert [r[0] for r in await _sql(db, "SELECT provider_id FROM outbound_message")] == ["SM1"]
    await migrate.upgrade_async(db_url)
    async with Database(db_url) as db:
        await _sql(db, _RECEIPT, c="whatsapp", o="failed", at=AT)
        assert len(await _sql(db, "SELECT id FROM early_receipt")) == 1


async def _sql(db: Database, sql: str, **params: Any) -> list[Row[Any]]:
    async with db.engine.begin() as connection:
        result = await connection.execute(text(sql), params)
        return list(result.all()) if result.returns_rows else []


async def _alembic(url: str, step: Any, revision: str) -> None:
    async with Database(url, foreign_keys=False) as db, db.engine.begin() as connection:
        await connection.run_sync(lambda c: step(migrate.alembic_config(c), revision))

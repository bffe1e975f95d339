"""Migration 0020 on a database at 0019 with a delivered receipt kept: ``early_receipt``
then takes WhatsApp's read and held too (nothing else), and keeps the receipt; downgrading
deletes the read and held ones, keeps the rest, and refuses them again."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from alembic import command
from sqlalchemy import Row, text
from sqlalchemy.exc import IntegrityError

from bot.storage import migrate
from bot.storage.database import Database

AT = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
_RECEIPT = (
    "INSERT INTO early_receipt (channel, provider_id, outcome, error_code, opted_out,"
    " received_at) VALUES ('whatsapp', :sid, :o, NULL, false, :at)"
)
_OUTCOMES = "SELECT provider_id, outcome FROM early_receipt ORDER BY id"


async def _at_0019_with_a_receipt(url: str) -> None:
    await migrate.upgrade_async(url, "0019")
    async with Database(url) as db:
        await _sql(db, _RECEIPT, sid="SM1", o="delivered", at=AT)


async def test_0020_lets_early_receipts_be_read_or_held(db_url: str) -> None:
    """The kept receipt stays; read and held fit; 'sent' still does not."""
    await _at_0019_with_a_receipt(db_url)
    await migrate.upgrade_async(db_url)
    async with Database(db_url) as db:
        await _sql(db, _RECEIPT, sid="SM2", o="read", at=AT)
        await _sql(db, _RECEIPT, sid="SM3", o="held", at=AT)
        with pytest.raises(IntegrityError):
            await _sql(db, _RECEIPT, sid="SM4", o="sent", at=AT)
        rows = [tuple(r) for r in await _sql(db, _OUTCOMES)]
    assert rows == [("SM1", "delivered"), ("SM2", "read"), ("SM3", "held")]


async def test_0020_downgrades_dropping_read_and_held_and_upgrades_again(db_url: str) -> None:
    """Back at 0019 only the delivered receipt is left and read is refused; upgrading
    again takes it."""
    await _at_0019_with_a_receipt(db_url)
    await migrate.upgrade_async(db_url)
    async with Database(db_url) as db:
        await _sql(db, _RECEIPT, sid="SM2", o="read", at=AT)
        await _sql(db, _RECEIPT, sid="SM3", o="held", at=AT)
    await _alembic(db_url, command.downgrade, "0019")
    async with Database(db_url) as db:
        assert [tuple(r) for r in await _sql(db, _OUTCOMES)] == [("SM1", "delivered")]
        with pytest.raises(IntegrityError):
            await _sql(db, _RECEIPT, sid="SM2", o="read", at=AT)
    await migrate.upgrade_async(db_url)
    async with Database(db_url) as db:
        await _sql(db, _RECEIPT, sid="SM2", o="read", at=AT)
        assert len(await _sql(db, _OUTCOMES)) == 2


async def _sql(db: Database, sql: str, **params: Any) -> list[Row[Any]]:
    async with db.engine.begin() as connection:
        result = await connection.execute(text(sql), params)
        return list(result.all()) if result.returns_rows else []


async def _alembic(url: str, step: Any, revision: str) -> None:
    async with Database(url, foreign_keys=False) as db, db.engine.begin() as connection:
        await connection.run_sync(lambda c: step(migrate.alembic_config(c), revision))

"""Migration 0022 on a database at 0021 with a clinician stored: the clinician is told in
English, as before; a new one may be told in Spanish; downgrading drops the language and
keeps the clinician, and upgrading again gives them English."""

from __future__ import annotations

from datetime import UTC, datetime

from alembic import command

from bot.storage import migrate
from bot.storage.database import Database
from tests.storage.test_migration_0020 import _alembic, _sql

AT = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
_CLINICIAN = (
    "INSERT INTO clinician (display_name, channel, address, active, created_at{extra})"
    " VALUES ('x', 'console', 'dr-{n}', true, :at{value})"
)
_LANGUAGES = "SELECT id, language FROM clinician ORDER BY id"


async def test_0022_tells_stored_clinicians_in_english_and_round_trips(db_url: str) -> None:
    """The clinician stored before is 'en'; one added after is 'es'; back at 0021 the
    clinicians are kept without the column; at head again both are 'en'."""
    await migrate.upgrade_async(db_url, "0021")
    async with Database(db_url) as db:
        await _sql(db, _CLINICIAN.format(extra="", n=1, value=""), at=AT)
    await migrate.upgrade_async(db_url)
    async with Database(db_url) as db:
        await _sql(db, _CLINICIAN.format(extra=", language", n=2, value=", 'es'"), at=AT)
        assert [tuple(r) for r in await _sql(db, _LANGUAGES)] == [(1, "en"), (2, "es")]
    await _alembic(db_url, command.downgrade, "0021")
    async with Database(db_url) as db:
        assert len(await _sql(db, "SELECT id FROM clinician")) == 2
    await migrate.upgrade_async(db_url)
    async with Database(db_url) as db:
        assert [tuple(r) for r in await _sql(db, _LANGUAGES)] == [(1, "en"), (2, "en")]

"""Migration 0011 on a database at 0010 with rows in it: Telegram message ids (chat ids inside)
become keyed hashes, the conversation state (a blood-pressure reading inside) is encrypted,
nothing of either is left in plaintext, and a message recorded before is still a duplicate."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Row, text
from sqlalchemy.engine import make_url

from bot.config import Settings
from bot.storage import migrate
from bot.storage.crypto import KeyProblem, provider_text, use_keys
from bot.storage.database import Database
from bot.storage.repository import Repository
from bot.storage.tables import Checkin
from tests.conftest import TEST_RING

T0 = datetime(2026, 3, 2, 14, 30, tzinfo=UTC)
CHAT = "918273645501"
PROVIDER_ID = f"m{CHAT}:4417"
STATE = {
    "instruments": ["side_effects"],
    "status": "in_progress",
    "current": "side_effects.nausea",
    "answers": {"side_effects.blood_pressure": "187/119"},
    "skipped": [],
    "invalid_streak": 0,
    "crisis_sent": [],
    "lowered": [],
    "last_asked": None,
}


async def _at_0010_with_rows(url: str) -> None:
    """A database at 0010 holding one Telegram message and one check-in as 0010 stored them."""
    await migrate.upgrade_async(url, "0010")
    async with Database(url) as db:
        await _sql(db, "INSERT INTO patient (display_name, timezone, language, channel, status,"
                   " created_at, updated_at) VALUES (:n, 'UTC', 'en', 'telegram', 'active', :at,"
                   " :at)", n=TEST_RING.encrypt("patient.display_name", "P"), at=T0)  # fmt: skip
        await _sql(db, "INSERT INTO checkin (patient_id, idempotency_key, instruments, status,"
                   " due_at, expires_at, reminders_sent, max_reminders, origin, partial,"
                   " ignore_quiet_hours, state, version, created_at) VALUES (1, 'k', '[]',"
                   " 'in_progress', :at, :at, 0, 0, 'operator', false, false, :s, 1, :at)",
                   at=T0, s=json.dumps(STATE))  # fmt: skip
        await _sql(db, "INSERT INTO inbound_message (channel, provider_id, sender, sender_hash,"
                   " kind, text, received_at, attempts) VALUES ('telegram', :p, :s, :h, 'text',"
                   " :t, :at, 0)", p=PROVIDER_ID,
                   s=TEST_RING.encrypt("inbound_message.sender", CHAT),
                   h=TEST_RING.lookup_hash(CHAT),
                   t=TEST_RING.encrypt("inbound_message.text", "2"), at=T0)  # fmt: skip


async def test_0011_hashes_message_ids_and_encrypts_state_on_existing_rows(db_url: str) -> None:
    """After `db upgrade` no chat id nor reading is stored in plaintext (SQLite: not in the
    file nor its WAL either), the state reads back whole, and the message recorded before
    the migration, delivered again, is recognised and dropped."""
    await _at_0010_with_rows(db_url)
    await migrate.upgrade_with_keys(Settings(database_url=db_url))
    async with Database(db_url) as db:
        ((hashed,),) = await _sql(db, "SELECT provider_hash FROM inbound_message")
        ((state,),) = await _sql(db, "SELECT state FROM checkin")
        assert hashed == TEST_RING.lookup_hash(provider_text("telegram", PROVIDER_ID))
        assert state.startswith(TEST_RING.prefix) and "187" not in state
        async with db.transaction() as session:
            checkin = await session.get(Checkin, 1)
            assert checkin is not None and checkin.state == STATE
            again = await Repository(session).record_inbound("telegram", PROVIDER_ID, CHAT, "2", T0)
        assert again is None
        if db.dialect == "sqlite":
            await db.dispose()
            path = Path(str(make_url(db_url).database))
            wal = path.with_name(path.name + "-wal")
            data = path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")
            assert CHAT.encode() not in data and b"187/119" not in data


async def test_0011_without_a_key_stops_and_changes_nothing(db_url: str) -> None:
    """Rows to convert and no key: the migration names what to set and the database stays at
    0010, its message id and state as they were."""
    await _at_0010_with_rows(db_url)
    use_keys(None)
    with pytest.raises(KeyProblem, match=r"0011.*CHECKIN_ENCRYPTION_KEY"):
        await migrate.upgrade_async(db_url)
    assert await migrate.current_revision_async(db_url) == "0010"
    async with Database(db_url) as db:
        assert await _sql(db, "SELECT provider_id FROM inbound_message") == [(PROVIDER_ID,)]


async def _sql(db: Database, sql: str, **params: Any) -> list[Row[Any]]:
    async with db.engine.begin() as connection:
        result = await connection.execute(text(sql), params)
        return list(result.all()) if result.returns_rows else []

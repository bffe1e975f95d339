"""A process killed mid-send leaves its send leases behind. On SQLite (one scheduling
process) the next process to start takes them over at once; on PostgreSQL (another worker
may be alive and sending them) they are left to run out."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update
from sqlalchemy.engine import make_url

from bot.app.outbox.takeover import release_dead_leases
from bot.bootstrap import utc_now
from bot.storage.database import Database
from bot.storage.migrate import upgrade_async
from bot.storage.repository import Repository
from bot.storage.tables import OutboundMessage
from tests.standins.telegram import TelegramStandIn
from tests.standins.workers import Process
from tests.test_cli_service import free_port
from tests.test_services import rows

FIRST_CHAT = 820_000
DEAD_LEASE = timedelta(hours=1)  # far beyond any wait in here: only a takeover sends these
CONFIG = """
[clinic]
quiet_hours_start_local = "00:00"
quiet_hours_end_local = "00:00"

[scheduler]
tick_s = 0.5

[telegram]
token = "{token}"
api_base_url = "{url}/bot"
bot_username = "checkin_test_bot"
rate_per_s = 100000
"""


async def _queue(db: Database, chats: range, *, leased: bool) -> None:
    """One message to each chat; `leased`: as a killed process leaves them (being sent,
    under a lease an hour from its end)."""
    now = utc_now()
    async with db.transaction() as session:
        ids = await Repository(session).enqueue([
            OutboundMessage(
                channel="telegram", recipient_kind="patient", recipient_id=chat,
                address=str(chat), body=f"message {chat}", payload={},
                idempotency_key=f"takeover:{chat}", next_attempt_at=now,
            )
            for chat in chats
        ])  # fmt: skip
        if leased:
            await session.exec(
                update(OutboundMessage)
                .where(OutboundMessage.id.in_(ids))  # type: ignore[union-attr]
                .values(status="sending", lease_until=now + DEAD_LEASE, attempts=1)
            )


async def test_only_sqlite_releases_the_leases_still_running(db: Database) -> None:
    """Leases still running are made due now on SQLite, and nothing else changes; on
    PostgreSQL nothing is released."""
    await _queue(db, range(FIRST_CHAT, FIRST_CHAT + 3), leased=True)
    await _queue(db, range(FIRST_CHAT + 3, FIRST_CHAT + 5), leased=False)
    now = utc_now()
    released = await release_dead_leases(db, lambda: now)
    messages = await rows(db, OutboundMessage)
    if db.dialect == "sqlite":
        assert released == 3
        assert [m.lease_until for m in messages[:3]] == [now] * 3
    else:
        assert released == 0
        assert all(m.lease_until and m.lease_until > now + DEAD_LEASE / 2 for m in messages[:3])
    assert [m.status for m in messages] == ["sending"] * 3 + ["queued"] * 2
    assert [m.lease_until for m in messages[3:]] == [None, None]


def _start(
    url: str, tmp_path: Path, fake: TelegramStandIn, base: str, command: str = "worker"
) -> Process:
    config = tmp_path / "clinic.toml"
    server = f"\n[server]\nport = {free_port()}\n"
    config.write_text(CONFIG.format(token=fake.token, url=base) + server)
    return Process(url, config, tmp_path / "worker.log", command)


def _wait_for(chats: range, fake: TelegramStandIn, log: Path, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if all(fake.sent_texts(chat) for chat in chats):
            return
        time.sleep(0.2)
    tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
    raise AssertionError(f"not every chat heard from the worker; worker log:\n{tail}")


@pytest.mark.parametrize("command", ["worker", "run"])
def test_a_restarted_sqlite_process_sends_a_dead_process_s_messages_at_once(
    command: str,
    migrated_sqlite_url: str,
    tmp_path: Path,
    stand_in: tuple[TelegramStandIn, str],
) -> None:
    """Three messages under an hour's lease of a killed process: a new `checkin worker`
    (or `checkin run`) sends them on its first ticks instead of an hour later, each once."""
    fake, base = stand_in
    dead = range(FIRST_CHAT, FIRST_CHAT + 3)
    asyncio.run(_queue_at(migrated_sqlite_url, dead, leased=True))
    url = f"sqlite:///{make_url(migrated_sqlite_url).database}"
    worker = _start(url, tmp_path, fake, base, command)
    try:
        _wait_for(dead, fake, tmp_path / "worker.log")
    finally:
        assert worker.terminate() == 0
    assert [len(fake.sent_texts(chat)) for chat in dead] == [1, 1, 1]
    assert "took over 3 messages" in (tmp_path / "worker.log").read_text()


@pytest.mark.postgres
def test_a_postgresql_worker_leaves_another_worker_s_leases_alone(
    postgres_url: str, tmp_path: Path, stand_in: tuple[TelegramStandIn, str]
) -> None:
    """The same leases on PostgreSQL may be a live worker's: a new worker sends a queued
    message beside them (the claim that took it would have taken them too) and not them."""
    fake, base = stand_in
    asyncio.run(upgrade_async(postgres_url))
    leased, queued = range(FIRST_CHAT, FIRST_CHAT + 3), range(FIRST_CHAT + 3, FIRST_CHAT + 4)
    asyncio.run(_queue_at(postgres_url, leased, leased=True))
    asyncio.run(_queue_at(postgres_url, queued, leased=False))
    worker = _start(postgres_url, tmp_path, fake, base)
    try:
        _wait_for(queued, fake, tmp_path / "worker.log")
    finally:
        assert worker.terminate() == 0
    assert [fake.sent_texts(chat) for chat in leased] == [[], [], []]


async def _queue_at(url: str, chats: range, *, leased: bool) -> None:
    async with Database(url) as db:
        await _queue(db, chats, leased=leased)

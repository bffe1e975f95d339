"""Duplicates per 1,000 sends when a worker is killed with SIGKILL mid-send, and how long the
killed worker's messages wait; run by ``bench/duplicates.py --kill-on sqlite,postgresql``.

A real `checkin worker` delivers a wave of ``messages`` queued messages (one per chat)
through the real python-telegram-bot client to the Bot API stand-in, which answers every
sendMessage after ``PROVIDER_S``, so sends are in flight (received, not yet answered) at
any moment. Once the stand-in has received a third of the wave the worker is killed with
SIGKILL and a replacement starts at once (as systemd's ``Restart=always`` would, minus its
pause). Counted: sendMessage calls the provider received beyond one per message; the
messages the killed worker held (``sending``, under its lease); and from the replacement's
start, the seconds until its first send, until the first held message went out again (the
wait), and until every held message was sent.

Shipped settings otherwise (``tick_s = 5``, ``send_lease_s = 30``, 30 messages a second):
the wait is what an operator would see. On SQLite the replacement takes the held messages
over at start-up (one scheduling process: their holder is dead); on PostgreSQL it waits for
their leases, which may be a live worker's.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
from sqlalchemy.engine import make_url
from sqlmodel import col, select

from bot.bootstrap import utc_now
from bot.storage.database import Database
from bot.storage.migrate import upgrade
from bot.storage.repository import Repository
from bot.storage.tables import OutboundMessage
from tests.standins.server import Fault, serve_in_thread
from tests.standins.telegram import TelegramStandIn
from tests.standins.workers import Process

ADMIN = os.environ.get("CHECKIN_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
FIRST_CHAT = 400_000
PROVIDER_S = 1.0  # every sendMessage is answered after this: sends are in flight
KILL_AT = 1 / 3  # of the wave received by the provider
CONFIG = """
[clinic]
quiet_hours_start_local = "00:00"
quiet_hours_end_local = "00:00"

[scheduler]
send_lease_s = 30

[telegram]
token = "{token}"
api_base_url = "{url}/bot"
bot_username = "checkin_bench_bot"
"""


@dataclass(frozen=True)
class Killed:
    dialect: str
    messages: int
    duplicates: int  # sendMessage calls beyond one per message
    missed: int  # chats the provider never heard from
    held: int  # messages the killed worker was sending (leased) when it died
    first_send_s: float  # from the replacement's start to its first send
    held_first_s: float  # from the replacement's start to the first send of a held message
    held_sent_s: float  # from the replacement's start until every held message was sent
    wave_s: float  # from the first worker's start until every message was sent

    @property
    def per_1000(self) -> float:
        return self.duplicates * 1000 / self.messages


def run_kill(dialect: str, messages: int, workdir: Path) -> Killed:
    """One wave on a fresh database of `dialect`, its worker killed a third of the way."""
    with _database(dialect, workdir) as url:
        upgrade(url)
        asyncio.run(_queue(url, messages))
        fake = TelegramStandIn()
        fake.fail(Fault.slow(PROVIDER_S), method="sendMessage", times=messages * 3)
        with serve_in_thread(fake.app) as base:
            config = workdir / f"{dialect}.toml"
            config.write_text(CONFIG.format(token=fake.token, url=base))
            log = workdir / f"{dialect}.log"
            started = time.monotonic()
            first = Process(url, config, log)
            try:
                _wait(lambda: len(fake.calls_to("sendMessage")) >= messages * KILL_AT, log)
            finally:
                first.kill()
            held = asyncio.run(_held(url))
            before = len(fake.calls_to("sendMessage"))
            held_before = _calls_to(fake, held.values())
            restarted = time.monotonic()
            second = Process(url, config, log)
            try:
                _wait(lambda: len(fake.calls_to("sendMessage")) > before, log)
                first_send_s = time.monotonic() - restarted
                _wait(lambda: _calls_to(fake, held.values()) > held_before, log)
                held_first_s = time.monotonic() - restarted
                _wait(lambda: asyncio.run(_unsent(url, list(held))) == 0, log)
                held_sent_s = time.monotonic() - restarted
                _wait(lambda: asyncio.run(_unsent(url, None)) == 0, log)
                wave_s = time.monotonic() - started
            finally:
                second.terminate()
        duplicates = len(fake.calls_to("sendMessage")) - messages
        heard = {str(c.params.get("chat_id")) for c in fake.calls_to("sendMessage")}
        missed = sum(1 for n in range(messages) if str(FIRST_CHAT + n) not in heard)
        return Killed(
            dialect, messages, duplicates, missed, len(held),
            first_send_s, held_first_s, held_sent_s, wave_s,
        )  # fmt: skip


@contextlib.contextmanager
def _database(dialect: str, workdir: Path) -> Iterator[str]:
    """A fresh SQLite file, or a fresh PostgreSQL database dropped afterwards."""
    if dialect == "sqlite":
        yield f"sqlite:///{workdir / f'kill-{uuid.uuid4().hex[:8]}.db'}"
        return
    name = f"bench_kill_{uuid.uuid4().hex[:10]}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(ADMIN).set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _admin(sql: str) -> None:
    connection = await asyncpg.connect(ADMIN)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


async def _queue(url: str, messages: int) -> None:
    now = utc_now()
    async with Database(url) as db, db.transaction() as session:
        await Repository(session).enqueue([
            OutboundMessage(
                channel="telegram", recipient_kind="patient", recipient_id=n,
                address=str(FIRST_CHAT + n), body=f"check-in {n}", payload={},
                idempotency_key=f"bench-kill:{n}", next_attempt_at=now,
            )
            for n in range(messages)
        ])  # fmt: skip


async def _held(url: str) -> dict[int, str]:
    """The messages a worker was sending (claimed under its lease): id -> chat."""
    async with Database(url) as db, db.transaction() as session:
        statement = select(OutboundMessage.id, OutboundMessage.recipient_id).where(
            OutboundMessage.status == "sending"
        )
        found = (await session.exec(statement)).all()
        return {i: str(FIRST_CHAT + n) for i, n in found if i is not None}


def _calls_to(fake: TelegramStandIn, chats: Iterable[str]) -> int:
    wanted = set(chats)
    return sum(1 for c in fake.calls_to("sendMessage") if str(c.params.get("chat_id")) in wanted)


async def _unsent(url: str, among: list[int] | None) -> int:
    async with Database(url) as db, db.transaction() as session:
        statement = select(OutboundMessage.id).where(OutboundMessage.status != "sent")
        if among is not None:
            statement = statement.where(col(OutboundMessage.id).in_(among))
        return len((await session.exec(statement)).all())


def _wait(done: Callable[[], bool], log: Path, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        if time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise TimeoutError(f"gave up after {timeout_s:.0f}s; worker log:\n{tail}")
        time.sleep(0.1)

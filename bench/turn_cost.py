"""The work of one answered item, counted where the machine's noise cannot move the count.

`bench.turns` measures a turn through the webhook beside the echo, and its CPU figures
swing by a sixth from run to run on a shared machine: a change worth a twentieth of a
turn does not show there. This counts, for a console patient's answer handled in the
process (`Inbox.handle_inbound`, then the deliverer's drain: no HTTP, no provider):

- the SQL statements of one turn, listed (what the database is asked), with the
  transactions' BEGIN and COMMIT where SQLAlchemy begins and commits them (on PostgreSQL
  each is a round trip, but on the AUTOCOMMIT engine of `Database.quick()`, where they
  are not sent);
- Python function calls per turn, under cProfile: the same code and data give the same
  count on any machine, so a before and after differ only by the change;
- CPU per turn without the profiler (``time.process_time``), the best of ``--runs``,
  for scale (noisy, as every timing here).

``--channel telegram`` counts a Telegram patient's answer instead, as `checkin run`
takes it: the update handed to the webhook's handler (`handle_update`: python-telegram-bot's
``Update``, the inbox), the rows handed to the courier, the answered question's edit and the
next question sent by the real client to the Bot API stand-in (in a process of its own, so
its work is not counted), and the "sent" marks. Not counted: the HTTP server in front of the
handler, which `bench.turns` measures beside the echo. The send limits are raised out of
reach (1,000 a second, a chat 20 at once then 50 a second), so no send waits and the count
does not depend on how long one did, while the pacer's work (on PostgreSQL, the shared
limit's statements) is still done and counted. A round's turns are counted until the
courier has sent and recorded what they handed it; asking the stand-in what it received
is not. The answers come one at a time, each turn's sends recorded before the next answer,
as at a patient's pace (`bench.turns` with ``BENCH_PACE=3-8``), where turns seldom overlap.

    .venv/bin/python -m bench.turn_cost [--stores sqlite,postgresql] [--patients 40]
        [--runs 3] [--statements] [--channel console|telegram] [--profile PREFIX]

Each store gets a fresh database: a SQLite file in a temporary directory, a PostgreSQL
database created on the test suite's server (``CHECKIN_TEST_POSTGRES_URL``) and dropped.
Every patient has a PHQ-9 and a GAD-7 check-in open and answers "0" to each question.
Writes nothing: it prints, for docs/PERFORMANCE.md to quote.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import itertools
import os
import pstats
import re
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from datetime import time as dt_time
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy import event, make_url

from bench.keys import ensure_key
from bot.app.conversations.inbox import Inbound
from bot.app.outbox.delivery import Deliverer, deliver_when_woken
from bot.app.services import Services
from bot.bootstrap import build
from bot.channels.console import ConsoleChannel
from bot.channels.telegram import TelegramChannel
from bot.config import Clinic, Settings, Telegram
from bot.instruments import load_catalog
from bot.rendering.renderer import Renderer
from bot.storage.database import Database
from bot.storage.migrate import upgrade_async
from bot.storage.repository import Repository
from bot.storage.tables import Patient
from bot.web.telegram import handle_update
from tests.standins.telegram import build_text_update
from tests.standins.telegram_served import InProcess, Options, in_process

POSTGRES = os.environ.get("CHECKIN_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
AT = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
CHAT0 = 7100  # the first patient's chat (console patients use the same numbers)
ROUNDS = 4  # answered items per patient in each measured round (a check-in has 16)


@dataclass
class Cost:
    store: str
    statements: list[str] = field(default_factory=list)
    calls_per_turn: float = 0.0
    cpu_ms_per_turn: list[float] = field(default_factory=list)


@asynccontextmanager
async def _database(store: str, directory: Path) -> AsyncIterator[tuple[Database, str]]:
    if store == "sqlite":
        url = f"sqlite+aiosqlite:///{directory / 'turn_cost.db'}"
        await upgrade_async(url)
        database = Database(url)
        try:
            yield database, url
        finally:
            await database.dispose()
        return
    name = f"bench_turn_cost_{os.getpid()}"
    await _admin(f'CREATE DATABASE "{name}"')
    at = make_url(POSTGRES).set(drivername="postgresql+asyncpg", database=name)
    rendered = at.render_as_string(hide_password=False)
    try:
        await upgrade_async(rendered)
        database = Database(rendered)
        try:
            yield database, rendered
        finally:
            await database.dispose()
    finally:
        await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _admin(sql: str) -> None:
    """One statement on the test suite's server, outside any transaction."""
    admin = await asyncpg.connect(POSTGRES, timeout=5)
    try:
        await admin.execute(sql)
    finally:
        await admin.close()


class _Clock:
    def __call__(self) -> datetime:
        return AT


class _Paused:
    """CPU time and profiling that can be paused while a round's sends are awaited."""

    def __init__(self) -> None:
        self.profile: cProfile.Profile | None = None
        self.excluded_s = 0.0

    @asynccontextmanager
    async def aside(self) -> AsyncIterator[None]:
        if self.profile is not None:
            self.profile.disable()
        started = time.process_time()
        try:
            yield
        finally:
            self.excluded_s += time.process_time() - started
            if self.profile is not None:
                self.profile.enable()


class _Console:
    """Console patients: the inbox, then the deliverer's drain, as the tick does."""

    def __init__(self, db: Database) -> None:
        catalog = load_catalog()
        clinic = Clinic(name="Bench clinic", contact="555-0100")
        self.services = Services.create(db, catalog, Renderer(catalog, clinic), clinic, _Clock())
        self.deliverer = Deliverer(db, {"console": ConsoleChannel(io.StringIO())}, _Clock())
        self.n = 0

    async def start(self) -> None:
        await self.services.starting.start_due()
        await self.deliverer.drain()

    async def answer(self, addresses: list[str]) -> int:
        self.n += 1
        for address in addresses:
            await self.services.inbox.handle_inbound(
                Inbound("console", f"{address}-{self.n}", address, "0", AT)
            )
        await self.deliverer.drain()
        return len(addresses)

    async def close(self) -> None:
        return None


class _Telegram:
    """Telegram patients, each answer an update given to the webhook's handler; the
    courier sends what the turns hand it (see the module's docstring)."""

    def __init__(self, paused: _Paused, stand_in: InProcess, url: str) -> None:
        # no quiet hours: this app reads the wall clock, and at night (20:00-08:00 UTC by
        # default) the check-ins would not start and no question would be sent
        clinic = Clinic(
            name="Bench clinic",
            contact="555-0100",
            quiet_hours_start_local=dt_time(0),
            quiet_hours_end_local=dt_time(0),
        )
        settings = Settings(
            database_url=url,
            clinic=clinic,
            telegram=Telegram(token=stand_in.token, mode="webhook", webhook_secret="bench-secret",  # noqa: S106
                              api_base_url=f"{stand_in.url}/bot", bot_username="bench_bot",
                              rate_per_s=1000.0, per_chat_burst=20, per_chat_rate_per_s=50.0),
        )  # fmt: skip
        self.app = build(settings)
        self.app.wake = asyncio.Event()
        self.stop = asyncio.Event()
        self.drained = asyncio.Event()
        self._watch_drains()
        self.courier = asyncio.create_task(
            deliver_when_woken(self.app.deliverer, self.app.wake, self.stop)
        )
        channel = self.app.channels["telegram"]
        assert isinstance(channel, TelegramChannel)
        self.channel, self.stand_in, self.paused = channel, stand_in, paused
        self.services = self.app.services
        self.ids = itertools.count(1)
        self.expected = 0

    async def start(self) -> None:
        async with self.paused.aside():
            await self.services.starting.start_due()
            self.app.kick()
            await self._sent(len(await self.stand_in.seen()) + 1)
            await self._settled()

    async def answer(self, addresses: list[str]) -> int:
        """One patient's answer at a time, each turn's sends and marks done before the next
        (at a patient's pace, turns seldom overlap: each starts a drain of its own)."""
        for address in addresses:
            n = next(self.ids)
            update = build_text_update(update_id=n, chat_id=int(address), message_id=n,
                                       text="0", date=datetime.now(UTC))  # fmt: skip
            await handle_update(self.app, self.channel, update)
            await self._settled()  # (counted: the sends, their marks and the drain's end)
        async with self.paused.aside():  # (not counted: asking the stand-in)
            await self._sent(2 * len(addresses))  # each: the question's edit, the next one
        return len(addresses)

    async def _settled(self) -> None:
        """Wait, without polling, until the courier has sent and recorded what the turn
        handed it: woken at the end of each of its drains (see `_watch_drains`)."""
        while not self.app.deliverer.idle:
            self.drained.clear()
            await asyncio.wait_for(self.drained.wait(), 60)

    def _watch_drains(self) -> None:
        """Set `drained` whenever a drain of the deliverer ends (wrapping its method)."""
        drain = self.app.deliverer.drain

        async def watched(*args: Any, **kwargs: Any) -> Any:
            try:
                return await drain(*args, **kwargs)
            finally:
                self.drained.set()

        self.app.deliverer.drain = watched  # type: ignore[method-assign]

    async def _sent(self, more: int) -> None:
        """Wait until `more` requests beyond those counted so far reached the stand-in."""
        self.expected += more
        deadline = time.monotonic() + 60
        while len(await self.stand_in.seen()) < self.expected:
            if time.monotonic() > deadline:
                raise TimeoutError("the stand-in did not receive the turns' messages")
            await asyncio.sleep(0.05)
        self.expected = len(await self.stand_in.seen())

    async def close(self) -> None:
        self.stop.set()
        self.courier.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.courier
        await self.app.close()


async def measure(
    store: str, patients: int, runs: int, channel: str = "console", profile_to: str | None = None
) -> Cost:
    """Open a check-in for each of `patients`, answer one item each to warm up, list one
    turn's statements, then count and time `runs` rounds of answers."""
    cost = Cost(store)
    paused = _Paused()
    with tempfile.TemporaryDirectory() as directory:
        async with (
            _database(store, Path(directory)) as (db, url),
            contextlib.AsyncExitStack() as stack,
        ):
            driver: _Console | _Telegram
            if channel == "telegram":
                stand_in = await stack.enter_async_context(in_process(Options()))
                driver = _Telegram(paused, stand_in, url)
                db = driver.app.db
            else:
                driver = _Console(db)
            stack.push_async_callback(driver.close)
            addresses = [str(CHAT0 + n) for n in range(patients)]
            enrolled = [
                Patient(display_name="Bench", timezone="UTC", language="en", channel=channel,
                        address=address, status="active")
                for address in addresses
            ]  # fmt: skip
            async with db.transaction() as session:
                for patient in enrolled:
                    await Repository(session).add(patient)
            for patient in enrolled:
                assert patient.id is not None
                await driver.services.asking.ask(patient.id, ["phq9", "gad7"])
            await driver.start()
            await driver.answer(addresses)  # warm: every statement compiled and cached
            seen: list[str] = []
            engines = {db.engine.sync_engine, db.quick_engine.sync_engine}
            listeners = {
                "before_cursor_execute": lambda *args: seen.append(args[2]),
                "begin": lambda *args: seen.append("BEGIN"),
                "commit": lambda *args: seen.append("COMMIT"),
            }
            for engine in engines:
                for name, listener in listeners.items():
                    event.listen(engine, name, listener)
            await driver.answer(addresses[:1])
            for engine in engines:
                for name, listener in listeners.items():
                    event.remove(engine, name, listener)
            cost.statements = [re.sub(r"\s+", " ", s) for s in seen]
            for _ in range(runs):
                paused.excluded_s = 0.0
                started, turns = time.process_time(), 0
                for _ in range(ROUNDS // 2):
                    turns += await driver.answer(addresses)
                spent = time.process_time() - started - paused.excluded_s
                cost.cpu_ms_per_turn.append(1000 * spent / turns)
            paused.profile, turns = cProfile.Profile(), 0
            paused.profile.enable()
            for _ in range(ROUNDS // 2):
                turns += await driver.answer(addresses)
            paused.profile.disable()
            if profile_to:
                paused.profile.dump_stats(profile_to)
            cost.calls_per_turn = pstats.Stats(paused.profile).total_calls / turns  # type: ignore[attr-defined]
    return cost


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stores", default="sqlite,postgresql", help="comma-separated")
    parser.add_argument("--channel", default="console", choices=("console", "telegram"))
    parser.add_argument("--patients", type=int, default=40, help="patients answering")
    parser.add_argument("--runs", type=int, default=3, help="timed rounds (best is shown)")
    parser.add_argument("--statements", action="store_true", help="list one turn's SQL")
    parser.add_argument(
        "--profile",
        metavar="PREFIX",
        help="cProfile stats of the counted rounds: PREFIX-<store>.prof",
    )
    args = parser.parse_args()
    if args.runs * (ROUNDS // 2) + ROUNDS // 2 + 2 > 16:
        parser.error("--runs at most 6: a patient's two check-ins have 16 items between them")
    ensure_key()
    for store in args.stores.split(","):
        dump = f"{args.profile}-{store.strip()}.prof" if args.profile else None
        cost = asyncio.run(measure(store.strip(), args.patients, args.runs, args.channel, dump))
        best = min(cost.cpu_ms_per_turn)
        sql = [s for s in cost.statements if s not in ("BEGIN", "COMMIT")]
        print(f"{cost.store}, {args.channel}: {len(sql)} statements a turn "
              f"(with its sends), {cost.calls_per_turn:.0f} Python calls a turn, "
              f"CPU {best:.2f} ms a turn (best of {len(cost.cpu_ms_per_turn)}: "
              f"{', '.join(f'{c:.2f}' for c in cost.cpu_ms_per_turn)})")  # fmt: skip
        if args.statements:
            for statement in cost.statements:
                print(f"    {statement[:160]}")


if __name__ == "__main__":
    main()

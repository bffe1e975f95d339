"""The work of one answered item, counted where the machine's noise cannot move the count.

`bench.turns` measures a turn through the webhook beside the echo, and its CPU figures
swing by a sixth from run to run on a shared machine: a change worth a twentieth of a
turn does not show there. This counts, for a console patient's answer handled in the
process (`Inbox.handle_inbound`, then the deliverer's drain: no HTTP, no provider):

- the SQL statements of one turn, listed (what the database is asked);
- Python function calls per turn, under cProfile: the same code and data give the same
  count on any machine, so a before and after differ only by the change;
- CPU per turn without the profiler (``time.process_time``), the best of ``--runs``,
  for scale (noisy, as every timing here).

    .venv/bin/python -m bench.turn_cost [--stores sqlite,postgresql] [--patients 40]
        [--runs 3] [--statements]

Each store gets a fresh database: a SQLite file in a temporary directory, a PostgreSQL
database created on the test suite's server (``CHECKIN_TEST_POSTGRES_URL``) and dropped.
Every patient has a PHQ-9 and a GAD-7 check-in open and answers "0" to each question.
Writes nothing: it prints, for docs/PERFORMANCE.md to quote.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import os
import pstats
import re
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
from sqlalchemy import event, make_url

from bench.keys import ensure_key
from bot.app.conversations.inbox import Inbound
from bot.app.outbox.delivery import Deliverer
from bot.app.services import Services
from bot.channels.console import ConsoleChannel
from bot.config import Clinic
from bot.instruments import load_catalog
from bot.rendering.renderer import Renderer
from bot.storage.database import Database
from bot.storage.migrate import upgrade_async
from bot.storage.repository import Repository
from bot.storage.tables import Patient

POSTGRES = os.environ.get("CHECKIN_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
AT = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
ROUNDS = 4  # answered items per patient in each measured round (a check-in has 16)


@dataclass
class Cost:
    store: str
    statements: list[str] = field(default_factory=list)
    calls_per_turn: float = 0.0
    cpu_ms_per_turn: list[float] = field(default_factory=list)


@asynccontextmanager
async def _database(store: str, directory: Path) -> AsyncIterator[Database]:
    if store == "sqlite":
        url = f"sqlite+aiosqlite:///{directory / 'turn_cost.db'}"
        await upgrade_async(url)
        database = Database(url)
        try:
            yield database
        finally:
            await database.dispose()
        return
    name = f"bench_turn_cost_{os.getpid()}"
    admin = await asyncpg.connect(POSTGRES, timeout=5)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    at = make_url(POSTGRES).set(drivername="postgresql+asyncpg", database=name)
    rendered = at.render_as_string(hide_password=False)
    try:
        await upgrade_async(rendered)
        database = Database(rendered)
        try:
            yield database
        finally:
            await database.dispose()
    finally:
        admin = await asyncpg.connect(POSTGRES, timeout=5)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


class _Clock:
    def __call__(self) -> datetime:
        return AT


def _answer(address: str, n: int) -> Inbound:
    return Inbound("console", f"{address}-{n}", address, "0", AT)


async def measure(store: str, patients: int, runs: int) -> Cost:
    """Open a check-in for each of `patients`, answer one item each to warm up, list one
    turn's statements, then count and time `runs` rounds of answers."""
    catalog = load_catalog()
    clinic = Clinic(name="Bench clinic", contact="555-0100")
    cost = Cost(store)
    with tempfile.TemporaryDirectory() as directory:
        async with _database(store, Path(directory)) as db:
            services = Services.create(db, catalog, Renderer(catalog, clinic), clinic, _Clock())
            deliverer = Deliverer(db, {"console": ConsoleChannel(io.StringIO())}, _Clock())
            addresses = [f"bench-{n}" for n in range(patients)]
            enrolled = [
                Patient(display_name="Bench", timezone="UTC", language="en", channel="console",
                        address=address, status="active")
                for address in addresses
            ]  # fmt: skip
            async with db.transaction() as session:
                for patient in enrolled:
                    await Repository(session).add(patient)
            for patient in enrolled:
                assert patient.id is not None
                await services.asking.ask(patient.id, ["phq9", "gad7"])
            await services.starting.start_due()
            await deliverer.drain()
            n = 0

            async def round_of_answers() -> int:
                nonlocal n
                n += 1
                for address in addresses:
                    await services.inbox.handle_inbound(_answer(address, n))
                await deliverer.drain()
                return len(addresses)

            await round_of_answers()  # warm: every statement compiled and cached
            seen: list[str] = []
            engine = db.engine.sync_engine
            listener = lambda *args: seen.append(args[2])  # noqa: E731
            event.listen(engine, "before_cursor_execute", listener)
            n += 1
            await services.inbox.handle_inbound(_answer(addresses[0], n))
            await deliverer.drain()
            event.remove(engine, "before_cursor_execute", listener)
            cost.statements = [re.sub(r"\s+", " ", s) for s in seen]
            for _ in range(runs):
                started, turns = time.process_time(), 0
                for _ in range(ROUNDS // 2):
                    turns += await round_of_answers()
                cost.cpu_ms_per_turn.append(1000 * (time.process_time() - started) / turns)
            profile, turns = cProfile.Profile(), 0
            profile.enable()
            for _ in range(ROUNDS // 2):
                turns += await round_of_answers()
            profile.disable()
            cost.calls_per_turn = pstats.Stats(profile).total_calls / turns  # type: ignore[attr-defined]
    return cost


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stores", default="sqlite,postgresql", help="comma-separated")
    parser.add_argument("--patients", type=int, default=40, help="patients answering")
    parser.add_argument("--runs", type=int, default=3, help="timed rounds (best is shown)")
    parser.add_argument("--statements", action="store_true", help="list one turn's SQL")
    args = parser.parse_args()
    if args.runs * (ROUNDS // 2) + ROUNDS // 2 + 2 > 16:
        parser.error("--runs at most 6: a patient's two check-ins have 16 items between them")
    ensure_key()
    for store in args.stores.split(","):
        cost = asyncio.run(measure(store.strip(), args.patients, args.runs))
        best = min(cost.cpu_ms_per_turn)
        print(f"{cost.store}: {len(cost.statements)} statements a turn (with its drain), "
              f"{cost.calls_per_turn:.0f} Python calls a turn, "
              f"CPU {best:.2f} ms a turn (best of {len(cost.cpu_ms_per_turn)}: "
              f"{', '.join(f'{c:.2f}' for c in cost.cpu_ms_per_turn)})")  # fmt: skip
        if args.statements:
            for statement in cost.statements:
                print(f"    {statement[:160]}")


if __name__ == "__main__":
    main()

"""A burst of inbound SMS: how long Twilio waits for ``/sms`` to answer.

`checkin run` (the real service: uvicorn, the scheduler, the courier) serves on loopback
with a Twilio stand-in for its replies; this process posts signed incoming-message
webhooks at a steady rate, without waiting for one answer before the next (as Twilio
does), and times each. Patients are active, each in a PHQ-9, and their messages answer
it item by item. Then it waits until every message has been processed.

    .venv/bin/python -m bench.sms_burst [--messages 1000] [--seconds 10] [--patients 100]
        [--database sqlite postgresql] [--repo PATH] [--label after] [--no-doc]

``--repo`` runs the service from another checkout (``/work/main`` for the figures
before a change), with this checkout's client, stand-in and schema; ``--label`` names
the row in docs/perf/sms_burst.md, which keeps the rows of other labels. Twilio gives up
on a webhook after 15 s: p99 must stay well under it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
from sqlalchemy import func
from sqlalchemy.engine import make_url
from sqlmodel import col, select

from bench.crisis_latency import percentile
from bench.keys import ensure_key
from bot.bootstrap import build
from bot.config import Settings
from bot.storage.database import Database
from bot.storage.migrate import upgrade
from bot.storage.repository import Repository
from bot.storage.tables import InboundMessage, Patient
from tests.standins.server import serve_in_thread
from tests.standins.twilio import TwilioStandIn

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "perf" / "sms_burst.md"
PUBLIC = "https://bench.example"
CLINIC = "+15555550100"
POSTGRES = os.environ.get("CHECKIN_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


@dataclass(frozen=True)
class Result:
    label: str
    database: str
    messages: int
    seconds: float
    latencies_s: list[float]
    refused: int  # answers other than 200, and requests that failed
    processed_s: float  # from the first post until every message was processed

    def row(self) -> str:
        p50, p99 = percentile(self.latencies_s, 50), percentile(self.latencies_s, 99)
        return (
            f"| {self.label} | {self.database} | {self.messages} in {self.seconds:g} s | "
            f"{p50:.3f} | {p99:.3f} | {max(self.latencies_s):.3f} | {self.refused} | "
            f"{self.processed_s:.1f} |"
        )


def phone(n: int) -> str:
    return f"+1555{2000000 + n:07d}"


async def prepare(url: str, patients: int) -> None:
    """Active SMS patients, each with a PHQ-9 queued (the service's first tick sends it)."""
    app = build(Settings(database_url=url))
    try:
        async with app.db.transaction() as session:
            rows = [
                Patient(display_name=f"S-{n:04d}", timezone="UTC", channel="sms",
                        address=phone(n), status="active")
                for n in range(patients)
            ]  # fmt: skip
            await Repository(session).add(*rows)
        for row in rows:
            assert row.id is not None
            await app.services.asking.ask(row.id, ["phq9"], ignore_quiet_hours=True)
    finally:
        await app.close()


async def processed(url: str) -> int:
    db = Database(url)
    try:
        async with db.reading() as session:
            done = col(InboundMessage.processed_at).is_not(None)
            statement = select(func.count(col(InboundMessage.id))).where(done)
            return int((await session.exec(statement)).one())
    finally:
        await db.dispose()


async def burst(
    args: argparse.Namespace, port: int, twilio: TwilioStandIn
) -> tuple[list[float], int]:
    """Post every message on schedule, each in its own task; (latencies, refusals)."""
    requests = [
        twilio.inbound_request(f"{PUBLIC}/sms", from_=phone(n % args.patients), to=CLINIC,
                               body="1")
        for n in range(args.messages)
    ]  # fmt: skip
    gap = args.seconds / args.messages
    latencies: list[float] = []
    refused = 0
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=200)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", limits=limits,
                                 timeout=120) as client:  # fmt: skip

        async def post(n: int, start: float) -> None:
            nonlocal refused
            await asyncio.sleep(max(0.0, start + n * gap - time.monotonic()))
            sent = time.monotonic()
            try:
                response = await client.post("/sms", data=requests[n].form,
                                             headers=requests[n].headers)  # fmt: skip
                refused += response.status_code != 200
            except httpx.HTTPError:
                refused += 1
            latencies.append(time.monotonic() - sent)

        start = time.monotonic()
        await asyncio.gather(*(post(n, start) for n in range(args.messages)))
    return latencies, refused


def measure(args: argparse.Namespace, database: str, url: str, tmp: Path) -> Result:
    twilio = TwilioStandIn()
    with serve_in_thread(twilio.app) as stand_in:
        port = free_port()
        config = tmp / "bench.toml"
        config.write_text(
            f'[clinic]\nname = "Bench"\n\n[server]\nport = {port}\npublic_url = "{PUBLIC}"\n\n'
            "[scheduler]\ntick_s = 1\n\n"
            f'[sms]\naccount_sid = "{twilio.account_sid}"\nauth_token = "{twilio.auth_token}"\n'
            f'from_number = "{CLINIC}"\napi_base_url = "{stand_in}"\n'
        )
        asyncio.run(prepare(url, args.patients))
        with service(args.repo, config, url, tmp / "service.log"):
            wait_until(lambda: len(twilio.messages) >= args.patients, "the first questions")
            started = time.monotonic()
            latencies, refused = asyncio.run(burst(args, port, twilio))
            wait_until(lambda: asyncio.run(processed(url)) >= args.messages - refused,
                       "every message processed", timeout_s=900)  # fmt: skip
            processed_s = time.monotonic() - started
    return Result(args.label, database, args.messages, args.seconds, latencies, refused,
                  processed_s)  # fmt: skip


@contextmanager
def service(repo: Path, config: Path, url: str, log: Path) -> Iterator[None]:
    """`checkin run` from `repo`, outbound pacing lifted (tests.fault.launch), until done."""
    env = dict(os.environ, CHECKIN_DATABASE_URL=url, PYTHONUNBUFFERED="1")
    env.pop("CHECKIN_CONFIG", None)
    with log.open("w") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.fault.launch", "--config", str(config), "run"],
            cwd=repo, env=env, stdout=output, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            yield
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def wait_until(done: object, what: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout_s:g} s")
        time.sleep(0.2)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def _admin(sql: str) -> None:
    connection = await asyncpg.connect(POSTGRES, timeout=5)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


@contextmanager
def database_url(database: str, tmp: Path, prefix: str = "bench_sms") -> Iterator[str]:
    """A fresh, migrated database: a SQLite file in `tmp`, or a PostgreSQL database named
    `prefix` and this process's id, dropped after."""
    if database == "sqlite":
        url = f"sqlite:///{tmp / 'bench.db'}"
        upgrade(url)
        yield url
        return
    name = f"{prefix}_{os.getpid()}"
    asyncio.run(_admin(f"CREATE DATABASE {name}"))
    try:
        url = make_url(POSTGRES).set(database=name).render_as_string(hide_password=False)
        upgrade(url)
        yield url
    finally:
        asyncio.run(_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


HEADER = [
    "| run | database | burst | p50 s | p99 s | max s | not 200 | all processed after s |",
    "| --- | --- | --- | --- | --- | --- | --- | --- |",
]


def write_doc(results: list[Result], command: str) -> None:
    """The section, keeping the table rows of other labels from an earlier run."""
    keys = {(r.label, r.database) for r in results}
    kept = []
    if DOC.exists():
        for line in DOC.read_text().splitlines():
            cells = [c.strip() for c in line.strip("|").split("|")]
            if line.startswith("| ") and line not in HEADER and (cells[0], cells[1]) not in keys:
                kept.append(line)
    rows = sorted(kept + [r.row() for r in results], key=lambda row: row.split("|")[2])
    DOC.write_text("\n".join([
        "## SMS burst: how long Twilio waits for /sms (bench/sms_burst.py)",
        "",
        "Signed incoming-message webhooks posted to `checkin run` on loopback at a steady",
        "rate, each without waiting for the last (as Twilio sends them); every patient is",
        "in a PHQ-9 and each message answers an item. Latency is from posting a webhook to",
        "its answer; Twilio gives up after 15 s. `before`: the service of the main branch",
        "before the spool (it recorded and processed each message before answering);",
        "`after`: the spool (the answer waits only for an fsync).",
        "",
        f"Last command: `{command}`",
        "",
        *HEADER,
        *rows,
        "",
    ]))  # fmt: skip


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--patients", type=int, default=100)
    parser.add_argument("--database", nargs="+", choices=("sqlite", "postgresql"),
                        default=["sqlite", "postgresql"])  # fmt: skip
    parser.add_argument("--repo", type=Path, default=ROOT, help="checkout the service runs from")
    parser.add_argument("--label", default="after", help="the row's name in the document")
    parser.add_argument("--no-doc", dest="doc", action="store_false")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    ensure_key()  # the service inherits it: names and messages encrypted, as deployed
    args = parse(argv)
    results = []
    for database in args.database:
        with tempfile.TemporaryDirectory() as directory:
            tmp = Path(directory)
            with database_url(database, tmp) as url:
                result = measure(args, database, url, tmp)
        print(HEADER[0] + "\n" + result.row(), flush=True)
        results.append(result)
    if args.doc:
        given = sys.argv[1:] if argv is None else argv
        write_doc(results, " ".join([".venv/bin/python", "-m", "bench.sms_burst", *given]))


if __name__ == "__main__":
    main()

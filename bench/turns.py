"""Inbound turn throughput, latency and CPU through the real webhook path, beside
python-telegram-bot's bare echo, against the same Telegram stand-in in the same run.

A turn: a patient's answer is POSTed to ``/telegram`` (as Telegram would), and ends when
the stand-in receives the next question (or the closing message). In ``checkin run`` that
is: the Starlette route, PTB's ``Update.de_json``, the inbox row, the conversation step,
answers, scores, alert rules and outbox rows in one transaction, then the next scheduler
tick's delivery through PTB's ``Bot.send_message``. 50 chats answer in a closed loop
(each sends its next answer when its question arrives), for a fixed measuring window.

    python -m bench.turns            # writes docs/perf/turns.md
    BENCH_RUNS=sqlite:1,postgresql:2 python -m bench.turns     # those only, printed
    BENCH_WINDOW_S=30 BENCH_TICK_S=5 python -m bench.turns     # longer window, slower tick
    BENCH_PACE=3-8 BENCH_CHATS=20 BENCH_WINDOW_S=60 python -m bench.turns  # patient pace

``BENCH_PACE=3-8``: each chat waits 3 to 8 s (uniformly at random) after its question
before answering, as a person reading it would, instead of answering at once; a run in
this mode is printed, never written over the section (like ``BENCH_RUNS``).
``BENCH_LIMITS=deployed``: the servers keep Telegram's limits as deployed (30 a second, a
chat 3 at once then 1 a second, shared through PostgreSQL); otherwise they are lifted, as
in the fault suite's launcher, since the echo has none.
"""

from __future__ import annotations

import asyncio
import bisect
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from bench.keys import ensure_key
from bot.bootstrap import build
from bot.config import load_settings
from bot.storage.repository import Repository
from bot.storage.tables import Patient
from tests.standins.server import serve
from tests.standins.telegram import SECRET_TOKEN_HEADER, TelegramStandIn

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "perf" / "turns.md"
CHATS = int(os.environ.get("BENCH_CHATS", "50"))
BUNDLE = ["phq9", "gad7"]  # 17 questions; each chat has CHECKINS of them queued
CHECKINS = 4
TICK_S = float(os.environ.get("BENCH_TICK_S", "0.1"))
WINDOW_S = float(os.environ.get("BENCH_WINDOW_S", "15"))
SECRET = "bench-secret_0123456789"  # noqa: S105 -- the stand-in's, not a real one
PG_ADMIN = os.environ.get("CHECKIN_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
QUESTION = re.compile(r"^\d+/\d+ ", re.MULTILINE)  # a check-in's first is below its intro
COMPLETE = "Thank you, your check-in is complete"  # templates/en/sms/completed.j2
CLK_TCK = os.sysconf("SC_CLK_TCK")
PACE = os.environ.get("BENCH_PACE")  # "3-8": seconds a chat waits before answering
DEPLOYED = os.environ.get("BENCH_LIMITS") == "deployed"  # keep Telegram's limits


def _pace() -> tuple[float, float] | None:
    if not PACE:
        return None
    low, _, high = PACE.partition("-")
    return float(low), float(high or low)


async def _think(pace: tuple[float, float] | None) -> None:
    if pace is not None:
        await asyncio.sleep(random.uniform(*pace))  # noqa: S311 -- a think time, not a secret


@dataclass
class Result:
    label: str
    turns: int = 0
    wall_s: float = 0.0
    cpu_s: float = 0.0
    retried: int = 0  # webhooks answered 5xx (database busy) and sent again, as Telegram does
    latencies: list[float] = field(default_factory=list)
    asked: list[str] = field(default_factory=list)  # per turn: the question it answered
    between: list[float] = field(default_factory=list)  # closing message to the next question
    ended: list[float] = field(default_factory=list)  # per turn: when it ended (epoch s)
    busy: list[int] = field(default_factory=list)  # per turn: Bot API calls in the second before

    def count_busy(self, fake: TelegramStandIn) -> None:
        """For each turn, how many requests the stand-in took in the second before the turn
        ended: thirty means the provider's limit was what held it."""
        arrived = sorted(c.at.timestamp() for c in fake.calls)
        self.busy = [
            bisect.bisect_right(arrived, end) - bisect.bisect_right(arrived, end - 1.0)
            for end in self.ended
        ]

    @property
    def per_s(self) -> float:
        return self.turns / self.wall_s if self.wall_s else 0.0

    @property
    def cpu_ms_per_turn(self) -> float:
        return 1000 * self.cpu_s / self.turns if self.turns else 0.0

    def pct(self, p: int) -> float:
        return 1000 * statistics.quantiles(self.latencies, n=100)[p - 1]


class Inbox:
    """What the stand-in sent to each chat, as it arrives (hooked on sendMessage)."""

    def __init__(self, fake: TelegramStandIn) -> None:
        self.queues: defaultdict[int, asyncio.Queue[str]] = defaultdict(asyncio.Queue)
        original = fake._handlers["sendmessage"]

        async def send_message(params: dict[str, Any]) -> Any:
            message = await original(params)
            self.queues[int(params["chat_id"])].put_nowait(message["text"])
            return message

        fake._handlers["sendmessage"] = send_message

    async def next(self, chat: int, wanted: Callable[[str], bool]) -> str:
        while not wanted(text := await self.queues[chat].get()):
            pass
        return text


def _cpu_s(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLK_TCK


async def _closed_loop(
    result: Result,
    pids: list[int],
    post: Callable[[int, str], Awaitable[None]],
    reply: Callable[[int], Awaitable[str]],
) -> None:
    """Each chat answers, waits for its next question, answers again (after a think time
    with BENCH_PACE), for WINDOW_S."""
    cpu0, start = _cpu_s(pids), time.perf_counter()
    end = start + WINDOW_S
    pace = _pace()

    async def chat(n: int) -> None:
        question = "first"
        while time.perf_counter() < end:
            await _think(pace)
            if time.perf_counter() >= end:
                return
            sent = time.perf_counter()
            await post(n, "1")
            text = await reply(n)
            result.latencies.append(time.perf_counter() - sent)
            result.ended.append(time.time())
            result.asked.append(f"{question} at {sent - start:.1f} s")
            asked = QUESTION.search(text)
            question = asked.group(0).strip() if asked else text.split(" ", 1)[0]
            result.turns += 1
            if text.startswith(COMPLETE):  # the next queued check-in starts on a tick
                if time.perf_counter() >= end:
                    return
                closed = time.perf_counter()
                await reply(n)
                result.between.append(time.perf_counter() - closed)

    await asyncio.gather(*(chat(c) for c in _chats()))
    result.wall_s, result.cpu_s = time.perf_counter() - start, _cpu_s(pids) - cpu0


def _chats() -> range:
    return range(700_001, 700_001 + CHATS)


async def _wait_listening(port: int, process: subprocess.Popen[bytes]) -> None:
    for _ in range(600):
        if process.poll() is not None:
            raise RuntimeError(f"server on port {port} exited with {process.returncode}")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.1)
            continue
        writer.close()
        return
    raise RuntimeError(f"nothing listening on {port}")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@asynccontextmanager
async def _processes(
    commands: list[list[str]], env: dict[str, str], ports: list[int]
) -> AsyncIterator[list[int]]:
    log = tempfile.TemporaryFile()  # noqa: SIM115 -- closed in the finally below
    started = [
        subprocess.Popen(c, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        for c in commands
    ]
    try:
        for port, process in zip(ports, started, strict=True):
            try:
                await _wait_listening(port, process)
            except RuntimeError:
                log.seek(0)
                tail = log.read().decode(errors="replace")[-3000:]
                print(f"--- server output ---\n{tail}", file=sys.stderr)
                raise
        yield [p.pid for p in started]
    finally:
        for process in started:
            process.terminate()
        for process in started:
            process.wait(timeout=30)
        log.close()


async def run_echo(fake: TelegramStandIn, url: str, inbox: Inbox) -> Result:
    port = _free_port()
    command = [sys.executable, "-m", "bench.echo_app", str(port), f"{url}/bot", fake.token]
    result = Result("PTB bare echo")
    async with (
        _processes([command], dict(os.environ), [port]) as pids,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as web,
    ):

        async def post(chat: int, text: str) -> None:
            update = fake.text_update(chat, text)
            (await web.post("/telegram", json=update)).raise_for_status()

        await _closed_loop(result, pids, post, lambda chat: inbox.next(chat, lambda _: True))
    result.count_busy(fake)
    return result


async def run_checkin(
    fake: TelegramStandIn, url: str, inbox: Inbox, dialect: str, workers: int
) -> Result:
    async with _database(dialect) as database_url:
        env = dict(os.environ, CHECKIN_DATABASE_URL=database_url, PTB_TIMEDELTA="true")
        env.pop("CHECKIN_CONFIG", None)
        upgrade = [sys.executable, "-m", "bot", "db", "upgrade"]
        subprocess.run(upgrade, cwd=ROOT, env=env, check=True, capture_output=True)
        ports = [_free_port() for _ in range(workers)]
        configs = [_config(url, fake.token, port) for port in ports]
        await _enrol(configs[0], database_url)
        launcher = "bot" if DEPLOYED else "tests.fault.launch"  # (the latter lifts pacing)
        commands = [[sys.executable, "-m", launcher, "--config", str(c), "run"] for c in configs]
        result = Result(f"checkin run, {dialect}, {workers} worker{'s' * (workers > 1)}")
        async with _processes(commands, env, ports) as pids, httpx.AsyncClient(timeout=30) as web:

            async def post(chat: int, text: str) -> None:
                port = ports[chat % workers]  # a load balancer with sticky chats
                update = fake.text_update(chat, text)
                while True:
                    response = await web.post(
                        f"http://127.0.0.1:{port}/telegram",
                        json=update,
                        headers={SECRET_TOKEN_HEADER: SECRET},
                    )
                    if response.status_code < 500:
                        break
                    result.retried += 1
                    await asyncio.sleep(0.1)
                response.raise_for_status()

            def is_turn_end(text: str) -> bool:
                # the crisis message after item 9 is not a turn's end: the next question is
                return bool(QUESTION.search(text)) or text.startswith(COMPLETE)

            await asyncio.gather(*(inbox.next(c, is_turn_end) for c in _chats()))  # first question
            await _closed_loop(result, pids, post, lambda chat: inbox.next(chat, is_turn_end))
            result.count_busy(fake)
        for config in configs:
            config.unlink()
    return result


def _config(url: str, token: str, port: int) -> Path:
    path = Path(tempfile.mkstemp(suffix=".toml")[1])
    path.write_text(
        f'[clinic]\nname = "Bench"\n\n[server]\nport = {port}\npublic_url = "https://bench.example"\n\n'
        f"[scheduler]\ntick_s = {TICK_S}\n\n"
        f'[telegram]\ntoken = "{token}"\nmode = "webhook"\nwebhook_secret = "{SECRET}"\n'
        f'api_base_url = "{url}/bot"\n'
    )
    return path


async def _enrol(config: Path, database_url: str) -> None:
    os.environ["CHECKIN_DATABASE_URL"] = database_url
    try:
        app = build(load_settings(config))
    finally:
        del os.environ["CHECKIN_DATABASE_URL"]
    try:
        async with app.db.transaction() as session:
            repo = Repository(session)
            for chat in _chats():
                patient = Patient(
                    display_name=f"B-{chat}", timezone="UTC", channel="telegram",
                    address=str(chat), status="active",
                )  # fmt: skip
                await repo.add(patient)
        async with app.db.transaction() as session:
            from sqlmodel import select

            ids = list((await session.exec(select(Patient.id))).all())
        for patient_id in ids:
            assert patient_id is not None
            for _ in range(CHECKINS):
                await app.services.asking.ask(patient_id, BUNDLE, ignore_quiet_hours=True)
    finally:
        await app.close()


@asynccontextmanager
async def _database(dialect: str) -> AsyncIterator[str]:
    if dialect == "sqlite":
        with tempfile.TemporaryDirectory() as directory:
            yield f"sqlite:///{directory}/bench.db"
        return
    name = f"bench_{uuid.uuid4().hex[:12]}"
    admin = PG_ADMIN.replace("postgresql+asyncpg://", "postgresql://")
    connection = await asyncpg.connect(admin)
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
        yield admin.rsplit("/", 1)[0] + f"/{name}"
    finally:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await connection.close()


async def measure(runs: list[tuple[str, int]]) -> list[Result]:
    fake = TelegramStandIn()
    inbox = Inbox(fake)
    results = []
    async with serve(fake.app) as url:
        results.append(await run_echo(fake, url, inbox))
        for dialect, workers in runs:
            results.append(await run_checkin(fake, url, inbox, dialect, workers))
            print(_row(results[-1], results[0]), flush=True)
    return results


def _row(r: Result, echo: Result) -> str:
    ratio = (
        f"{r.per_s / echo.per_s:.2f}x | {r.pct(99) / echo.pct(99):.1f}x | "
        f"{r.cpu_ms_per_turn / echo.cpu_ms_per_turn:.2f}x"
        if r is not echo
        else "1 | 1 | 1"
    )
    return (
        f"| {r.label} | {r.turns} | {r.per_s:.0f} | {r.pct(50):.0f} | {r.pct(99):.0f} | "
        f"{r.cpu_ms_per_turn:.1f} | {r.retried} | {ratio} |"
    )


def _between(results: list[Result]) -> str:
    """How long chats that finished a check-in waited for the next one (a tick or two; a
    long wait would make the row measure waiting, not turns)."""
    waits = [f"{r.label}: {len(r.between)}, longest {max(r.between):.2f} s"
             for r in results if r.between]  # fmt: skip
    if not waits:
        return "No chat finished a check-in inside its window."
    return (
        "Chats that finished a check-in inside the window waited for the next one (started by "
        "the scheduler tick, not counted as a turn): " + "; ".join(waits) + "."
    )


def _slowest(results: list[Result], count: int = 5) -> str:
    """Each configuration's slowest turns, with the question answered and when in the
    window: what the p99 is made of (a tick, a crisis turn, a chat's allowance)."""
    lines = []
    for r in results:
        busy = r.busy or [0] * len(r.latencies)
        turns = zip(r.latencies, r.asked, busy, strict=True)
        worst = sorted(turns, reverse=True)[:count]
        shown = ", ".join(f"{1000 * s:.0f} ms ({asked}, {n}/s)" for s, asked, n in worst)
        lines.append(f"- {r.label}: {shown}")
    head = "Slowest turns (latency, the question answered, when in the window, Bot API requests"
    head += " in the second before it ended):\n"
    return head + "\n".join(lines)


LIMITS = (
    "Telegram's limits as deployed (30 a second, a chat 3 at once then 1 a second)"
    if DEPLOYED
    else "provider pacing lifted (the echo has none)"
)


def report(results: list[Result], command: str) -> str:
    echo = results[0]
    rows = "\n".join(_row(r, echo) for r in results)
    return f"""## Inbound turns (bench/turns.py)

`{command}` — {CHATS} chats in a closed loop for {WINDOW_S:.0f} s per configuration; scheduler
tick {TICK_S} s; {LIMITS}. Latency is from the webhook POST to the
stand-in receiving the next question. Every answer is "1", so item 9 is endorsed once a
check-in: that turn also sends the crisis message and raises an alert. CPU is user +
system time of the server processes (not the load generator or the stand-in) over the
window, divided by the turns. `checkin run` is one process (web server and scheduler
together); "N workers" are N such processes on their own ports sharing the database, the
load generator sending each chat to the same one. Everything (load generator, stand-in,
servers, database) shares the machine's cores.

| configuration | turns | turns/s | p50 ms | p99 ms | CPU ms/turn | 5xx resent | turns/s vs echo |\
 p99 vs echo | CPU vs echo |
| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |
{rows}

{_between(results)}

{_slowest(results)}

Targets (issue 9): CPU per turn at most 1.25x the echo's, throughput at least 0.8x, p99 at
most 1.5x; two PostgreSQL workers faster than one.
"""


def main() -> None:
    ensure_key()  # names and messages are encrypted at rest, as deployed
    # one worker only on SQLite: `checkin run` refuses a second scheduler on the same file
    # (SQLite has one writer; several workers are what PostgreSQL is for)
    runs = [("sqlite", 1), ("postgresql", 1), ("postgresql", 2), ("postgresql", 4)]
    only = os.environ.get("BENCH_RUNS")  # e.g. "sqlite:1,postgresql:2"
    if only:
        runs = [(d, int(w)) for d, w in (part.split(":") for part in only.split(","))]
    results = asyncio.run(measure(runs))
    command = "python -m bench.turns"
    if only or PACE:  # a partial run is printed, never written over the whole run's section
        limits = os.environ.get("BENCH_LIMITS")
        print(
            report(results, f"BENCH_RUNS={only} BENCH_PACE={PACE} BENCH_LIMITS={limits} {command}")
        )
        return
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(report(results, command))
    print(OUT.read_text())


if __name__ == "__main__":
    os.environ.setdefault("PTB_TIMEDELTA", "true")
    main()

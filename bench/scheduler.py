"""The scheduler at scale: a wave of due check-ins, send rate under a provider limit, and
worker memory against the number of enrolled patients.

Each run uses a fresh PostgreSQL database, real `checkin worker` processes (APScheduler
tick, SKIP LOCKED claims, the real python-telegram-bot client) and the Telegram Bot API
stand-in of tests/standins, served in this process.

    .venv/bin/python -m bench.scheduler [--wave 10000] [--workers 2] [--idle 1000,10000,100000]
        [--rate 30 --rate-patients 300] [--until delivered|planned] [--planned 100000]
        [--no-doc]

* wave: `--wave` patients enrolled a moment ago on a one-rule protocol (PHQ-2 at
  enrollment), so all are due in the same minute. Two times from the workers' start: until
  the outbox holds every patient's opening messages ("planned into outbox": planned,
  started and queued, polled every 0.2 s), and until every patient has received them (the
  whole wave); and each worker's peak memory (VmHWM). `--until planned` stops at the
  first (then duplicates and missed are counted in the outbox, not at the provider).
* planned: `--planned` patients (default 100,000) the same way, with the provider limit
  of `--rate` as deployed, timed until the outbox holds every opening message.
* rate: the same with `[telegram] rate_per_s` set to `--rate`: the achieved send rate
  over the sending phase as a fraction of the limit, and the 429 answers received.
* idle: N patients already planned (nothing due); one worker ticks for `--idle-s`
  seconds; its peak memory. Flat in N means no per-patient state in the process.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shlex
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from tempfile import TemporaryDirectory

import asyncpg

from bench.keys import ensure_key
from bot.storage.crypto import KeyRing

ROOT = Path(__file__).resolve().parent.parent
ADMIN = os.environ.get("CHECKIN_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
FIRST_CHAT = 700_000
PER_PATIENT = 1  # messages: the PHQ-2 opens with its introduction above its first question
CONFIG = """
[clinic]
quiet_hours_start_local = "00:00"
quiet_hours_end_local = "00:00"
[scheduler]
tick_s = 0.5
batch = 500
[telegram]
token = "{token}"
api_base_url = "{url}/bot"
bot_username = "checkin_bench_bot"
rate_per_s = {rate}
[protocols.wave.rules.baseline]
instruments = ["phq2"]
from_enrollment = "0h"
expires_after = "1d"
"""


@dataclass
class Run:
    patients: int
    workers: int
    seconds: float
    messages: int
    duplicates: int
    missed: int
    peak_mb: list[float]
    too_many: int = 0
    send_rate: float = 0.0
    planned_s: float | None = None  # until the outbox held every opening message


def _ring() -> KeyRing:
    return ensure_key()


async def _database() -> str:
    name = f"bench_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(ADMIN)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    base = ADMIN.rsplit("/", 1)[0]
    return f"{base}/{name}"


async def _drop(url: str) -> None:
    admin = await asyncpg.connect(ADMIN)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
    finally:
        await admin.close()


def _peak_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def run(
    count: int,
    workers: int,
    *,
    rate: float,
    idle_s: float | None = None,
    until: str = "delivered",
) -> Run:
    """One wave (or, with `idle_s`, an idle period) against a fresh database."""
    from tests.standins.server import serve_in_thread
    from tests.standins.telegram import TelegramStandIn
    from tests.standins.workers import seed_patients, start_worker, stop

    fake = TelegramStandIn()
    fake.limit_per_s = rate if rate < 1000 else None  # the provider enforces its limit
    url = asyncio.run(_database())
    try:
        with serve_in_thread(fake.app) as base, TemporaryDirectory() as tmp:
            config = Path(tmp) / "config.toml"
            config.write_text(CONFIG.format(token=fake.token, url=base, rate=rate))
            env = {k: v for k, v in os.environ.items() if k != "CHECKIN_CONFIG"}
            subprocess.run(
                [sys.executable, "-m", "bot", "--config", str(config), "db", "upgrade"],
                env=env | {"CHECKIN_DATABASE_URL": url}, cwd=ROOT, check=True, capture_output=True,
            )  # fmt: skip
            idle = idle_s is not None
            far = datetime.now(UTC) + timedelta(days=365) if idle else None
            seeding = time.monotonic()
            asyncio.run(seed_patients(url, count, FIRST_CHAT, planned_until=far))
            print(f"  seeded {count} patients in {time.monotonic() - seeding:.1f}s",
                  file=sys.stderr, flush=True)  # fmt: skip
            log = Path(tmp) / "workers.log"
            started = time.monotonic()
            processes = [start_worker(config, url, log) for _ in range(workers)]
            outbox = _OutboxWatch(url, PER_PATIENT * count, started)
            try:
                if idle:
                    time.sleep(idle_s or 0)
                elif until == "planned":
                    outbox.wait()
                else:
                    _wait_for_wave(fake, count, started)
                peaks = [_peak_mb(p.pid) for p in processes]
            finally:
                stop(processes)
                outbox.stop()
            elapsed = time.monotonic() - started
            if until == "planned" and not idle:
                found = _from_outbox(url, count, workers, elapsed, peaks)
            else:
                found = _tally(fake, count, workers, elapsed, peaks)
            found.planned_s = None if idle else outbox.seconds
            return found
    finally:
        asyncio.run(_drop(url))


class _OutboxWatch:
    """A thread counting the outbox's rows every 0.2 s until it holds `target`; `seconds`
    is then the time from `started` (None if it never did)."""

    def __init__(self, url: str, target: int, started: float) -> None:
        self.url, self.target, self.started = url, target, started
        self.seconds: float | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._watch()), daemon=True)
        self._thread.start()

    async def _watch(self) -> None:
        from tests.standins.workers import dsn

        connection = await asyncpg.connect(dsn(self.url))
        try:
            while not self._done.is_set():
                rows = await connection.fetchval("SELECT count(*) FROM outbound_message")
                if rows >= self.target:
                    self.seconds = time.monotonic() - self.started
                    return
                await asyncio.sleep(0.2)
        finally:
            await connection.close()

    def wait(self, timeout_s: float = 3600) -> None:
        self._thread.join(timeout_s)
        if self.seconds is None:
            raise TimeoutError(f"the outbox did not fill in {timeout_s:.0f}s")

    def stop(self) -> None:
        self._done.set()
        self._thread.join(5)


def _wait_for_wave(fake: object, count: int, started: float, timeout_s: float = 3600) -> None:
    calls = fake.calls  # type: ignore[attr-defined]
    last_report = started
    while time.monotonic() - started < timeout_s:
        time.sleep(2.0)  # cheap checks, rarely: the stand-in shares this process
        if len(calls) >= PER_PATIENT * count:
            sends = [c for c in calls if c.method.lower() == "sendmessage" and c.fault is None]
            chats = Counter(str(c.params.get("chat_id")) for c in sends)
            if len(chats) >= count and all(n >= PER_PATIENT for n in chats.values()):
                return
        if time.monotonic() - last_report > 10:
            last_report = time.monotonic()
            print(f"  ... {len(calls)} requests for {count} patients", file=sys.stderr, flush=True)
    raise TimeoutError(f"the wave of {count} did not finish in {timeout_s:.0f}s")


def _from_outbox(url: str, count: int, workers: int, elapsed: float, peaks: list[float]) -> Run:
    """The wave's figures from the outbox (nothing counted at the provider)."""
    from tests.standins.workers import outbox_per_patient

    counts = list(asyncio.run(outbox_per_patient(url)).values())
    duplicates = sum(max(0, n - PER_PATIENT) for n in counts)
    missed = count - sum(1 for n in counts if n >= PER_PATIENT)
    return Run(count, workers, elapsed, sum(counts), duplicates, missed, peaks)


def _tally(fake: object, count: int, workers: int, elapsed: float, peaks: list[float]) -> Run:
    every = fake.calls_to("sendMessage")  # type: ignore[attr-defined]
    calls = [c for c in every if c.fault is None]  # what the provider accepted
    chats = Counter(str(c.params.get("chat_id")) for c in calls)
    expected = [str(FIRST_CHAT + n) for n in range(count)]
    duplicates = sum(max(0, chats[c] - PER_PATIENT) for c in expected)
    missed = sum(1 for c in expected if chats[c] < PER_PATIENT)
    too_many = sum(1 for c in every if c.fault is not None and c.fault.status == 429)
    times = sorted(c.at for c in calls)
    rate = 0.0
    if len(times) > 20:  # the sending phase: first to last message, the ends trimmed
        lo, hi = times[len(times) // 20], times[-len(times) // 20]
        span = (hi - lo).total_seconds()
        rate = (len(times) * 0.9) / span if span > 0 else 0.0
    return Run(count, workers, elapsed, len(calls), duplicates, missed, peaks, too_many, rate)


def _machine() -> str:
    model = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")),
        platform.processor(),
    )  # fmt: skip
    memory = next(
        line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal")
    )  # fmt: skip
    gib = int(memory) // 1024 // 1024
    return f"{os.cpu_count()} CPUs ({model}), {gib} GiB, Python {platform.python_version()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wave", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--idle", default="1000,10000,100000")
    parser.add_argument("--idle-s", type=float, default=20.0)
    parser.add_argument("--rate", type=float, default=30.0)
    parser.add_argument("--rate-patients", type=int, default=300)
    parser.add_argument(
        "--until",
        choices=("delivered", "planned"),
        default="delivered",
        help="end the wave when every message is delivered, or once the outbox holds them",
    )
    parser.add_argument(
        "--planned",
        type=int,
        default=100_000,
        help="a wave of this many, sent at --rate as deployed, timed until the outbox holds "
        "every opening message (0: skip)",
    )
    parser.add_argument("--no-doc", action="store_true")
    args = parser.parse_args()
    _ring()
    lines = [
        "## Scheduler: a wave, the send rate, memory",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d} on {_machine()}, PostgreSQL 127.0.0.1, with",
        f"`{shlex.join(['.venv/bin/python', '-m', 'bench.scheduler', *sys.argv[1:]])}`.",
        "Workers are `checkin worker` processes; the Telegram stand-in runs in the bench",
        "process. Each patient's check-in is a PHQ-2, opened with one message (introduction",
        "above the first question; two before 2026-12-07).",
        "",
        "| what | patients | workers | planned into outbox s | seconds | messages | duplicates "
        "| missed | peak MB per worker | 429s | send rate |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: |",
    ]  # fmt: skip

    def row(what: str, r: Run, rate: str = "", wave: bool = True) -> None:
        peaks = ", ".join(f"{p:.0f}" for p in r.peak_mb)
        counts = f"{r.duplicates} | {r.missed}" if wave else "- | -"
        planned = "-" if r.planned_s is None else f"{r.planned_s:.1f}"
        line = (f"| {what} | {r.patients} | {r.workers} | {planned} | {r.seconds:.1f} | "
                f"{r.messages} | {counts} | {peaks} | {r.too_many} | {rate} |")  # fmt: skip
        print(line, flush=True)
        lines.append(line)

    if args.wave:
        r = run(args.wave, args.workers, rate=100_000, until=args.until)
        if args.until == "planned":
            row("wave until planned, no send limit", r, "-")
        else:
            row("wave, no send limit", r, f"{r.send_rate:.0f}/s")
    if args.planned:
        r = run(args.planned, args.workers, rate=args.rate, until="planned")
        row(f"wave until planned, limit {args.rate:g}/s", r, "-")
    if args.rate_patients:
        r = run(args.rate_patients, 1, rate=args.rate)
        row(
            f"wave, limit {args.rate:g}/s",
            r,
            f"{r.send_rate:.1f}/s = {r.send_rate / args.rate:.1%}",
        )
    for size in [int(s) for s in args.idle.split(",") if s]:
        r = run(size, 1, rate=100_000, idle_s=args.idle_s)
        row(f"idle {args.idle_s:g} s, all planned", r, wave=False)
    if not args.no_doc:
        _write_section("\n".join(lines) + "\n")


def _write_section(text: str) -> None:
    """This bench's section (docs/perf/scheduler.md); `python -m bench.run_all --stitch`
    puts it into docs/PERFORMANCE.md."""
    path = ROOT / "docs" / "perf" / "scheduler.md"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)


if __name__ == "__main__":
    main()

"""Duplicates per 1,000 sends when the provider answers after the client has given up.

A message whose request left but whose answer came too late may have arrived (Telegram has
no idempotency key), and delivery is at least once: it is sent again. How often depends on
the client's read timeout and on how long the outbox waits before that retry. This sends
``--messages`` messages (one per chat) through the real python-telegram-bot client to the
Bot API stand-in on a fresh SQLite file; the provider takes each chat's first
``SLOW_CALLS`` requests but answers them late (a slow spell), then answers at once. It
counts the sendMessage calls the stand-in received beyond one per message.

Times are scaled down ten times so a run takes seconds, not minutes: the "15 s provider
against a 10 s client timeout with a 2 s first backoff" of issue 23 is a 1.5 s provider, a
1.0 s timeout and a 0.2 s backoff here. Configurations:

* before: the old client timeout (10 s) and backoff (2 s, nothing longer after a timeout)
* after: ``[telegram] timeout_s = 30`` and a 20 s pause before a timed-out send goes again

    .venv/bin/python -m bench.duplicates [--messages 200] [--kill-on sqlite,postgresql]
        [--kill-messages 300] [--no-doc]

The crash case (a `checkin worker` killed with SIGKILL mid-send, replaced at once) is
``bench/sigkill_sends.py``, run here on each database of ``--kill-on`` (both by default;
``--kill-on ""`` skips it): its window is the send lease (``[scheduler] send_lease_s``,
30 s) on PostgreSQL, and the start-up of the replacement on SQLite.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from sqlmodel import func, select

from bench.keys import ensure_key
from bench.sigkill_sends import PROVIDER_S, run_kill
from bot.app.outbox.delivery import Deliverer
from bot.app.outbox.sending import RetryPolicy
from bot.bootstrap import utc_now
from bot.channels.telegram import TelegramChannel
from bot.storage.database import Database
from bot.storage.migrate import upgrade
from bot.storage.repository import Repository
from bot.storage.tables import OutboundMessage
from tests.standins.server import Fault, serve
from tests.standins.telegram import TelegramStandIn

SCALE = 10  # real seconds per bench second
FIRST_CHAT = 300_000
SLOW_CALLS = 2  # per chat: the slow spell
ROUNDS = 200  # drains at most (a guard: each case needs a handful)
DOC = Path(__file__).resolve().parent.parent / "docs" / "perf" / "duplicates.md"


@dataclass(frozen=True)
class Case:
    name: str
    provider_s: float  # how late every answer comes (real seconds)
    timeout_s: float  # the client's read timeout (real seconds)
    base_s: float  # the first backoff
    maybe_sent_s: float  # the least pause after a timed-out send


CASES = (
    Case("before: 10 s timeout, 2 s backoff", 15, 10, 2, 0),
    Case("after: 30 s timeout, 20 s after a timeout", 15, 30, 2, 20),
)


async def run_case(case: Case, messages: int, workdir: Path) -> tuple[int, float]:
    """The sendMessage calls beyond one per message, and the seconds until all were sent."""
    url = f"sqlite+aiosqlite:///{workdir / (str(abs(hash(case.name))) + '.db')}"
    await asyncio.to_thread(upgrade, url)
    db = Database(url)
    now = utc_now()
    async with db.transaction() as session:
        await Repository(session).enqueue([
            OutboundMessage(
                channel="telegram", recipient_kind="patient", recipient_id=n,
                address=str(FIRST_CHAT + n), body=f"question {n}", payload={},
                idempotency_key=f"bench:{n}", next_attempt_at=now,
            )
            for n in range(messages)
        ])  # fmt: skip
    stand_in = TelegramStandIn()
    for n in range(messages):
        slow = Fault.slow(case.provider_s / SCALE)
        stand_in.fail(slow, method="sendMessage", chat_id=FIRST_CHAT + n, times=SLOW_CALLS)
    policy = RetryPolicy(base_s=case.base_s / SCALE, maybe_sent_s=case.maybe_sent_s / SCALE)
    started = time.monotonic()
    async with serve(stand_in.app) as base:
        channel = TelegramChannel(
            stand_in.token, api_base_url=f"{base}/bot", timeout_s=case.timeout_s / SCALE
        )
        deliverer = Deliverer(
            db, {"telegram": channel}, utc_now, policy,
            lease=timedelta(seconds=30 / SCALE), concurrency=messages,
        )  # fmt: skip
        try:
            for _ in range(ROUNDS):
                if not await _unsent(db):
                    break
                await deliverer.drain()
                await asyncio.sleep(0.05)
        finally:
            await channel.close()
    elapsed = time.monotonic() - started
    await db.dispose()
    return len(stand_in.calls_to("sendMessage")) - messages, elapsed


async def _unsent(db: Database) -> int:
    async with db.transaction() as session:
        statement = select(func.count()).where(OutboundMessage.status != "sent")
        return int((await session.exec(statement)).one())


async def main_async(messages: int) -> list[str]:
    ensure_key()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for case in CASES:
            extra, elapsed = await run_case(case, messages, Path(tmp))
            per_1000 = extra * 1000 / messages
            rows.append(
                f"| {case.name} | {case.provider_s:g} s | {per_1000:.0f} | {elapsed:.1f} s |"
            )
            print(rows[-1], flush=True)
    return rows


def kill_rows(dialects: list[str], messages: int) -> list[str]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for dialect in dialects:
            k = run_kill(dialect, messages, Path(tmp))
            times = (k.first_send_s, k.held_first_s, k.held_sent_s, k.wave_s)
            rows.append(
                f"| {k.dialect} | {k.messages} | {k.held} | {k.duplicates} | {k.per_1000:.0f} | "
                f"{k.missed} | " + " | ".join(f"{t:.1f} s" for t in times) + " |"
            )
            print(rows[-1], flush=True)
    return rows


def write_doc(rows: list[str], messages: int, kills: list[str], kill_messages: int) -> None:
    DOC.write_text(
        "## Duplicates under provider faults (bench/duplicates.py)\n\n"
        f"{messages} messages, one per chat; the Bot API takes each chat's first "
        f"{SLOW_CALLS} requests but answers them late, then answers at once; the real "
        "python-telegram-bot client against the stand-in; times scaled down ten times "
        "and shown here in real seconds. Duplicates are sendMessage calls the provider "
        "received beyond one per message, per 1,000 messages.\n\n"
        "| configuration | provider answers after | duplicates per 1,000 | bench run (unscaled) |\n"
        "| --- | --- | --- | --- |\n" + "\n".join(rows) + "\n" + _kill_section(kills, kill_messages)
    )


def _kill_section(kills: list[str], messages: int) -> str:
    if not kills:
        return ""
    return (
        "\n### A worker killed with SIGKILL mid-send (bench/sigkill_sends.py)\n\n"
        f"A real `checkin worker` sends a wave of {messages} queued messages (one per chat) "
        f"to the Bot API stand-in, which answers every sendMessage after {PROVIDER_S:g} s; "
        "once the stand-in has received a third of the wave the worker is killed with "
        "SIGKILL and a replacement starts at once. Shipped settings otherwise "
        "(`tick_s = 5`, `send_lease_s = 30`, 30 messages a second), real seconds. *Held*: "
        "the messages the killed worker was sending (claimed under its lease). Times are "
        "from the replacement's start (a Python process starting, a second or two of it): "
        "to its first send; to the first held message sent again (the wait); to every "
        "held message sent (the wait plus sending them). The duplicates are the sends "
        "in flight at the kill (the provider had them, the database had not recorded "
        "them): at most twice a worker's 16 concurrent sends (16 at the provider, 16 "
        "answered and waiting for their commit), whatever the wave's size, so the "
        "rate per 1,000 is that of one kill in a wave of this size.\n\n"
        "| database | messages | held at the kill | duplicates | per 1,000 | missed "
        "| first send | first held sent | all held sent | whole wave |\n"
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n" + "\n".join(kills) + "\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--kill-on", default="sqlite,postgresql", help="'' skips SIGKILL")
    parser.add_argument("--kill-messages", type=int, default=300)
    parser.add_argument("--no-doc", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("PTB_TIMEDELTA", "true")  # as bootstrap does (RetryAfter durations)
    rows = asyncio.run(main_async(args.messages))
    dialects = [d for d in args.kill_on.split(",") if d]
    kills = kill_rows(dialects, args.kill_messages)
    if not args.no_doc:
        write_doc(rows, args.messages, kills, args.kill_messages)


if __name__ == "__main__":
    main()

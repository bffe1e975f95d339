"""A wave of check-ins sent by several `checkin worker` processes on one PostgreSQL
database to a Telegram stand-in that enforces Telegram's limits (tests/standins/limits.py).
Used by tests/test_send_limits_workers.py and bench/limits.py.

Every accepted send's arrival is recorded at the stand-in; the result says how many were
refused with 429, the most that arrived in any sliding second, and the rate over the
sending phase (first to last arrival) against the limit.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlmodel import col, select
from starlette.types import ASGIApp, Receive, Scope, Send

from bot.app.conversations.messages import outbox_rows
from bot.config import Clinic
from bot.domain import events as ev
from bot.instruments import load_catalog
from bot.rendering.renderer import Renderer
from bot.storage.database import Database
from bot.storage.repository import Repository
from bot.storage.tables import Patient
from tests.standins.limits import ProviderLimits, most_in_any_second
from tests.standins.server import serve_in_thread
from tests.standins.telegram import TelegramStandIn
from tests.standins.workers import ROOT, outbox_per_patient, seed_patients, start_worker, stop

CONFIG = """
[clinic]
quiet_hours = "none"   # the wave must not depend on the hour

[scheduler]
tick_s = 0.5
lease_s = 10
send_lease_s = 10
batch = 500

[telegram]
token = "{token}"
api_base_url = "{url}/w{worker}/bot"
bot_username = "checkin_test_bot"
rate_per_s = {rate}
per_chat_burst = {burst}
per_chat_rate_per_s = {per_chat}

[protocols.wave.rules.baseline]
instruments = ["phq2"]
from_enrollment = "0h"
expires_after = "1d"
"""
FIRST_CHAT = 700_000
# A PHQ-2 opens with one message (its introduction above its first question); a reminder
# of that question is queued for each patient before the wave starts, so that every chat
# gets two messages and its own limit binds, as the opening's two messages used to.
MESSAGES_PER_PATIENT = 2


@dataclass(frozen=True)
class WaveResult:
    workers: int
    patients: int
    messages: int  # accepted by the stand-in
    refused: int  # answered 429
    most_in_a_second: int
    rate_per_s: float  # first arrival to last
    steady_rate_per_s: float  # the ends trimmed: the 5th to the 95th percentile arrival
    limit_per_s: int
    sent_by_worker: tuple[int, ...]  # sendMessage requests each worker made
    missed: int  # patients without both messages
    duplicates: int  # messages beyond two per patient

    @property
    def used(self) -> float:
        """The fraction of the limit used while sending."""
        return self.rate_per_s / self.limit_per_s


def run_wave(
    url: str,
    workdir: Path,
    *,
    workers: int,
    patients: int,
    rate: int = 30,
    burst: int = 3,
    per_chat_rate_per_s: float = 1.0,
    timeout_s: float = 600.0,
) -> WaveResult:
    """Migrate `url`, enrol `patients` due now, run `workers` workers until every message
    is accepted, then stop them."""
    fake = TelegramStandIn()
    fake.limits = ProviderLimits(rate, burst, per_chat_rate_per_s)
    by_worker = ByWorker(fake.app, workers)
    with serve_in_thread(by_worker) as base:
        configs = []
        for n in range(workers):
            configs.append(workdir / f"config{n}.toml")
            limits = {"rate": rate, "burst": burst, "per_chat": per_chat_rate_per_s}
            text = CONFIG.format(token=fake.token, url=base, worker=n, **limits)
            configs[-1].write_text(text)
        _migrate(configs[0], url)
        asyncio.run(seed_patients(url, patients, FIRST_CHAT))
        asyncio.run(_queue_reminders(url))
        logs = [workdir / f"worker{n}.log" for n in range(workers)]
        processes = [start_worker(c, url, log) for c, log in zip(configs, logs, strict=True)]
        try:
            _wait_for(fake, patients * MESSAGES_PER_PATIENT, timeout_s, logs)
            time.sleep(1.0)  # a late duplicate would arrive now
        finally:
            stop(processes)
        counts = asyncio.run(outbox_per_patient(url))
    return _result(fake.limits, workers, patients, rate, tuple(by_worker.sends), counts)


async def _queue_reminders(url: str) -> None:
    """A reminder for every patient, queued as routine outreach (the wave's opening then
    comes after it, in its chat)."""
    renderer = Renderer(load_catalog(), Clinic(name="Wave"))
    async with Database(url) as db:
        await queue_reminders(db, renderer, datetime.now(UTC))


async def queue_reminders(
    db: Database, renderer: Renderer, at: datetime, patient_ids: Sequence[int] | None = None
) -> None:
    """The PHQ-2's first question asked again as a reminder, for each of `patient_ids`
    (None: every patient), queued behind whatever their chat already has: two messages
    a chat, so that their order can show. Also used by tests/test_delivery.py."""
    reminder = [ev.Ask("phq2.q1", 1, 2, reminder=True)]
    query = select(Patient).order_by(col(Patient.id))
    if patient_ids is not None:
        query = query.where(col(Patient.id).in_(patient_ids))
    async with db.transaction() as session:
        repo = Repository(session)
        for patient in (await session.exec(query)).all():
            await repo.enqueue(outbox_rows(renderer, patient, reminder, f"r{patient.id}", at))


class ByWorker:
    """The stand-in under ``/w<n>/``, one prefix per worker: counts each one's sendMessage
    requests, then hands the request on without the prefix."""

    def __init__(self, app: ASGIApp, workers: int) -> None:
        self.app = app
        self.sends = [0] * workers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            prefix, _, rest = scope["path"].lstrip("/").partition("/")
            worker = int(prefix[1:])
            if rest.lower().endswith("/sendmessage"):
                self.sends[worker] += 1
            scope = dict(scope, path="/" + rest, raw_path=("/" + rest).encode())
        await self.app(scope, receive, send)


def _migrate(config: Path, url: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bot", "--config", str(config), "db", "upgrade"],
        env=dict(os.environ, CHECKIN_DATABASE_URL=url), cwd=ROOT,
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        raise RuntimeError(f"db upgrade failed: {result.stderr[-2000:]}")


def _wait_for(fake: TelegramStandIn, expected: int, timeout_s: float, logs: list[Path]) -> None:
    assert fake.limits is not None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if len(fake.limits.accepted) >= expected:
            return
        time.sleep(0.5)
    tails = "\n".join(log.read_text(errors="replace")[-1500:] for log in logs if log.exists())
    raise AssertionError(f"{len(fake.limits.accepted)} of {expected} sent; logs:\n{tails}")


def _result(
    limits: ProviderLimits,
    workers: int,
    patients: int,
    rate: int,
    sends: tuple[int, ...],
    counts: Counter[int],
) -> WaveResult:
    times = sorted(at for at, _ in limits.accepted)
    span = times[-1] - times[0] if len(times) > 1 else 0.0
    per_chat = Counter(chat for _, chat in limits.accepted)
    chats = [str(FIRST_CHAT + n) for n in range(patients)]
    return WaveResult(
        workers=workers,
        patients=patients,
        messages=len(times),
        refused=limits.refused,
        most_in_a_second=most_in_any_second(times),
        rate_per_s=(len(times) - 1) / span if span > 0 else 0.0,
        steady_rate_per_s=_steady(times),
        limit_per_s=rate,
        sent_by_worker=sends,
        missed=sum(1 for c in chats if per_chat[c] < MESSAGES_PER_PATIENT)
        + max(0, patients - len(counts)),
        duplicates=sum(max(0, per_chat[c] - MESSAGES_PER_PATIENT) for c in chats),
    )


def _steady(times: list[float]) -> float:
    """The rate between the 5th and the 95th percentile arrival (as bench/scheduler.py
    measures it): the ramp while the first claims are made and the last few chats are
    left out."""
    if len(times) <= 20:
        return 0.0
    lo, hi = len(times) // 20, len(times) - 1 - len(times) // 20
    span = times[hi] - times[lo]
    return (hi - lo) / span if span > 0 else 0.0

"""Many patients and `checkin` processes, for the worker and SIGKILL tests and the benches.

Patients are written straight into a migrated PostgreSQL database with COPY (encrypted
under the installed key ring, with their lookup hash), all on the protocol `protocol`
and enrolled a moment ago; workers are real `checkin worker` (or `checkin run`)
processes, which inherit the key from the environment. Every test and bench that starts,
kills or stops one does it through `start_worker`, `Process` and `stop` here.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
from sqlalchemy.engine import make_url

from bot.storage.crypto import active_ring

ROOT = Path(__file__).resolve().parent.parent.parent


def dsn(url: str) -> str:
    """`url` as asyncpg takes it (no SQLAlchemy driver name)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def seed_patients(
    url: str,
    count: int,
    first_chat: int,
    *,
    protocol: str = "wave",
    planned_until: datetime | None = None,
) -> None:
    """`count` active Telegram patients, chat ids from `first_chat` on."""
    now = datetime.now(UTC)
    enrolled = now - timedelta(seconds=5)
    ring = active_ring()
    records = []
    for n in range(count):
        chat = str(first_chat + n)
        records.append((
            ring.encrypt("patient.display_name", f"P{n}"), "UTC", "en", "telegram",
            ring.encrypt("patient.address", chat), ring.lookup_hash(chat), "active", protocol,
            enrolled, enrolled, now, planned_until,
        ))  # fmt: skip
    connection = await asyncpg.connect(dsn(url))
    try:
        await connection.copy_records_to_table(
            "patient",
            records=records,
            columns=[
                "display_name", "timezone", "language", "channel", "address", "address_hash",
                "status", "protocol", "consent_at", "created_at", "updated_at", "planned_until",
            ],
        )  # fmt: skip
    finally:
        await connection.close()


async def outbox_per_patient(url: str) -> Counter[int]:
    """How many outbox rows each patient has (by patient id)."""
    connection = await asyncpg.connect(dsn(url))
    try:
        rows = await connection.fetch(
            "SELECT recipient_id, count(*) AS n FROM outbound_message "
            "WHERE recipient_kind = 'patient' GROUP BY recipient_id"
        )
    finally:
        await connection.close()
    return Counter({r["recipient_id"]: r["n"] for r in rows})


def start_worker(
    config: Path, url: str, log: Path, command: str = "worker", *, module: str = "bot"
) -> subprocess.Popen[bytes]:
    """`checkin <command>` (`worker`, `run`) on `url`, its output appended to `log`; `module`
    is `bot`, or `tests.fault.launch` for the fault suite's raised outbound pace."""
    env = dict(os.environ, CHECKIN_DATABASE_URL=url, PYTHONUNBUFFERED="1")
    env.pop("CHECKIN_CONFIG", None)
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", module, "--config", str(config), command],
            stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT,
        )  # fmt: skip


class Process:
    """One `checkin` process started by :func:`start_worker`, stopped the hard way (SIGKILL,
    as the kernel's OOM killer or a power cut would) or the clean one (SIGTERM)."""

    def __init__(
        self, url: str, config: Path, log: Path, command: str = "worker", *, module: str = "bot"
    ) -> None:
        self.process = start_worker(config, url, log, command, module=module)

    def kill(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def terminate(self) -> int:
        """SIGTERM, then the exit status (0: it stopped cleanly)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=30)


def stop(processes: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM each (a clean stop), then wait; kill what has not stopped in 20 s."""
    for p in processes:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in processes:
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()

"""Many patients and `checkin worker` processes, for the worker tests and the scheduler bench.

Patients are written straight into a migrated PostgreSQL database with COPY (encrypted
under the installed key ring, with their lookup hash), all on the protocol `protocol`
and enrolled a moment ago; workers are real `checkin worker` processes, which inherit
the key from the environment.
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


def start_worker(config: Path, url: str, log: Path) -> subprocess.Popen[bytes]:
    """A `checkin worker` on `url`, its output appended to `log`."""
    env = dict(os.environ, CHECKIN_DATABASE_URL=url, PYTHONUNBUFFERED="1")
    env.pop("CHECKIN_CONFIG", None)
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "bot", "--config", str(config), "worker"],
            stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT,
        )  # fmt: skip


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

"""``/healthz``'s checks: the database answers (one trivial statement, read-only, so it
never queues behind writers on SQLite), and the SMS spool is not stuck."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import text

from bot.storage.database import Database
from bot.storage.spool import SpoolStatus

# A spooled SMS normally reaches the database within a second; one waiting this long
# means the drain cannot record it (the database is away): /healthz says so.
SPOOL_STALE = timedelta(minutes=2)


async def database_ok(db: Database) -> bool:
    """True when the database answers ``SELECT 1``; any failure is a no (never raises)."""
    try:
        async with db.reading() as session:
            await session.exec(text("SELECT 1"))  # type: ignore[call-overload]
    except Exception:
        return False
    return True


def spool_age_s(status: SpoolStatus, now: datetime) -> float:
    """Seconds the oldest spooled message has waited (0: the spool is empty)."""
    if status.oldest_at is None:
        return 0.0
    return max(0.0, (now - status.oldest_at).total_seconds())


def spool_ok(status: SpoolStatus, now: datetime) -> bool:
    return spool_age_s(status, now) <= SPOOL_STALE.total_seconds()

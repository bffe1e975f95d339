"""``/healthz``'s checks: the database answers (one trivial statement, read-only, so it
never queues behind writers on SQLite), and the SMS spool is not stuck."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import text

from bot.app.conversations.intake import Intake
from bot.domain.errors import CheckinError
from bot.storage.database import Database
from bot.storage.spool import SpoolStatus

log = logging.getLogger(__name__)
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


@dataclass(frozen=True)
class SpoolHealth:
    ok: bool
    problem: str | None  # why not ok
    depth: int | None  # None: the spool could not be read
    oldest_age_s: float | None


async def spool_health(intake: Intake, now: datetime) -> SpoolHealth:
    """Not ok when the oldest spooled message has waited over SPOOL_STALE, or the spool
    cannot be read (never raises)."""
    try:
        status = await intake.status()
    except (OSError, CheckinError) as exc:
        log.error("healthz: the sms spool cannot be read (%s)", type(exc).__name__)
        return SpoolHealth(False, "sms spool unreadable", None, None)
    age = spool_age_s(status, now)
    if age > SPOOL_STALE.total_seconds():
        limit = SPOOL_STALE.total_seconds()
        problem = f"sms spool not draining (oldest message waiting over {limit:.0f}s)"
        return SpoolHealth(False, problem, status.depth, round(age, 1))
    return SpoolHealth(True, None, status.depth, round(age, 1))

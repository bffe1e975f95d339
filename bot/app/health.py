"""``/healthz``'s database check: one trivial statement in a transaction of its own."""

from __future__ import annotations

from sqlalchemy import text

from bot.storage.database import Database


async def database_ok(db: Database) -> bool:
    """True when the database answers ``SELECT 1``; any failure is a no (never raises)."""
    try:
        async with db.transaction() as session:
            await session.exec(text("SELECT 1"))  # type: ignore[call-overload]
    except Exception:
        return False
    return True

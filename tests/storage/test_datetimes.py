"""Datetimes: aware values are stored as UTC and come back aware; naive ones are refused."""

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy.exc import StatementError

from bot.storage.database import Database
from bot.storage.repository import Repository
from bot.storage.tables import AuditEvent


async def _store(db: Database, at: datetime) -> AuditEvent:
    event = AuditEvent(at=at, actor="test", action="probe", subject="clock")
    async with db.transaction() as session:
        await Repository(session).add(event)
    return event


async def test_aware_datetime_round_trips_as_utc(db: Database) -> None:
    """09:00 in New York is read back as the same instant, 13:00 UTC, with UTC attached."""
    local = datetime(2026, 4, 6, 9, 0, tzinfo=ZoneInfo("America/New_York"))
    event = await _store(db, local)
    async with db.transaction() as session:
        stored = await session.get(AuditEvent, event.id)
    assert stored is not None
    assert stored.at == datetime(2026, 4, 6, 13, 0, tzinfo=UTC)
    assert stored.at.utcoffset() is not None
    assert stored.at.tzinfo == UTC


async def test_naive_datetime_is_refused(db: Database) -> None:
    """Writing a naive datetime raises instead of guessing its time zone."""
    with pytest.raises(StatementError, match="timezone"):
        await _store(db, datetime(2026, 4, 6, 9, 0))

"""Migration 0014 on a database at 0012 with scores in it: each score gets its place in the
series from the sessions stored (cancelled ones left out, a score at a session's start
before it); a clinician-rated measure can then be stored without a check-in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from alembic import command
from sqlalchemy import Row, text

from bot.storage import migrate
from bot.storage.database import Database
from tests.conftest import TEST_RING

S1 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
S2 = S1 + timedelta(days=3)
H = timedelta(hours=1)


async def _at_0012_with_rows(url: str) -> None:
    """Two patients at 0012: the first with two held sessions and one cancelled between
    them, and four scores; the second with a score and no session."""
    await migrate.upgrade_async(url, "0012")
    async with Database(url) as db:
        for n in (1, 2):
            await _sql(db, "INSERT INTO patient (display_name, timezone, language, channel,"
                       " status, created_at, updated_at) VALUES (:n, 'UTC', 'en', 'console',"
                       " 'active', :at, :at)",
                       n=TEST_RING.encrypt("patient.display_name", f"P{n}"), at=S1)  # fmt: skip
        sessions = ((1, S1, None), (2, S1 + 30 * H, S1), (3, S2, None))
        for number, at, cancelled in sessions:
            await _sql(db, "INSERT INTO treatment_session (patient_id, number, kind, at,"
                       " cancelled_at) VALUES (1, :n, 'ketamine', :at, :c)",
                       n=number, at=at, c=cancelled)  # fmt: skip
        scores = ((1, S1 - 2 * H), (1, S1), (1, S1 + 40 * H), (1, S2 + 2 * H), (2, S1))
        for n, (patient, at) in enumerate(scores, start=1):
            await _sql(db, "INSERT INTO checkin (patient_id, idempotency_key, instruments,"
                       " status, due_at, expires_at, reminders_sent, max_reminders, origin,"
                       " partial, ignore_quiet_hours, state, version, created_at) VALUES (:p,"
                       " :k, '[]', 'completed', :at, :at, 0, 0, 'operator', false, false, :s, 1,"
                       " :at)", p=patient, k=f"k{n}", at=at,
                       s=TEST_RING.encrypt("checkin.state", "{}"))  # fmt: skip
            await _sql(db, "INSERT INTO score (checkin_id, patient_id, instrument, total,"
                       " valid, prorated, flags, completed_at) VALUES (:c, :p, 'phq9', 12, true,"
                       " false, '[]', :at)", c=n, p=patient, at=at)  # fmt: skip


async def test_0014_backfills_each_score_from_the_held_sessions(db_url: str) -> None:
    """Before the series 0 / no hours; at a session's start still before it; 40 h after the
    first (the cancelled one not counted); 2 h after the second held one; a patient without
    sessions 0."""
    await _at_0012_with_rows(db_url)
    await migrate.upgrade_async(db_url)
    async with Database(db_url) as db:
        rows = await _sql(db, "SELECT session_number, hours_since_session FROM score ORDER BY id")
        assert [tuple(r) for r in rows] == [(0, None), (0, None), (1, 40.0), (2, 2.0), (0, None)]
        await _sql(db, "INSERT INTO score (checkin_id, patient_id, instrument, total, valid,"
                   " prorated, flags, completed_at, session_number, hours_since_session,"
                   " time_point, components) VALUES (NULL, 1, 'blood_pressure', NULL, true,"
                   " false, '[]', :at, 2, 0.5, 'pre', :c)", at=S2,
                   c='{"systolic": 150, "diastolic": 95}')  # fmt: skip


async def _sql(db: Database, sql: str, **params: Any) -> list[Row[Any]]:
    async with db.engine.begin() as connection:
        result = await connection.execute(text(sql), params)
        return list(result.all()) if result.returns_rows else []


async def test_0014_downgrades_and_upgrades_again(db_url: str) -> None:
    """Back at 0012 a measure (no check-in) is gone and the check-in scores stay; upgrading
    again places them once more."""
    await _at_0012_with_rows(db_url)
    await migrate.upgrade_async(db_url)
    async with Database(db_url) as db:
        await _sql(db, "INSERT INTO score (checkin_id, patient_id, instrument, valid, prorated,"
                   " flags, completed_at) VALUES (NULL, 1, 'madrs', true, false, '[]', :at)",
                   at=S2)  # fmt: skip
    await _alembic(db_url, command.downgrade, "0012")
    async with Database(db_url) as db:
        assert len(await _sql(db, "SELECT id FROM score")) == 5
    await migrate.upgrade_async(db_url)
    async with Database(db_url) as db:
        rows = await _sql(db, "SELECT session_number FROM score ORDER BY id")
        assert [r[0] for r in rows] == [0, 0, 1, 2, 0]


async def _alembic(url: str, step: Any, revision: str) -> None:
    async with Database(url, foreign_keys=False) as db, db.engine.begin() as connection:
        await connection.run_sync(lambda c: step(migrate.alembic_config(c), revision))

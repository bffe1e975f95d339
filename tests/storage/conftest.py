"""Rows most storage tests need: a patient with one check-in, at a fixed time."""

from datetime import UTC, datetime, timedelta

import pytest

from bot.storage.database import Database
from bot.storage.repository import Repository
from bot.storage.tables import Checkin, Patient


@pytest.fixture
def now() -> datetime:
    return datetime(2026, 3, 2, 14, 30, tzinfo=UTC)


@pytest.fixture
async def patient(db: Database) -> Patient:
    row = Patient(
        display_name="Ada", timezone="Europe/London", channel="sms", address="+447700900001"
    )
    async with db.transaction() as session:
        await Repository(session).add(row)
    return row


@pytest.fixture
async def checkin(db: Database, patient: Patient, now: datetime) -> Checkin:
    assert patient.id is not None
    row = Checkin(
        patient_id=patient.id,
        idempotency_key=f"{patient.id}:weekly:{now:%Y%m%dT%H%MZ}",
        instruments=["phq9"],
        due_at=now,
        expires_at=now + timedelta(days=2),
    )
    async with db.transaction() as session:
        await Repository(session).add(row)
    return row

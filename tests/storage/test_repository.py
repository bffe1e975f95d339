"""Repository reads and writes for use cases: patients, check-ins, scores, alerts, locks."""

import asyncio
from datetime import datetime, timedelta

import pytest
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.exc import StaleDataError
from sqlmodel import col, select

from bot.storage.database import Database
from bot.storage.repository import Repository
from bot.storage.tables import Alert, AuditEvent, Checkin, Clinician, Patient, Score


async def test_get_patient_by_id(db: Database, patient: Patient) -> None:
    """A stored patient is found by id; an unknown id gives None."""
    assert patient.id is not None
    async with db.transaction() as session:
        repo = Repository(session)
        found = await repo.get_patient(patient.id)
        missing = await repo.get_patient(patient.id + 1000)
    assert found is not None and found.display_name == "Ada"
    assert missing is None


async def test_patient_links_to_clinician(db: Database) -> None:
    """A patient refers to a clinician, who may name a backup clinician."""
    async with db.transaction() as session:
        repo = Repository(session)
        backup = Clinician(display_name="Dr B", channel="telegram", address="1001")
        await repo.add(backup)
        lead = Clinician(display_name="Dr A", channel="sms", backup_clinician_id=backup.id)
        await repo.add(lead)
        patient = Patient(display_name="P", timezone="UTC", channel="sms", clinician_id=lead.id)
        await repo.add(patient)
    assert patient.id is not None
    async with db.transaction() as session:
        stored = await Repository(session).get_patient(patient.id)
        assert stored is not None and stored.clinician_id is not None
        clinician = await session.get(Clinician, stored.clinician_id)
    assert clinician is not None
    assert (clinician.display_name, clinician.backup_clinician_id) == ("Dr A", backup.id)


async def test_create_checkin_is_idempotent(db: Database, checkin: Checkin) -> None:
    """Planning a check-in with an existing idempotency key returns None and adds nothing."""
    duplicate = Checkin(
        patient_id=checkin.patient_id,
        idempotency_key=checkin.idempotency_key,
        due_at=checkin.due_at,
        expires_at=checkin.expires_at,
    )
    async with db.transaction() as session:
        repo = Repository(session)
        assert await repo.create_checkin(duplicate) is None
        assert len(await repo.checkins_for_patient(checkin.patient_id)) == 1


async def test_checkins_for_patient_newest_first(
    db: Database, patient: Patient, now: datetime
) -> None:
    """A patient's check-ins come newest due first, with their JSON fields intact."""
    assert patient.id is not None
    async with db.transaction() as session:
        repo = Repository(session)
        for day in range(3):
            due = now + timedelta(days=day)
            planned = Checkin(
                patient_id=patient.id,
                idempotency_key=f"k{day}",
                instruments=["phq9", "gad7"],
                state={"item": day},
                due_at=due,
                expires_at=due + timedelta(days=1),
            )
            assert await repo.create_checkin(planned) is not None
    async with db.transaction() as session:
        rows = await Repository(session).checkins_for_patient(patient.id)
    assert [row.state for row in rows] == [{"item": 2}, {"item": 1}, {"item": 0}]
    assert rows[0].instruments == ["phq9", "gad7"]


async def test_stale_checkin_update_is_refused(db: Database, checkin: Checkin) -> None:
    """Saving a check-in copy that another transaction already changed raises StaleDataError."""
    assert checkin.id is not None
    async with db.transaction() as session:
        fresh = await Repository(session).get_checkin(checkin.id)
        assert fresh is not None
        fresh.status = "sent"
    assert fresh.version == checkin.version + 1
    checkin.status = "expired"
    with pytest.raises(StaleDataError):
        async with db.transaction() as session:
            await Repository(session).add(checkin)


async def test_scores_and_alerts_for_patient(db: Database, checkin: Checkin, now: datetime) -> None:
    """Scores come oldest first (filterable by instrument); alerts newest first (by status)."""
    assert checkin.id is not None
    pid = checkin.patient_id
    async with db.transaction() as session:
        repo = Repository(session)
        await repo.add(
            Score(
                checkin_id=checkin.id,
                patient_id=pid,
                instrument="phq9",
                total=14,
                band="moderate",
                valid=True,
                flags=["item9_positive"],
                completed_at=now,
            ),
            Score(
                checkin_id=checkin.id,
                patient_id=pid,
                instrument="gad7",
                total=6,
                band="mild",
                valid=True,
                completed_at=now,
            ),
        )
        await repo.add(
            Alert(
                patient_id=pid,
                rule="suicidality",
                level="urgent",
                code="7F3K",
                ack_deadline=now + timedelta(minutes=30),
                created_at=now,
            ),
            Alert(
                patient_id=pid,
                rule="worsening",
                level="high",
                code="Q2XA",
                status="resolved",
                ack_deadline=now + timedelta(hours=4),
                created_at=now + timedelta(hours=1),
            ),
        )
    async with db.transaction() as session:
        repo = Repository(session)
        phq9 = await repo.scores_for_patient(pid, "phq9")
        everything = await repo.scores_for_patient(pid)
        alerts = await repo.alerts_for_patient(pid)
        open_alerts = await repo.alerts_for_patient(pid, status="open")
    assert [(s.total, s.flags) for s in phq9] == [(14, ["item9_positive"])]
    assert sorted(s.instrument for s in everything) == ["gad7", "phq9"]
    assert [a.code for a in alerts] == ["Q2XA", "7F3K"]
    assert [a.code for a in open_alerts] == ["7F3K"]


async def test_lock_patient_returns_the_patient(db: Database, patient: Patient) -> None:
    """Locking a patient (a no-op lock on SQLite) loads the current row."""
    assert patient.id is not None
    async with db.transaction() as session:
        locked = await Repository(session).lock_patient(patient.id)
    assert locked is not None and locked.id == patient.id


@pytest.mark.postgres
async def test_lock_patient_serializes_transactions(pg_db: Database) -> None:
    """On PostgreSQL a second locker of the same patient waits until the first commits."""
    async with pg_db.transaction() as session:
        row = Patient(display_name="P", timezone="UTC", channel="sms")
        await Repository(session).add(row)
    assert row.id is not None
    pid = row.id
    events: list[str] = []

    async def second() -> None:
        async with pg_db.transaction() as session:
            await Repository(session).lock_patient(pid)
            events.append("second locked")

    async with pg_db.transaction() as session:
        await Repository(session).lock_patient(pid)
        waiting = asyncio.create_task(second())
        await asyncio.sleep(0.3)
        events.append("first commits")
    await waiting
    assert events == ["first commits", "second locked"]


async def test_open_alert_codes_are_unique(db: Database, patient: Patient, now: datetime) -> None:
    """Two open alerts cannot share an acknowledgement code; a resolved one may reuse it."""
    assert patient.id is not None

    def alert(status: str) -> Alert:
        assert patient.id is not None
        return Alert(
            patient_id=patient.id,
            rule="r",
            level="urgent",
            code="7F3K",
            status=status,
            ack_deadline=now,
        )

    async with db.transaction() as session:
        await Repository(session).add(alert("resolved"), alert("open"))
    with pytest.raises(IntegrityError):
        async with db.transaction() as session:
            await Repository(session).add(alert("open"))


async def test_audit_event_is_appended(db: Database, now: datetime) -> None:
    """An audit event is stored with its actor, action, subject and detail."""
    async with db.transaction() as session:
        await Repository(session).audit(now, "operator", "enroll", "patient:1", channel="sms")
    async with db.transaction() as session:
        (event,) = (await session.exec(select(AuditEvent))).all()
    assert (event.actor, event.action, event.subject, event.detail) == (
        "operator",
        "enroll",
        "patient:1",
        {"channel": "sms"},
    )


async def test_the_repositorys_connection_is_its_transactions(
    db: Database, patient: Patient
) -> None:
    """`Repository.connection` (asked of the session once) is the transaction's own: a Core
    statement on it sees the session's writes, and is undone with them."""

    async def change_then_fail() -> None:
        async with db.transaction() as session:
            repo = Repository(session)
            connection = await repo.connection()
            assert connection is await session.connection()
            assert await repo.connection() is connection
            await connection.execute(
                update(Patient).where(col(Patient.id) == patient.id).values(language="es")
            )
            found = await session.exec(select(Patient.language).where(Patient.id == patient.id))
            assert found.one() == "es"
            raise RuntimeError("undo")

    with pytest.raises(RuntimeError):
        await change_then_fail()
    async with db.transaction() as session:
        found = await session.exec(select(Patient.language).where(Patient.id == patient.id))
        assert found.one() == patient.language

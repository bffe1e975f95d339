"""Retention on SQLite and PostgreSQL: discharge stops check-ins; erasure leaves no name,
address or message text in any table (nor, on SQLite, in the file or its log); scores
survive only when configured; purge_due erases whoever is past the period."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import text as sql
from sqlmodel import SQLModel, select

from bot.app.operator import retention
from bot.config import Retention
from bot.storage import audit
from bot.storage.database import Database
from bot.storage.repository import Repository
from bot.storage.tables import Answer, AuditEvent, Checkin, Clinician, Patient, Score
from tests.test_alerting import wired
from tests.test_services import rows, said

NAME = "Zebedee Quillfeather"
ADDRESS = "zq-console-4471"
SAID = "my neighbour Quillfeather-canary knows"
CANARIES = (NAME, ADDRESS, SAID)


async def everything(db: Database) -> str:
    """Every row of every table, as text."""
    dumped = []
    async with db.engine.connect() as connection:
        for table in SQLModel.metadata.sorted_tables:
            result = await connection.execute(select(table))
            dumped.extend(repr(tuple(row)) for row in result)
    return "\n".join(dumped)


async def treated(db: Database) -> tuple[int, int]:
    """A patient who wrote freely, then answered a PHQ-9 with item 9 = 2 (an alert to their
    clinician names them), and has a check-in still pending; (patient id, checkin id)."""
    services, deliverer, clock = wired(db)
    async with db.transaction() as session:
        repo = Repository(session)
        clinician = Clinician(display_name="Dr. Rao", channel="console", address="dr-r")
        await repo.add(clinician)
        patient = Patient(
            display_name=NAME, timezone="Europe/Lisbon", channel="console", address=ADDRESS,
            status="active", clinician_id=clinician.id,
        )  # fmt: skip
        await repo.add(patient)
    assert patient.id is not None
    await services.inbox.handle_inbound(said(ADDRESS, SAID, 100))
    await services.asking.ask(patient.id, ["phq9"])
    await services.starting.start_due()
    for n, text in enumerate(["0"] * 8 + ["2", "not difficult at all"]):
        await services.inbox.handle_inbound(said(ADDRESS, text, n))
    await deliverer.drain()
    later = await services.asking.ask(patient.id, ["gad7"], due_at=clock() + timedelta(days=7))
    assert later.id is not None
    return patient.id, later.id


async def test_discharge_cancels_what_is_not_finished(db: Database) -> None:
    """Discharge: status and time set, the pending check-in cancelled, the completed one kept."""
    patient_id, pending_id = await treated(db)
    _, _, clock = wired(db)
    assert await retention.discharge(db, patient_id, clock(), actor="operator") == 1
    (patient,) = await rows(db, Patient)
    assert (patient.status, patient.discharged_at) == ("discharged", clock())
    statuses = {c.id: c.status for c in await rows(db, Checkin)}
    assert statuses[pending_id] == "cancelled" and "completed" in statuses.values()
    (event,) = await rows(db, AuditEvent, AuditEvent.action == "discharged")
    assert (event.actor, event.subject, event.detail) == (
        "operator",
        f"patient:{patient_id}",
        {"cancelled": 1},
    )


@pytest.mark.parametrize("keep_scores", [True, False])
async def test_erasure_leaves_no_identifier_anywhere(db: Database, keep_scores: bool) -> None:
    """Name, address and message text are in the tables before, in no table after; scores
    stay under a wiped row only when kept; the audit event names no one; the chain holds."""
    patient_id, _ = await treated(db)
    before = await everything(db)
    assert all(canary in before for canary in CANARIES)
    _, _, clock = wired(db)
    erasure = await retention.erase(
        db, patient_id, clock(), keep_scores=keep_scores, actor="operator"
    )
    after = await everything(db)
    assert [canary for canary in CANARIES if canary in after] == []
    assert erasure.inbound_deleted == 11 and erasure.outbound_deleted > 11
    scores, answers = await rows(db, Score), await rows(db, Answer)
    patients = await rows(db, Patient)
    if keep_scores:
        assert [(s.instrument, s.total) for s in scores] == [("phq9", 2)]
        assert len(answers) == 10 and {a.raw_text for a in answers} == {""}
        (patient,) = patients
        assert (patient.display_name, patient.address, patient.clinician_id) == (
            "(erased)",
            None,
            None,
        )
        assert patient.erased_at == clock()
    else:
        assert (scores, answers, patients) == ([], [], [])
    (event,) = await rows(db, AuditEvent, AuditEvent.action == "patient_erased")
    assert NAME not in repr(event) and ADDRESS not in repr(event)
    assert (await audit.verify(db)).ok


async def test_an_erased_patient_cannot_be_erased_or_discharged_again(db: Database) -> None:
    """A second erasure (or discharge) of a kept, wiped row is refused with a clear message."""
    patient_id, _ = await treated(db)
    _, _, clock = wired(db)
    await retention.erase(db, patient_id, clock(), keep_scores=True, actor="operator")
    with pytest.raises(retention.AlreadyErased, match=f"patient {patient_id} was erased"):
        await retention.erase(db, patient_id, clock(), keep_scores=True, actor="operator")
    with pytest.raises(retention.AlreadyErased):
        await retention.discharge(db, patient_id, clock(), actor="operator")


async def test_purge_due_erases_only_those_past_the_period(db: Database) -> None:
    """Discharged 31 days ago with a 30-day policy: erased; 29 days ago, or active: kept.
    A dry run lists without erasing."""
    _, _, clock = wired(db)
    ids = []
    for n, days_ago in enumerate((31, 29, None)):
        async with db.transaction() as session:
            patient = Patient(
                display_name=f"p{n}", timezone="UTC", channel="console", address=f"a{n}",
                status="active" if days_ago is None else "discharged",
                discharged_at=None if days_ago is None else clock() - timedelta(days=days_ago),
            )  # fmt: skip
            await Repository(session).add(patient)
            ids.append(patient.id)
    policy = Retention(delete_after_days=30, keep_deidentified_scores=False)
    dry = await retention.purge_due(db, policy, clock, dry_run=True)
    assert (dry.due, dry.erased, len(await rows(db, Patient))) == ((ids[0],), (), 3)
    report = await retention.purge_due(db, policy, clock)
    assert report.erased == (ids[0],)
    assert [p.id for p in await rows(db, Patient)] == ids[1:]
    (event,) = await rows(db, AuditEvent, AuditEvent.action == "patient_erased")
    assert event.actor == "system"
    assert (await retention.purge_due(db, policy, clock)).due == ()


async def test_sqlite_file_and_log_keep_no_erased_bytes(sqlite_db: Database) -> None:
    """On SQLite the patient's name and address, as stored (encrypted), are in the file or
    its WAL before erasure and in neither after (secure_delete zeroes them; the log is
    checkpointed and truncated), and nothing of them in plaintext either."""
    db = sqlite_db
    path = Path(db.url.database or "")
    patient_id, _ = await treated(db)

    def on_disk() -> bytes:
        wal = path.with_name(path.name + "-wal")
        return path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")

    async with db.engine.connect() as connection:  # the stored bytes, not decrypted
        stored = (
            await connection.execute(
                sql("SELECT display_name, address FROM patient WHERE id = :id"),
                {"id": patient_id},
            )
        ).one()
    sealed = [value.encode() for value in stored]
    assert all(value in on_disk() for value in sealed)
    _, _, clock = wired(db)
    await retention.erase(db, patient_id, clock(), keep_scores=True, actor="operator")
    assert [v for v in sealed if v in on_disk()] == []
    assert [c for c in CANARIES if c.encode() in on_disk()] == []

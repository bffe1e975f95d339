"""`checkin alerts` run as an operator runs it (a real process, a real SQLite file): list
with filters and the unrouted count, acknowledge, resolve; crisis alerts need a clinician."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.storage.database import Database
from bot.storage.repository import Repository
from bot.storage.tables import Alert, AuditEvent, Clinician, Patient
from tests.test_cli_service import checkin
from tests.test_services import rows

T0 = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)


@pytest.fixture
async def clinic_db(tmp_path: Path) -> str:
    """A migrated SQLite file with a clinician, two patients and three alerts: a crisis
    (open, unrouted once), a routine one (acknowledged) and one of the other patient (its
    notice refused once)."""
    url = f"sqlite:///{tmp_path / 'clinic.db'}"
    assert checkin(url, "db", "upgrade").returncode == 0
    db = Database(url)
    try:
        async with db.transaction() as session:
            repo = Repository(session)
            doctor = Clinician(display_name="Dr. Rao", channel="console", address="dr")
            await repo.add(doctor)
            one = Patient(display_name="P-1", timezone="UTC", channel="console", address="p1",
                          status="active", clinician_id=doctor.id)  # fmt: skip
            two = Patient(display_name="P-2", timezone="UTC", channel="console", address="p2",
                          status="active", clinician_id=doctor.id)  # fmt: skip
            await repo.add(one, two)
            assert one.id is not None and two.id is not None
            crisis = Alert(patient_id=one.id, rule="suicidality", level="crisis", code="ABC234",
                           created_at=T0, ack_deadline=T0 + timedelta(minutes=15))  # fmt: skip
            routine = Alert(patient_id=one.id, rule="worsening", level="routine", code="DEF567",
                            status="acknowledged", created_at=T0 - timedelta(days=1))  # fmt: skip
            other = Alert(patient_id=two.id, rule="severe_score", level="urgent", code="GHJ789",
                          created_at=T0 - timedelta(days=2))  # fmt: skip
            await repo.add(crisis, routine, other)
            await repo.audit(T0, "system", "alert_unrouted", f"patient:{one.id}",
                             code="ABC234", alert_id=crisis.id)  # fmt: skip
            await repo.audit(T0, "system", "alert_undelivered", f"patient:{two.id}",
                             code="GHJ789", alert_id=other.id, clinician=doctor.id)  # fmt: skip
    finally:
        await db.dispose()
    return url


def listing(url: str, *args: str) -> list[dict]:  # type: ignore[type-arg]
    result = checkin(url, "alerts", *args, "--json")
    assert result.returncode == 0, result.stderr
    data: list[dict] = json.loads(result.stdout)  # type: ignore[type-arg]
    return data


async def test_list_filters_and_shows_unrouted(clinic_db: str) -> None:
    """Newest first; --open and --patient filter; the unrouted and undelivered counts are
    on the alert."""
    everything = listing(clinic_db)
    assert [a["code"] for a in everything] == ["ABC234", "DEF567", "GHJ789"]
    assert [a["unrouted"] for a in everything] == [1, 0, 0]
    assert [a["undelivered"] for a in everything] == [0, 0, 1]
    assert everything[0]["clinician_only"] is True and everything[0]["patient"] == "P-1"
    assert [a["code"] for a in listing(clinic_db, "--patient", "2")] == ["GHJ789"]
    text = checkin(clinic_db, "alerts", "--open")
    assert text.returncode == 0
    first = text.stdout.splitlines()[0]
    assert "CRISIS" in first and "ABC234" in first and first.endswith("UNROUTED x1")
    assert text.stdout.splitlines()[-1].endswith(
        "GHJ789  patient 2 (P-2)  severe_score  2026-05-02T09:00  UNDELIVERED x1"
    )


async def test_ack_then_again(clinic_db: str) -> None:
    """ack acknowledges (audited as the clinician given); a second ack changes nothing."""
    done = checkin(clinic_db, "alerts", "ack", "1", "--by", "1")
    assert done.returncode == 0 and done.stdout.strip() == (
        "alert 1 acknowledged (ABC234); reminders for it stop"
    )
    again = checkin(clinic_db, "alerts", "ack", "1")
    assert again.stdout.strip() == "alert 1 is already acknowledged; nothing changed"
    (alert,) = [a for a in listing(clinic_db) if a["id"] == 1]
    assert (alert["status"], alert["acknowledged_by"]) == ("acknowledged", 1)
    db = Database(clinic_db)
    try:
        audits = await rows(db, AuditEvent, AuditEvent.action == "AlertAcknowledged")
    finally:
        await db.dispose()
    assert [(a.actor, a.detail["alert_id"]) for a in audits] == [("clinician:1", 1)]


async def test_a_crisis_alert_is_resolved_only_by_a_clinician(clinic_db: str) -> None:
    """Without --by: refused in one line, audited; with --by: resolved."""
    refused = checkin(clinic_db, "alerts", "resolve", "1")
    assert refused.returncode == 2
    assert refused.stderr.strip() == (
        "error: alert 1 is a crisis suicidality alert: only a clinician resolves it; "
        "add --by CLINICIAN_ID (see `checkin clinician list`)"
    )
    assert checkin(clinic_db, "alerts", "resolve", "1", "--by", "1").returncode == 0
    (alert,) = [a for a in listing(clinic_db) if a["id"] == 1]
    assert (alert["status"], alert["resolved_by"], alert["acknowledged_by"]) == (
        "resolved", "clinician:1", 1,
    )  # fmt: skip
    db = Database(clinic_db)
    try:
        audits = await rows(db, AuditEvent, AuditEvent.subject == "patient:1")
    finally:
        await db.dispose()
    actions = [(a.actor, a.action) for a in audits if a.action.startswith("AlertResol")]
    assert actions == [("operator", "AlertResolutionRefused"), ("clinician:1", "AlertResolved")]
    assert [a["code"] for a in listing(clinic_db, "--open")] == ["DEF567", "GHJ789"]


async def test_a_routine_alert_may_be_resolved_by_the_operator(clinic_db: str) -> None:
    """No --by needed below crisis (unless the rule is clinician-only)."""
    done = checkin(clinic_db, "alerts", "resolve", "2")
    assert done.returncode == 0 and done.stdout.strip() == "alert 2 resolved (DEF567)"
    (alert,) = [a for a in listing(clinic_db) if a["id"] == 2]
    assert (alert["status"], alert["resolved_by"]) == ("resolved", "operator")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ack", "99"], "error: no alert with id 99; see `checkin alerts`"),
        (["resolve", "1", "--by", "42"], "error: no clinician with id 42; see `checkin clinician list`"),
    ],
)  # fmt: skip
async def test_bad_ids_are_one_line_errors(clinic_db: str, args: list[str], message: str) -> None:
    """Unknown alert or clinician: exit 2, one line naming it and where to look."""
    result = checkin(clinic_db, "alerts", *args)
    assert (result.returncode, result.stderr.strip()) == (2, message)

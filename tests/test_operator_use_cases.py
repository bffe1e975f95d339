"""The operator use cases called directly, as the web panel will call them: what they refuse
on their own (the CLI checks some of it before calling), and a session time read in the
patient's own time zone. The commands over them are tested in tests/test_cli_*.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot.app.operator import clinicians, patients, treatments
from bot.app.operator.invitations import Invitations
from bot.app.operator.refusals import Refused
from bot.app.planning.planner import Planner
from bot.storage.database import Database
from tests.test_services import CATALOG, CLINIC, wire


async def _no_telegram() -> str:
    raise Refused("telegram is not configured")


async def test_a_clinician_is_never_their_own_backup_or_successor(sqlite_db: Database) -> None:
    """set_backup and deactivate refuse the clinician themselves and change nothing."""
    clock = wire(sqlite_db).clock
    doctor = await clinicians.add(sqlite_db, clock, "Dr A", "console")
    with pytest.raises(Refused, match="cannot be their own backup"):
        await clinicians.set_backup(sqlite_db, clock, doctor.id, doctor.id)
    with pytest.raises(Refused, match="cannot take over from themselves"):
        await clinicians.deactivate(sqlite_db, clock, doctor.id, reassign_to=doctor.id)
    (unchanged,) = await clinicians.list_clinicians(sqlite_db)
    assert (unchanged.active, unchanged.backup_clinician_id) == (True, None)


async def test_a_session_time_without_offset_is_the_patients_local_time(
    sqlite_db: Database,
) -> None:
    """10:00 with no offset is 10:00 in New York (14:00Z after the March change); text that
    is no time raises UnreadableTime naming it, and records no session."""
    w = wire(sqlite_db)
    planner = Planner(sqlite_db, CATALOG, {}, CLINIC, w.clock)
    invitations = Invitations(w.clock, timedelta(hours=1), _no_telegram)
    new = patients.NewPatient("P", "console", timezone="America/New_York")
    patient = (await patients.enrol(sqlite_db, w.clock, new, invitations, w.services)).patient
    change = await treatments.add_session(sqlite_db, planner, patient.id, "2026-03-09T10:00")
    assert change.session is not None
    assert change.session.at == datetime(2026, 3, 9, 14, 0, tzinfo=UTC)
    with pytest.raises(treatments.UnreadableTime) as caught:
        await treatments.add_session(sqlite_db, planner, patient.id, "next Monday")
    assert caught.value.text == "next Monday"
    listed = await treatments.list_sessions(sqlite_db, w.clock, patient.id)
    assert [(s.number, s.at_local.hour) for s in listed] == [(1, 10)]

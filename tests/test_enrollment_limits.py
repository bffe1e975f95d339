"""Enrolment attempts are rate-limited per sender, counted in the database, on SQLite and
PostgreSQL; past the limit the sender hears the same refusal and no code is checked."""

from __future__ import annotations

from datetime import timedelta

from bot.app.conversations.enrollment import ATTEMPT_WINDOW, MAX_FAILED_ATTEMPTS, issue_code
from bot.storage.database import Database
from bot.storage.repository import Repository
from bot.storage.tables import EnrollmentCode, InboundMessage, Patient
from tests.test_services import SimClock, Wired, rows, said, wire

REFUSAL = "That link is not valid or has expired"


async def invited_patient(db: Database, clock: SimClock) -> tuple[int, str]:
    async with db.transaction() as session:
        patient = Patient(display_name="P", timezone="UTC", channel="console", status="invited")
        await Repository(session).add(patient)
        assert patient.id is not None
        code, _ = await issue_code(session, clock(), timedelta(days=1), patient_id=patient.id)
    return patient.id, code


async def attempt(w: Wired, sender: str, code: str, n: int) -> str:
    """Send ``/start CODE`` as `sender` and return the reply it got."""
    before = len(w.console.getvalue())
    await w.services.inbox.handle_inbound(said(sender, f"/start {code}", n, at=w.clock()))
    await w.deliverer.drain()
    return w.console.getvalue()[before:]


async def test_past_the_limit_even_the_right_code_is_refused(db: Database) -> None:
    """Five wrong codes in an hour: the right one gets the same refusal and stays unused;
    an hour after the failures it works."""
    w = wire(db)
    patient_id, code = await invited_patient(db, w.clock)
    for n in range(MAX_FAILED_ATTEMPTS):
        assert REFUSAL in await attempt(w, "guesser", f"wrong{n}", n)
        w.clock.now += timedelta(minutes=1)
    assert REFUSAL in await attempt(w, "guesser", code, 10)
    (row,) = await rows(db, EnrollmentCode)
    (patient,) = await rows(db, Patient)
    assert row.used_at is None and patient.status == "invited"
    notes = [m.error for m in await rows(db, InboundMessage)]
    assert notes == ["enrolment code refused"] * 5 + ["enrolment attempts limited"]
    w.clock.now += ATTEMPT_WINDOW
    assert "Welcome" in await attempt(w, "guesser", code, 11)
    (patient,) = await rows(db, Patient, Patient.id == patient_id)
    assert (patient.status, patient.address) == ("active", "guesser")


async def test_the_limit_is_per_sender_and_shared_by_workers(db: Database) -> None:
    """Failures through one worker count on another; a different sender is unaffected."""
    first, second = wire(db), wire(db)
    _, code = await invited_patient(db, first.clock)
    for n in range(MAX_FAILED_ATTEMPTS):
        await attempt(first if n % 2 else second, "guesser", f"wrong{n}", n)
    assert REFUSAL in await attempt(second, "guesser", code, 20)
    assert "Welcome" in await attempt(second, "someone-else", code, 21)


async def test_four_failures_do_not_lock_anyone_out(db: Database) -> None:
    """Below the limit a sender who mistyped can still use their code."""
    w = wire(db)
    _, code = await invited_patient(db, w.clock)
    for n in range(MAX_FAILED_ATTEMPTS - 1):
        await attempt(w, "typo", f"wrong{n}", n)
    assert "Welcome" in await attempt(w, "typo", code, 9)

"""Check-ins before a treatment session, planned into rows and run by the tick: due and
expired before the session whatever the hour of the session and the clock change, and a
moved session leaves no phantom check-in (the preview shows what is then sent). On a real
SQLite file and a real PostgreSQL server, with a controllable clock."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from itertools import count
from zoneinfo import ZoneInfo

import pytest

from bot.app.planning.protocols import preview
from bot.app.planning.rows import stored_occurrences
from bot.app.planning.session_changes import sessions_of
from bot.config import Clinic
from bot.domain.schedule import protocol_from_mapping
from bot.storage.database import Database
from bot.storage.repository import Repository
from bot.storage.tables import Checkin, Patient, PlannedOccurrence, Score
from tests.test_scheduling import Clinic2
from tests.test_services import SimClock, rows, said

LA = "America/Los_Angeles"
ZONE = ZoneInfo(LA)
ENROLLED = datetime(2027, 3, 5, 17, 0, tzinfo=UTC)  # Friday 09:00 PST
MESSAGE_IDS = count(1)
EVENINGS = Clinic(name="Lakeside", quiet_hours_start_local=time(20), quiet_hours_end_local=time(8))


def la(month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2027, month, day, hour, minute, tzinfo=ZONE).astimezone(UTC)


# Sessions at 07:00, 07:30, 08:00 (on the spring-forward day, 2027-03-14) and 22:30 local,
# then one at 10:00, whose 08:00 check-in needs no moving.
SESSIONS = [la(3, 10, 7), la(3, 12, 7, 30), la(3, 14, 8), la(3, 16, 22, 30), la(3, 18, 10)]


@pytest.fixture
def clock() -> SimClock:
    return SimClock(ENROLLED)


async def enrolled(db: Database, at: datetime = ENROLLED) -> int:
    async with db.transaction() as session:
        patient = Patient(
            display_name="Pat", timezone=LA, channel="console", address="la1",
            status="active", protocol="ketamine-iv-6", consent_at=at, created_at=at,
        )  # fmt: skip
        await Repository(session).add(patient)
    assert patient.id is not None
    return patient.id


async def pre_session(db: Database, patient_id: int) -> dict[str, Checkin]:
    """The check-in each live pre-session occurrence is asked in, by occurrence key."""
    found = await rows(db, PlannedOccurrence, PlannedOccurrence.patient_id == patient_id)
    checkins = {c.id: c for c in await rows(db, Checkin, Checkin.patient_id == patient_id)}
    return {
        o.key: checkins[o.checkin_id]
        for o in found
        if o.rule == "before_session" and o.checkin_id is not None
    }


async def test_every_pre_session_check_in_is_due_and_closes_before_its_session(
    db: Database, clock: SimClock
) -> None:
    """In Los Angeles with quiet hours 20:00-08:00, the PHQ-9 before sessions at 07:00, 07:30,
    08:00 (on the DST day) and 22:30 goes out at 19:30 the evening before (or that evening)
    and closes at the session's start at the latest, unanswered or half answered."""
    clinic = Clinic2(db, clock, EVENINGS)
    clinic.planner.plan_ahead = timedelta(days=14)  # the whole series at once
    patient_id = await enrolled(db)
    for at in SESSIONS:
        await clinic.planner.add_session(patient_id, at, "ketamine-iv")
    checkins = await pre_session(db, patient_id)
    due = {key: c.due_at.astimezone(ZONE).strftime("%m-%d %H:%M") for key, c in checkins.items()}
    assert due == {
        "before_session:1": "03-09 19:30",
        "before_session:2": "03-11 19:30",
        "before_session:3": "03-13 19:30",  # PST, the evening before the clock springs forward
        "before_session:4": "03-16 19:30",
        "before_session:5": "03-18 08:00",
    }
    for number, session_at in enumerate(SESSIONS, start=1):
        checkin = checkins[f"before_session:{number}"]
        assert checkin.due_at.astimezone(UTC) < session_at
        assert checkin.expires_at.astimezone(UTC) <= session_at

    # the series runs, the patient answering all else: each is sent when due; the one for
    # session 3 is half answered, the others not at all
    for number, session_at in enumerate(SESSIONS, start=1):
        checkin = checkins[f"before_session:{number}"]
        clock.now = checkin.due_at.astimezone(UTC) - timedelta(minutes=1)
        await clinic.tick()
        await answer_everything_open(clinic, patient_id)
        clock.now += timedelta(minutes=1)
        await clinic.tick()
        if number == 3:
            clock.now += timedelta(minutes=5)
            await clinic.w.services.inbox.handle_inbound(
                said("la1", "1", next(MESSAGE_IDS), clock.now)
            )
        clock.now = session_at + timedelta(minutes=7)  # the first tick after dosing began
        await clinic.tick()
    closed = await pre_session(db, patient_id)
    for number, session_at in enumerate(SESSIONS, start=1):
        checkin = closed[f"before_session:{number}"]
        assert checkin.sent_at is not None and checkin.sent_at.astimezone(UTC) < session_at
        assert checkin.status == "expired", number
    half = closed["before_session:3"]
    assert half.partial
    (score,) = await rows(db, Score, Score.checkin_id == half.id)
    # kept, closed at its expiry (19:30 + 3 h, the evening before), not at the next tick
    assert score.completed_at.astimezone(UTC) == half.expires_at.astimezone(UTC)
    assert half.expires_at.astimezone(ZONE).strftime("%m-%d %H:%M") == "03-13 22:30"


async def answer_everything_open(clinic: Clinic2, patient_id: int) -> None:
    """The patient answers "0" (or skips) every question of the check-ins open now."""
    for _ in range(60):
        found = await rows(clinic.db, Checkin, Checkin.patient_id == patient_id)
        open_now = [c for c in found if c.status in ("sent", "in_progress")]
        if not open_now:
            return
        clinic.clock.now += timedelta(seconds=1)
        text = "SKIP" if open_now[0].state.get("current") == "side_effects.blood_pressure" else "0"
        await clinic.w.services.inbox.handle_inbound(
            said("la1", text, next(MESSAGE_IDS), clinic.clock.now)
        )
    raise AssertionError("check-ins still open after 60 answers")


async def test_a_moved_session_previews_what_is_then_sent(db: Database, clock: SimClock) -> None:
    """Session 1 moves a day after its pre-session PHQ-9 was answered: a new one is
    planned and sent before the new time; session 2 moves half an hour after its answer,
    which still counts: the preview says so and nothing more is sent."""
    clinic = Clinic2(db, clock, EVENINGS)
    patient_id = await enrolled(db)
    first = await clinic.planner.add_session(patient_id, la(3, 10, 10), "ketamine-iv")
    second = await clinic.planner.add_session(patient_id, la(3, 12, 10), "ketamine-iv")
    assert first.session is not None and first.session.id is not None
    assert second.session is not None and second.session.id is not None
    await answer_pre_session(clinic, patient_id, "before_session:1")
    clock.now = la(3, 10, 9)
    await clinic.planner.move_session(first.session.id, la(3, 11, 10))  # a day later
    await answer_pre_session(clinic, patient_id, "before_session:1@20270311T1800Z")
    clock.now = la(3, 11, 9, 30)
    await answer_pre_session(clinic, patient_id, "before_session:2")
    clock.now = la(3, 12, 9)
    await clinic.planner.move_session(second.session.id, la(3, 12, 10, 30))

    shown = await previewed(clinic, patient_id, la(3, 10, 0))
    pre = [(r["key"], r["status"]) for r in shown if r["rule"] == "before_session"]
    assert pre == [
        ("before_session:1@20270311T1800Z", "completed"),
        ("before_session:2", "satisfied"),
    ]
    shown_at = clock.now
    will_send: dict[str, str] = {}  # bundle -> due (UTC): the planned entries of a week
    for row in await previewed(clinic, patient_id, la(3, 12, 0)):
        if row["status"] == "planned":
            bundle, due = str(row["bundle"]), str(row["due_at_utc"])
            will_send[bundle] = min(will_send.get(bundle, due), due)
    for hours in range(24 * 7):  # the week runs; the patient answers everything
        clock.now = shown_at + timedelta(hours=hours)
        await clinic.tick()
        await answer_everything_open(clinic, patient_id)
    week_end = la(3, 19, 0)
    sent = {
        c.idempotency_key.split(":", 2)[2].rsplit(":", 1)[0]: _utc(c.due_at)
        for c in await rows(db, Checkin, Checkin.patient_id == patient_id)
        if c.sent_at is not None and c.sent_at >= shown_at and c.due_at < week_end
    }
    assert set(will_send) == {"after_session:1", "after_session:2", "maintenance:2027-03-15"}
    assert sent == will_send
    assert not [k for k in sent if "before_session:2" in k]  # satisfied: not asked again


def _utc(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


async def answer_pre_session(clinic: Clinic2, patient_id: int, key: str) -> None:
    """Run the clock to the pre-session check-in `key`; the patient answers it all."""
    checkin = (await pre_session(clinic.db, patient_id))[key]
    clinic.clock.now = checkin.due_at.astimezone(UTC)
    await clinic.tick()
    await answer_everything_open(clinic, patient_id)
    done = (await pre_session(clinic.db, patient_id))[key]
    assert done.status == "completed", done.status


async def previewed(clinic: Clinic2, patient_id: int, start: datetime) -> list[dict[str, object]]:
    async with clinic.db.transaction() as session:
        patient = await Repository(session).get_patient(patient_id)
        assert patient is not None
        sessions = await sessions_of(session, patient_id)
        stored = (await stored_occurrences(session, [patient_id], sessions_only=False)).get(
            patient_id, []
        )
    return preview(
        clinic.planner.protocol("ketamine-iv-6"), patient, sessions,
        start_day=start.astimezone(ZONE).date(), days=7, clinic=EVENINGS,
        bundle_window=clinic.planner.bundle_window, stored=stored,
    )  # fmt: skip


async def test_an_open_pre_session_check_in_closes_by_its_moved_sessions_start(
    db: Database, clock: SimClock
) -> None:
    """The 08:00 PHQ-9 is open when its 10:00 session moves to 09:00: it is the session's
    still, and now closes at 09:00; no second one is planned."""
    clinic = Clinic2(db, clock, EVENINGS)
    patient_id = await enrolled(db)
    added = await clinic.planner.add_session(patient_id, la(3, 10, 10), "ketamine-iv")
    assert added.session is not None and added.session.id is not None
    clock.now = la(3, 10, 8)
    await clinic.tick()
    assert (await pre_session(db, patient_id))["before_session:1"].status == "sent"
    clock.now = la(3, 10, 8, 10)
    await clinic.planner.move_session(added.session.id, la(3, 10, 9))
    found = await pre_session(db, patient_id)
    assert list(found) == ["before_session:1"]
    assert found["before_session:1"].expires_at.astimezone(UTC) == la(3, 10, 9)


async def test_a_rule_that_ignores_quiet_hours_is_sent_inside_them(
    db: Database, clock: SimClock
) -> None:
    """`quiet_hours = "ignore"` (a clinic that wants a 05:00 message before a 07:00
    infusion): the check-in is planned for 05:00 and the tick sends it then."""
    clinic = Clinic2(db, clock, EVENINGS)
    rule = {"instruments": ["phq9"], "from_session": "-2h", "quiet_hours": "ignore"}
    early = protocol_from_mapping("early", {"rules": {"before_session": rule}}, "test")
    clinic.planner.protocols = {"ketamine-iv-6": early}
    patient_id = await enrolled(db)
    await clinic.planner.add_session(patient_id, la(3, 10, 7), "ketamine-iv")
    clock.now = la(3, 10, 5)
    await clinic.tick()
    checkin = (await pre_session(db, patient_id))["before_session:1"]
    assert checkin.ignore_quiet_hours and checkin.status == "sent"
    assert checkin.sent_at is not None and checkin.sent_at.astimezone(UTC) == la(3, 10, 5)

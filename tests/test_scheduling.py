"""Protocols planned into rows and run by the tick: treatment-relative check-ins that follow
their session, reminders, quiet hours, bundling, expiry as missed, idempotent planning; on
a real SQLite file and a real PostgreSQL server, with a controllable clock."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, time, timedelta

import pytest
from sqlalchemy import text as sa_text
from sqlalchemy import update
from sqlmodel import col

from bot.app.outbox.sending import Report
from bot.app.planning.planner import Planner
from bot.bootstrap import build
from bot.config import Clinic, Settings, default_protocols
from bot.domain.schedule import protocol_from_mapping
from bot.rendering.renderer import Rendered
from bot.storage.database import Database
from bot.storage.repository import Repository
from bot.storage.tables import Checkin, OutboundMessage, Patient, PlannedOccurrence
from scheduler.loop import courier, tick
from tests.test_services import CATALOG, SimClock, Wired, rows, said, wire

NY = "America/New_York"
# Monday 2026-03-02, 09:00 in New York (14:00 UTC): enrollment
T0 = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)
QUIET = Clinic(name="Lakeside", quiet_hours_start_local=time(21), quiet_hours_end_local=time(8))
PROTOCOLS = default_protocols() | {
    "tight": protocol_from_mapping(
        "tight",
        {
            "rules": {
                "daily": {
                    "instruments": ["phq2"],
                    "weekdays": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
                    "at": "06:30",  # inside quiet hours: deferred to 08:00
                    "reminder_after": "4h",
                    "max_reminders": 2,
                    "expires_after": "20h",
                }
            }
        },
        "test",
    ),
    "combo": protocol_from_mapping(
        "combo",
        {
            "rules": {
                "weekly": {"instruments": ["phq9"], "weekdays": ["mon"], "at": "09:00"},
                "before": {"instruments": ["phq9", "gad7"], "from_session": "-2h"},
            }
        },
        "test",
    ),
}


class Clinic2:
    """Wiring with a planner on the same clock."""

    def __init__(self, db: Database, clock: SimClock, clinic: Clinic = QUIET) -> None:
        self.w: Wired = wire(db, clock)
        self.w.services.context.clinic = clinic
        self.planner = Planner(db, CATALOG, PROTOCOLS, clinic, clock)
        self.clock = clock
        self.db = db

    async def tick(self) -> None:
        await self.planner.plan_due()
        await self.w.services.reminders.expire_due()
        await self.w.services.starting.start_due()
        await self.w.services.reminders.remind_due()
        await self.w.deliverer.drain()


async def enrolled(db: Database, protocol: str, at: datetime = T0, address: str = "p1") -> int:
    async with db.transaction() as session:
        patient = Patient(
            display_name="Pat", timezone=NY, channel="console", address=address,
            status="active", protocol=protocol, consent_at=at, created_at=at,
        )  # fmt: skip
        await Repository(session).add(patient)
    assert patient.id is not None
    return patient.id


async def planned(db: Database, patient_id: int) -> list[tuple[str, str, str]]:
    """(status, instruments, due UTC) of the patient's planned check-ins, by due time."""
    found = await rows(db, Checkin, Checkin.patient_id == patient_id, Checkin.origin == "plan")
    return sorted(
        (c.status, "+".join(c.instruments), c.due_at.astimezone(UTC).strftime("%m-%d %H:%M"))
        for c in found
    )


def live(plan: list[tuple[str, str, str]]) -> list[tuple[str, str]]:
    return sorted((due, what) for status, what, due in plan if status != "cancelled")


@pytest.fixture
def clock() -> SimClock:
    return SimClock(T0)


async def test_a_series_is_planned_once_and_follows_its_sessions(
    db: Database, clock: SimClock
) -> None:
    """Baseline at enrollment; before and after each session; moving a session moves its
    check-ins; cancelling removes them; planning again adds nothing."""
    clinic = Clinic2(db, clock)
    patient_id = await enrolled(db, "ketamine-iv-6")
    assert await clinic.planner.plan_due() == 1  # the baseline
    assert await clinic.planner.plan_due() == 0  # nobody is due for planning again
    assert live(await planned(db, patient_id)) == [("03-02 14:00", "phq9+gad7")]

    # sessions Wed 03-04 and Fri 03-06 at 10:00 New York (15:00 UTC)
    first = await clinic.planner.add_session(patient_id, datetime(2026, 3, 4, 15, tzinfo=UTC), "iv")
    await clinic.planner.add_session(patient_id, datetime(2026, 3, 6, 15, tzinfo=UTC), "iv")
    assert live(await planned(db, patient_id)) == [
        ("03-02 14:00", "phq9+gad7"),
        ("03-04 13:00", "phq9"),  # 2 h before: 08:00 local
        ("03-05 15:00", "side_effects+phq9"),  # 24 h after
        ("03-06 13:00", "phq9"),
        ("03-07 15:00", "side_effects+phq9"),
        ("03-09 13:00", "phq9"),  # maintenance: Monday 09:00 local, after the last session
    ]
    assert first.session is not None and first.session.id is not None
    moved = await clinic.planner.move_session(
        first.session.id, datetime(2026, 3, 5, 19, tzinfo=UTC)
    )
    assert live(await planned(db, patient_id)) == [
        ("03-02 14:00", "phq9+gad7"),
        ("03-05 17:00", "phq9"),
        ("03-06 13:00", "phq9"),
        ("03-06 19:00", "side_effects+phq9"),
        ("03-07 15:00", "side_effects+phq9"),
        ("03-09 13:00", "phq9"),
    ]
    assert moved.cancelled == 6
    await clinic.planner.cancel_session(first.session.id)
    assert live(await planned(db, patient_id)) == [
        ("03-02 14:00", "phq9+gad7"),
        ("03-06 13:00", "phq9"),
        ("03-07 15:00", "side_effects+phq9"),
        ("03-09 13:00", "phq9"),
    ]
    # each occurrence key is planned once, whatever was planned and cancelled before
    occurrences = await rows(db, PlannedOccurrence, PlannedOccurrence.patient_id == patient_id)
    keys = [o.key for o in occurrences]
    assert len(keys) == len(set(keys))
    assert sorted(keys) == [
        "after_session:1", "baseline:enrolled", "before_session:1", "maintenance:2026-03-09",
    ]  # fmt: skip


async def test_a_sent_check_in_stays_when_its_session_moves(db: Database, clock: SimClock) -> None:
    clinic = Clinic2(db, clock)
    patient_id = await enrolled(db, "ketamine-iv-6")
    session = await clinic.planner.add_session(
        patient_id, datetime(2026, 3, 2, 20, tzinfo=UTC), "iv"
    )
    await clinic.tick()  # the baseline goes out at once
    sent = [p for p in await planned(db, patient_id) if p[0] == "sent"]
    assert sent == [("sent", "phq9+gad7", "03-02 14:00")]
    assert session.session is not None and session.session.id is not None
    change = await clinic.planner.move_session(
        session.session.id, datetime(2026, 3, 3, 16, tzinfo=UTC)
    )
    assert [p for p in await planned(db, patient_id) if p[0] == "sent"] == sent
    assert ("03-03 14:00", "phq9") in live(await planned(db, patient_id))
    assert change.cancelled >= 1


async def test_planning_twice_concurrently_creates_each_check_in_once(
    db: Database, clock: SimClock
) -> None:
    """Two planners (two workers) on the same patients at once: every occurrence once."""
    ids = [await enrolled(db, "weekly-phq9", address=f"p{n}") for n in range(20)]
    one, two = Clinic2(db, clock), Clinic2(db, clock)
    # force both to plan every patient, whatever the claim leases say
    await asyncio.gather(
        *(one.planner.plan_patient(i) for i in ids), *(two.planner.plan_patient(i) for i in ids)
    )
    for patient_id in ids:
        # Mondays 09:00 New York within the week ahead (EST, then EDT from 03-08)
        assert live(await planned(db, patient_id)) == [
            ("03-02 14:00", "phq9"),
            ("03-09 13:00", "phq9"),
        ]


async def test_quiet_hours_defer_and_reminders_follow_the_rule(
    db: Database, clock: SimClock
) -> None:
    """06:30 local is in quiet hours (21:00-08:00): due at 08:00. Reminders every 4 h after
    the latest message, two at most, never in quiet hours; then it expires as missed."""
    clinic = Clinic2(db, clock)
    clock.now = datetime(2026, 3, 3, 5, 0, tzinfo=UTC)  # 00:00 in New York
    patient_id = await enrolled(db, "tight", at=clock.now)
    await clinic.tick()
    assert live(await planned(db, patient_id))[0] == ("03-03 13:00", "phq2")  # 08:00 local
    clock.now = datetime(2026, 3, 3, 12, 59, tzinfo=UTC)
    await clinic.tick()
    assert await _messages(db, patient_id) == 0
    clock.now = datetime(2026, 3, 3, 13, 0, tzinfo=UTC)
    await clinic.tick()
    first = await _messages(db, patient_id)
    assert first >= 1
    (checkin,) = [c for c in await _checkins(db, patient_id) if c.status == "sent"]
    assert checkin.next_reminder_at == datetime(2026, 3, 3, 17, 0, tzinfo=UTC)

    # an answer pushes the reminder back: 4 h after the latest activity
    clock.now = datetime(2026, 3, 3, 15, 0, tzinfo=UTC)
    await clinic.w.services.inbox.handle_inbound(said("p1", "1", 1, clock.now))
    (checkin,) = [c for c in await _checkins(db, patient_id) if c.status == "in_progress"]
    assert checkin.next_reminder_at == datetime(2026, 3, 3, 19, 0, tzinfo=UTC)
    clock.now = datetime(2026, 3, 3, 18, 59, tzinfo=UTC)
    assert await clinic.w.services.reminders.remind_due() == 0
    clock.now = datetime(2026, 3, 3, 19, 0, tzinfo=UTC)  # 14:00 local
    assert await clinic.w.services.reminders.remind_due() == 1
    # the second would be at 23:00 UTC = 18:00 local: allowed
    clock.now = datetime(2026, 3, 3, 23, 0, tzinfo=UTC)
    assert await clinic.w.services.reminders.remind_due() == 1
    clock.now = datetime(2026, 3, 4, 3, 0, tzinfo=UTC)
    assert await clinic.w.services.reminders.remind_due() == 0  # two at most
    (checkin,) = [c for c in await _checkins(db, patient_id) if c.status == "in_progress"]
    assert checkin.reminders_sent == 2 and checkin.next_reminder_at is None
    clock.now = datetime(2026, 3, 4, 9, 0, tzinfo=UTC)  # 20 h after 13:00
    await clinic.tick()
    (closed,) = [c for c in await _checkins(db, patient_id) if c.id == checkin.id]
    assert closed.status == "expired" and closed.partial


async def test_a_reminder_due_in_quiet_hours_waits_for_their_end(
    db: Database, clock: SimClock
) -> None:
    clinic = Clinic2(db, clock)
    clock.now = datetime(2026, 3, 3, 5, 0, tzinfo=UTC)
    patient_id = await enrolled(db, "tight", at=clock.now)
    await clinic.tick()
    clinic.w.services.context.clinic = Clinic(
        name="Lakeside", quiet_hours_start_local=time(16), quiet_hours_end_local=time(8)
    )
    clock.now = datetime(2026, 3, 3, 13, 0, tzinfo=UTC)
    await clinic.tick()  # sent at 08:00 local; reminder due 12:00 local
    clock.now = datetime(2026, 3, 3, 21, 30, tzinfo=UTC)  # 16:30 local: quiet
    assert await clinic.w.services.reminders.remind_due() == 0
    (checkin,) = [c for c in await _checkins(db, patient_id) if c.status == "sent"]
    assert checkin.next_reminder_at == datetime(2026, 3, 4, 13, 0, tzinfo=UTC)  # 08:00 local


async def test_check_ins_due_together_are_one_conversation(db: Database, clock: SimClock) -> None:
    """A weekly PHQ-9 (Monday 09:00) and a pre-session PHQ-9 (08:00, before a 10:00 session)
    fall within the two-hour window: one check-in asks PHQ-9 once, with the GAD-7 after."""
    clinic = Clinic2(db, clock)
    patient_id = await enrolled(db, "combo")
    await clinic.planner.add_session(patient_id, datetime(2026, 3, 9, 14, tzinfo=UTC), "iv")
    plan = live(await planned(db, patient_id))
    assert ("03-09 12:00", "phq9+gad7") in plan  # 08:00 EDT; the 09:00 PHQ-9 joins it
    assert ("03-09 13:00", "phq9") not in plan
    occurrences = await rows(db, PlannedOccurrence, PlannedOccurrence.patient_id == patient_id)
    shared = [o.key for o in occurrences if o.due_at.date().isoformat() == "2026-03-09"]
    assert sorted(shared) == ["before:1", "weekly:2026-03-09"]
    assert len({o.checkin_id for o in occurrences if o.key in shared}) == 1


async def test_an_unsent_pending_check_in_is_expired_as_missed(
    db: Database, clock: SimClock
) -> None:
    """A check-in never sent (the patient was paused) expires; nothing is sent late."""
    clinic = Clinic2(db, clock)
    patient_id = await enrolled(db, "weekly-phq9")
    await clinic.planner.plan_due()
    async with db.transaction() as session:
        patient = await Repository(session).lock_patient(patient_id)
        assert patient is not None
        patient.status = "paused"
    await clinic.tick()
    assert await _messages(db, patient_id) == 0
    clock.now = T0 + timedelta(days=3, minutes=1)
    await clinic.tick()
    # the first Monday's expired unsent; the next Monday's waits
    assert [c.status for c in await _checkins(db, patient_id)] == ["expired", "pending"]
    assert await _messages(db, patient_id) == 0


async def test_the_tick_plans_starts_and_delivers_through_the_app(
    db: Database, clock: SimClock, tmp_path: object
) -> None:
    """scheduler.loop.tick runs planning before starting: a newly enrolled patient on a
    protocol gets the baseline in the same tick."""
    app = build(Settings(database_url=str(db.url), clinic=QUIET), clock=clock)
    patient_id = await enrolled(db, "ketamine-iv-6")
    try:
        report = await tick(app)
    finally:
        await app.close()
    assert report.planned == 1 and report.started == 1 and report.delivery.sent >= 1
    assert await _messages(db, patient_id) == report.delivery.sent


class _Unanswered:
    """A provider that takes no message until `answer` is set (a test double at the
    channel port, standing for a paced or slow provider)."""

    name = "console"

    def __init__(self) -> None:
        self.answer = asyncio.Event()
        self.sent: list[str] = []

    async def send(self, address: str, message: Rendered, payload: dict[str, object]) -> None:
        await self.answer.wait()
        self.sent.append(address)


async def test_with_a_courier_the_tick_does_not_wait_for_sending(
    db: Database, clock: SimClock
) -> None:
    """`checkin run` and `checkin worker` deliver in a courier task: the tick plans and
    starts, wakes the courier and returns, however long the provider takes; the courier
    sends once the provider answers. (Without a courier the tick delivers itself.)"""
    app = build(Settings(database_url=str(db.url), clinic=QUIET), clock=clock)
    provider = _Unanswered()
    app.deliverer.channels = {"console": provider}
    patient_id = await enrolled(db, "ketamine-iv-6")
    try:
        async with courier(app):
            report = await asyncio.wait_for(tick(app), timeout=30)
            assert report.planned == 1 and report.started == 1 and report.delivery == Report()
            provider.answer.set()
            async with asyncio.timeout(30):
                while len(provider.sent) < await _messages(db, patient_id):
                    await asyncio.sleep(0.05)
        assert app.wake is None
    finally:
        await app.close()
    assert provider.sent and set(provider.sent) == {"p1"}


async def test_the_tick_refreshes_postgresql_statistics_after_growth(
    pg_db: Database, clock: SimClock
) -> None:
    """Once a worker has planned and started `analyze_after` check-ins, the tick analyzes
    the tables a wave grows, and waits twice as long before the next time."""
    app = build(Settings(database_url=str(pg_db.url), clinic=QUIET), clock=clock)
    app.analyze_after = 2
    await enrolled(pg_db, "ketamine-iv-6", address="stats")
    try:
        report = await tick(app)
    finally:
        await app.close()
    assert report.planned + report.started >= 2
    assert (app.grown_since_analyze, app.analyze_after) == (0, 4)
    async with pg_db.transaction() as session:
        found = await session.exec(
            sa_text("SELECT reltuples FROM pg_class WHERE relname = 'checkin'")
        )
        assert found.one()[0] >= 1  # -1 until the table is first analyzed


async def _checkins(db: Database, patient_id: int) -> list[Checkin]:
    return await rows(db, Checkin, Checkin.patient_id == patient_id)


async def _messages(db: Database, patient_id: int) -> int:
    return len(
        await rows(
            db,
            OutboundMessage,
            OutboundMessage.recipient_kind == "patient",
            OutboundMessage.recipient_id == patient_id,
        )
    )


# ---- a chunk of patients planned together (Planner.plan_chunk) ---------------------------


async def _plan_chunk(clinic: Clinic2, ids: list[int]) -> int:
    async with clinic.db.transaction() as session:
        return await clinic.planner.plan_chunk(session, ids, clinic.clock())


async def _chunk_of_everyone(db: Database) -> dict[str, int]:
    """Patients a planning chunk can meet: plannable ones, and ones it must leave alone."""
    found = {
        "weekly": await enrolled(db, "weekly-phq9", address="weekly"),
        "combo": await enrolled(db, "combo", address="combo"),
        "unknown": await enrolled(db, "no-such-protocol", address="unknown"),
        "paused": await enrolled(db, "weekly-phq9", address="paused"),
    }
    async with db.transaction() as session:
        paused = await Repository(session).lock_patient(found["paused"])
        assert paused is not None
        paused.status = "paused"
        await Repository(session).add(paused)
    return found


async def test_a_chunk_plans_each_patient_as_planning_it_alone_does(
    db: Database, clock: SimClock
) -> None:
    together, alone = Clinic2(db, clock), Clinic2(db, clock)
    chunk = await _chunk_of_everyone(db)
    single = {role: await enrolled(db, "combo" if role == "combo" else "weekly-phq9",
                                   address=f"1{role}") for role in ("weekly", "combo")}  # fmt: skip
    added = await _plan_chunk(together, list(chunk.values()))
    assert added == sum([await alone.planner.plan_patient(i) for i in single.values()])
    for role, patient_id in single.items():
        assert live(await planned(db, chunk[role])) == live(await planned(db, patient_id))
    patients = {p.id: p for p in await rows(db, Patient)}
    horizon = T0 + together.planner.plan_ahead
    assert patients[chunk["weekly"]].planned_until == horizon
    assert patients[chunk["unknown"]].planned_until == horizon  # looked at next horizon
    assert patients[chunk["paused"]].planned_until is None  # planned when it is active
    assert await planned(db, chunk["paused"]) == await planned(db, chunk["unknown"]) == []
    assert all(p.plan_lease_until is None for p in patients.values())


async def test_a_chunk_planned_twice_or_by_two_workers_at_once_adds_nothing(
    db: Database, clock: SimClock
) -> None:
    one, two = Clinic2(db, clock), Clinic2(db, clock)
    ids = list((await _chunk_of_everyone(db)).values())
    first = await asyncio.gather(_plan_chunk(one, ids), _plan_chunk(two, ids))
    assert sorted(first)[0] == 0  # the second waited for the first's locks, found it all
    before = await rows(db, Checkin)
    assert await _plan_chunk(one, ids) == 0
    assert len(await rows(db, Checkin)) == len(before) == sum(first)


async def test_occurrences_stored_meanwhile_make_no_check_in(
    db: Database, clock: SimClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Should a bundle's occurrence already be stored when the chunk inserts it (another
    worker got there between the look and the insert), the occurrence's unique key decides:
    no second check-in."""
    clinic = Clinic2(db, clock)
    patient_id = await enrolled(db, "combo")
    assert await _plan_chunk(clinic, [patient_id]) > 0
    before = await planned(db, patient_id)

    async def nothing_known(*_: object) -> set[tuple[int, str]]:
        return set()

    monkeypatch.setattr("bot.app.planning.planner._known_pairs", nothing_known)
    async with db.transaction() as session:  # as if the plan had run out
        await session.exec(update(Patient).values(planned_until=None))  # type: ignore[call-overload]
    assert await _plan_chunk(clinic, [patient_id]) == 0
    assert await planned(db, patient_id) == before


async def test_a_patient_that_cannot_be_planned_holds_up_no_one_in_its_chunk(
    db: Database, clock: SimClock, caplog: pytest.LogCaptureFixture
) -> None:
    clinic = Clinic2(db, clock)
    good = [await enrolled(db, "weekly-phq9", address=f"g{n}") for n in range(3)]
    bad = await enrolled(db, "weekly-phq9", address="bad")
    async with db.transaction() as session:
        await session.exec(  # type: ignore[call-overload]
            update(Patient).where(col(Patient.id) == bad).values(timezone="Nowhere/Atlantis")
        )
    assert await clinic.planner.plan_due() == 2 * len(good)
    assert "one by one now" in caplog.text and f"patient {bad} could not be planned" in caplog.text
    assert await planned(db, bad) == []

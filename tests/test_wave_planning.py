"""A wave planned a chunk at a time stores exactly what the pure core plans for each
patient, across daylight-saving changes, on a real SQLite file and a real PostgreSQL
server.

The chunk path computes the pure plan once for patients whose inputs are equal (a wave
enrolled together) and writes every patient's rows with one statement per table. These
tests plan patients in New York and Madrid around each zone's spring-forward and
fall-back days, with quiet hours that the changes cross and rules whose times move
"later" and "earlier", several patients sharing every input and others differing in one
input only (zone, enrolment time), and compare each patient's stored check-ins with
:func:`bot.domain.schedule.plan` and :func:`bot.domain.schedule.bundle` called for that
patient alone.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest
from sqlalchemy import update

from bot.app.planning.planner import Planner
from bot.app.planning.rows import PatientPlan, lock_plannable, store_plans
from bot.config import Clinic
from bot.domain.schedule import Protocol, bundle, plan, protocol_from_mapping
from bot.domain.schedule.wallclock import QuietHours
from bot.storage.database import Database
from bot.storage.repository import Repository
from bot.storage.tables import Checkin, Patient, PlannedOccurrence
from tests.test_services import CATALOG, SimClock, rows

NY, MADRID = "America/New_York", "Europe/Madrid"
# quiet hours 01:00-03:00 local: both zones change their clocks inside them
CLINIC = Clinic(name="Wave", quiet_hours_start_local=time(1), quiet_hours_end_local=time(3))
QUIET = QuietHours(time(1), time(3))
PROTOCOL = protocol_from_mapping(
    "dst",
    {
        "rules": {
            # enrolment-relative: 40 h after enrolment, wherever that lands
            "baseline": {"instruments": ["phq2"], "from_enrollment": "40h"},
            # 02:30 local every day: skipped on spring-forward days, shown twice on
            # fall-back days, always in quiet hours: moved to their end
            "night_later": {
                "instruments": ["phq9"],
                "weekdays": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
                "at": "02:30",
                "quiet_hours": "later",
                "expires_after": "20h",
            },
            # the same time moved to half an hour before quiet hours began
            "night_earlier": {
                "instruments": ["gad7"],
                "weekdays": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
                "at": "02:30",
                "quiet_hours": "earlier",
                "expires_after": "6h",
            },
            # 01:30: shown twice in New York on its fall-back day (fold), in quiet hours
            "weekly": {
                "instruments": ["phq9", "gad7"],
                "weekdays": ["sun"],
                "at": "01:30",
                "expires_after": "2d",
            },
        }
    },
    "test",
)
PROTOCOLS = {"dst": PROTOCOL}
PLAN_AHEAD = timedelta(days=7)
WINDOW = timedelta(hours=2)

# (zone, the day its clocks change): spring forward, fall back
CHANGES = [
    (NY, datetime(2026, 3, 8, tzinfo=UTC)),
    (NY, datetime(2026, 11, 1, tzinfo=UTC)),
    (MADRID, datetime(2026, 3, 29, tzinfo=UTC)),
    (MADRID, datetime(2026, 10, 25, tzinfo=UTC)),
]


async def _enrol(db: Database, zone: str, at: datetime, n: int) -> int:
    async with db.transaction() as session:
        patient = Patient(
            display_name=f"P{n}", timezone=zone, channel="console", address=f"wave-{n}",
            status="active", protocol="dst", consent_at=at, created_at=at,
        )  # fmt: skip
        await Repository(session).add(patient)
    assert patient.id is not None
    return patient.id


def _expected(
    protocol: Protocol, zone: str, enrolled_at: datetime, now: datetime
) -> list[tuple[datetime, datetime, tuple[str, ...], tuple[str, ...]]]:
    """What the pure core plans for one patient, as the planner would store it: bundles
    (due, expires, instruments, member keys) of the occurrences not already too late."""
    catchup = max(rule.expires_after for rule in protocol.rules)
    found = plan(
        protocol,
        timezone=zone,
        enrolled_at=enrolled_at,
        sessions=[],
        start=now - catchup,
        end=now + PLAN_AHEAD + WINDOW,
        quiet=QUIET,
    )
    fresh = [o for o in found if o.expires_at > now]
    return sorted(
        (g.due_at, g.expires_at, g.instruments, tuple(sorted(m.key for m in g.members)))
        for g in bundle(fresh, WINDOW)
        if g.due_at < now + PLAN_AHEAD
    )


async def _stored(
    db: Database, patient_id: int
) -> list[tuple[datetime, datetime, tuple[str, ...], tuple[str, ...]]]:
    checkins = await rows(db, Checkin, Checkin.patient_id == patient_id)
    occurrences = await rows(db, PlannedOccurrence, PlannedOccurrence.patient_id == patient_id)
    keys: dict[int | None, list[str]] = {}
    for o in occurrences:
        keys.setdefault(o.checkin_id, []).append(o.key)
    return sorted(
        (c.due_at.astimezone(UTC), c.expires_at.astimezone(UTC), tuple(c.instruments),
         tuple(sorted(keys.get(c.id, []))))
        for c in checkins
    )  # fmt: skip


@pytest.mark.parametrize(("zone", "change"), CHANGES, ids=["ny-spring", "ny-fall", "madrid-spring", "madrid-fall"])  # fmt: skip
async def test_a_wave_across_a_clock_change_is_stored_as_the_pure_core_plans_it(
    db: Database, zone: str, change: datetime
) -> None:
    """Twelve patients planned in one chunk, two days before the change: six share every
    input, three share the enrolment time but live in the other zone, three enrolled at
    other times (one in the hour the clock skips or repeats); each patient's stored
    check-ins equal the pure core's plan for that patient alone."""
    now = change - timedelta(days=2)
    other = MADRID if zone == NY else NY
    shared = now - timedelta(minutes=5)
    patients: list[tuple[int, str, datetime]] = []
    for n in range(6):
        patients.append((await _enrol(db, zone, shared, n), zone, shared))
    for n in range(6, 9):
        patients.append((await _enrol(db, other, shared, n), other, shared))
    for n, minutes in zip(range(9, 12), (30, 95, 24 * 60 + 7), strict=True):
        at = now - timedelta(minutes=minutes)
        patients.append((await _enrol(db, zone, at, n), zone, at))
    planner = Planner(db, CATALOG, PROTOCOLS, CLINIC, SimClock(now), plan_ahead=PLAN_AHEAD,
                      bundle_window=WINDOW, batch=500)  # fmt: skip

    assert await planner.plan_due() > 0

    for patient_id, patient_zone, enrolled_at in patients:
        expected = _expected(PROTOCOL, patient_zone, enrolled_at, now)
        assert expected, "the protocol plans something in the week"
        assert await _stored(db, patient_id) == expected, (patient_zone, enrolled_at)
    # the change itself is in the plan: a 02:30 moved to 03:00 on the day the clock skips
    # or repeats it, in every patient of the zone
    assert any(due.date() == change.date() for due, *_ in await _stored(db, patients[0][0]))


async def test_planning_the_same_wave_again_stores_nothing_more(db: Database) -> None:
    """The shared path keeps planning idempotent: a second pass over the same patients
    (their plan's end forgotten) finds every occurrence stored and adds no check-in."""
    now = CHANGES[0][1] - timedelta(days=2)
    ids = [await _enrol(db, NY, now - timedelta(minutes=5), n) for n in range(5)]
    planner = Planner(db, CATALOG, PROTOCOLS, CLINIC, SimClock(now), plan_ahead=PLAN_AHEAD,
                      bundle_window=WINDOW)  # fmt: skip
    first = await planner.plan_due()
    before = {i: await _stored(db, i) for i in ids}
    async with db.transaction() as session:
        await session.exec(update(Patient).values(planned_until=None))
    assert first > 0
    assert await planner.plan_due() == 0
    assert {i: await _stored(db, i) for i in ids} == before


async def test_a_bundle_planned_meanwhile_gets_no_second_check_in(db: Database) -> None:
    """store_plans given a bundle one of whose occurrences is stored already (another
    pass planned it in between): no check-in is kept for the bundle, the new occurrence is
    stored pointing at none, and a bundle of the same pass with nothing stored is kept."""
    now = CHANGES[0][1] - timedelta(days=2)
    patient_id = await _enrol(db, NY, now, 0)
    found = plan(PROTOCOL, timezone=NY, enrolled_at=now, sessions=[], start=now,
                 end=now + PLAN_AHEAD, quiet=QUIET)  # fmt: skip
    groups = bundle(found, WINDOW)
    clash = next(g for g in groups if len(g.members) > 1)
    async with db.transaction() as session:
        taken = clash.members[0]
        session.add(PlannedOccurrence(patient_id=patient_id, key=taken.key, rule=taken.rule,
                                      due_at=taken.due_at))  # fmt: skip
    async with db.transaction() as session:
        (patient,) = await lock_plannable(session, [patient_id])
        done = PatientPlan(patient, now + PLAN_AHEAD, found, groups)
        await store_plans(session, [done], CATALOG)
    stored = await _stored(db, patient_id)
    assert len(done.created) == len(groups) - 1 == len(stored)
    assert clash.due_at not in {due for due, *_ in stored}
    occurrences = await rows(db, PlannedOccurrence, PlannedOccurrence.patient_id == patient_id)
    loose = {o.key for o in occurrences if o.checkin_id is None}
    assert loose == {m.key for m in clash.members}
    assert len(await rows(db, Checkin, Checkin.patient_id == patient_id)) == len(groups) - 1

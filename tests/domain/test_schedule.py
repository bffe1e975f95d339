"""Planning check-ins: wall-clock times across clock changes, quiet hours, session-relative
rules, bundling, idempotency keys, protocol files. Tables first; properties last."""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.domain.errors import ConfigError
from bot.domain.schedule import (
    NO_QUIET_HOURS,
    Bound,
    Calendar,
    EnrollmentRelative,
    Occurrence,
    Protocol,
    QuietHours,
    Rule,
    Session,
    SessionRelative,
    advance,
    bundle,
    defer,
    example_protocols,
    in_quiet_hours,
    next_due,
    plan,
    protocol_from_mapping,
    reminders_due,
    wall_clock,
)
from bot.domain.schedule.config import parse_bound, parse_duration
from bot.instruments import Catalog

NY = "America/New_York"
EVERY_DAY = frozenset(range(7))


def local(
    zone: str, year: int, month: int, day: int, hour: int = 0, minute: int = 0, *, fold: int = 0
) -> datetime:
    """An aware local datetime: local(NY, 2026, 3, 8, 9, 30)."""
    return datetime(year, month, day, hour, minute, tzinfo=ZoneInfo(zone), fold=fold)


def one_rule(timing: Calendar | SessionRelative | EnrollmentRelative, **kw: Any) -> Protocol:
    return Protocol("test", (Rule("r", ("phq9",), timing, **kw),))


def daily(at: time) -> Protocol:
    return one_rule(Calendar(EVERY_DAY, at))


def plan_days(
    protocol: Protocol,
    zone: str,
    first: date,
    days: int,
    *,
    quiet: QuietHours = NO_QUIET_HOURS,
    sessions: Sequence[Session] = (),
    enrolled_at: datetime | None = None,
) -> list[Occurrence]:
    """Plan `days` whole local days from `first`, enrolled at its start unless told."""
    start = local(zone, first.year, first.month, first.day)
    stop = first + timedelta(days=days)
    return plan(
        protocol,
        timezone=zone,
        enrolled_at=enrolled_at or start,
        sessions=sessions,
        start=start,
        end=local(zone, stop.year, stop.month, stop.day),
        quiet=quiet,
    )


def walls(occurrences: Sequence[Occurrence], zone: str) -> list[str]:
    return [f"{o.due_at.astimezone(ZoneInfo(zone)):%m-%d %H:%M%z}" for o in occurrences]


# ---- the example protocols ---------------------------------------------------------------


KETAMINE = protocol_from_mapping("ketamine-iv-6", example_protocols()["ketamine-iv-6"], "x.toml")
ENROLLED = local(NY, 2026, 2, 27, 10)  # a Friday
SERIES_DAYS = [(3, 2), (3, 4), (3, 6), (3, 9), (3, 11), (3, 13)]  # Mon/Wed/Fri for 2 weeks


def series(days: Sequence[tuple[int, int]] = SERIES_DAYS, hour: int = 10) -> list[Session]:
    return [
        Session(n, local(NY, 2026, m, d, hour).astimezone(UTC))
        for n, (m, d) in enumerate(days, start=1)
    ]


SERIES_END = local(NY, 2026, 3, 15)  # the Sunday after session 6's next-day check-in


def plan_ketamine(sessions: Sequence[Session], end: datetime = SERIES_END) -> list[Occurrence]:
    return plan(
        KETAMINE,
        timezone=NY,
        enrolled_at=ENROLLED,
        sessions=sessions,
        start=ENROLLED,
        end=end,
        quiet=QuietHours(),
    )


def test_example_protocols_parse_against_the_catalog(catalog: Catalog) -> None:
    """Both shipped examples parse, naming only instruments the catalog has."""
    parsed = {
        name: protocol_from_mapping(name, data, "config.toml", instruments=catalog.keys)
        for name, data in example_protocols().items()
    }
    assert list(parsed) == ["weekly-phq9", "ketamine-iv-6"]
    assert [r.name for r in parsed["ketamine-iv-6"].rules] == [
        "baseline",
        "before_session",
        "after_session",
        "maintenance",
    ]
    weekly = parsed["weekly-phq9"].rule("weekly")
    assert weekly.timing == Calendar(frozenset({0}), time(9, 0))


def test_ketamine_series_gives_the_expected_check_ins() -> None:
    """Six sessions give one baseline, six pre-session PHQ-9s and six 24 h checks, in order."""
    found = plan_ketamine(series())
    assert Counter(o.rule for o in found) == {
        "baseline": 1,
        "before_session": 6,
        "after_session": 6,
    }
    assert [o.key for o in found[:5]] == [
        "baseline:enrolled",
        "before_session:1",
        "after_session:1",
        "before_session:2",
        "after_session:2",
    ]
    assert found[0].instruments == ("phq9", "gad7")
    assert found[1].due_at == local(NY, 2026, 3, 2, 8).astimezone(UTC)
    assert found[2].instruments == ("side_effects", "phq9")
    assert found[2].due_at == local(NY, 2026, 3, 3, 10).astimezone(UTC)
    assert [o.session for o in found if o.rule == "after_session"] == [1, 2, 3, 4, 5, 6]


def test_maintenance_starts_after_the_last_session() -> None:
    """Weekly maintenance PHQ-9s begin the Monday after the last session, at 09:00 local."""
    found = plan_ketamine(series(), end=local(NY, 2026, 4, 7))
    weekly = [o for o in found if o.rule == "maintenance"]
    assert walls(weekly, NY) == [
        "03-16 09:00-0400",
        "03-23 09:00-0400",
        "03-30 09:00-0400",
        "04-06 09:00-0400",
    ]


def test_moving_a_session_moves_its_check_ins_under_the_same_keys() -> None:
    """Session 3 moved a day later: its two check-ins move, keep their keys, nothing else changes."""
    before = {o.key: o.due_at for o in plan_ketamine(series())}
    moved = series()
    moved[2] = Session(3, moved[2].at + timedelta(days=1))
    after = {o.key: o.due_at for o in plan_ketamine(moved)}
    assert after.keys() == before.keys()
    changed = {k for k in after if after[k] != before[k]}
    assert changed == {"before_session:3", "after_session:3"}
    assert after["after_session:3"] - before["after_session:3"] == timedelta(days=1)


def test_cancelling_a_session_removes_its_check_ins() -> None:
    """A cancelled session 3 has no check-ins; the others stay."""
    cancelled = series()
    cancelled[2] = Session(3, cancelled[2].at, cancelled=True)
    keys = {o.key for o in plan_ketamine(cancelled)}
    assert keys == {o.key for o in plan_ketamine(series())} - {
        "before_session:3",
        "after_session:3",
    }


def test_sessions_beyond_the_series_get_no_session_check_ins() -> None:
    """A seventh session gets no pre/post check-in (max_session = 6) and moves maintenance on."""
    sessions = [*series(), Session(7, local(NY, 2026, 3, 18, 10).astimezone(UTC))]
    found = plan_ketamine(sessions, end=local(NY, 2026, 3, 31))
    assert not [o for o in found if o.session == 7]
    assert [o.key for o in found if o.rule == "maintenance"] == [
        "maintenance:2026-03-23",
        "maintenance:2026-03-30",
    ]


def test_the_same_session_number_twice_is_refused() -> None:
    """Two live sessions numbered 3 are a fault in the caller's data, not something to guess."""
    with pytest.raises(ValueError, match="session 3 is recorded twice"):
        plan_ketamine([*series(), Session(3, ENROLLED)])


def test_baseline_once_and_keys_unique_across_a_year() -> None:
    """A year of ketamine plans: one baseline, 13 + weekly check-ins, no key twice."""
    found = plan_ketamine(series(), end=ENROLLED + timedelta(days=365))
    keys = [o.key for o in found]
    assert len(keys) == len(set(keys))
    assert [o.rule for o in found].count("baseline") == 1
    assert [o.rule for o in found].count("maintenance") == 50  # 2026-03-16 .. 2027-02-22


def test_plan_is_deterministic() -> None:
    """The same inputs give the same plan, whatever order the sessions come in."""
    assert plan_ketamine(series()) == plan_ketamine(series()[::-1]) == plan_ketamine(series())


SESSION_FILTERS = [
    (SessionRelative(timedelta(hours=24)), [1, 2, 3, 4, 5, 6, 7, 8]),
    (SessionRelative(timedelta(hours=24), max_session=3), [1, 2, 3]),
    (SessionRelative(timedelta(hours=24), numbers=frozenset({1, 4})), [1, 4]),
    (SessionRelative(timedelta(hours=-2), max_session=5, numbers=frozenset({4, 6})), [4]),
]


@pytest.mark.parametrize(("timing", "numbers"), SESSION_FILTERS)
def test_session_filters(timing: SessionRelative, numbers: list[int]) -> None:
    """max_session keeps sessions 1..N, a set keeps exactly those numbers, both intersect."""
    days = [(3, d) for d in range(2, 10)]
    found = plan_days(one_rule(timing), NY, date(2026, 2, 27), 20, sessions=series(days))
    assert [o.session for o in found] == numbers
    assert [o.key for o in found] == [f"r:{n}" for n in numbers]


# ---- clocks changing ---------------------------------------------------------------------

# (zone, day of the change, UTC offset of 09:00 the day before, the day after)
CHANGES = [
    (NY, date(2026, 3, 8), -5, -4),
    (NY, date(2026, 11, 1), -4, -5),
    ("Europe/London", date(2026, 3, 29), 0, 1),
    ("Europe/London", date(2026, 10, 25), 1, 0),
    ("Australia/Sydney", date(2026, 4, 5), 11, 10),
    ("Australia/Sydney", date(2026, 10, 4), 10, 11),
]


@pytest.mark.parametrize(("zone", "day", "before", "after"), CHANGES)
def test_daily_rule_keeps_its_wall_time_across_a_change(
    zone: str, day: date, before: int, after: int
) -> None:
    """A daily 09:00 check-in stays at 09:00 local on both sides; its UTC offset changes."""
    found = plan_days(daily(time(9, 0)), zone, day - timedelta(days=2), 5, quiet=QuietHours())
    assert [o.due_at.astimezone(ZoneInfo(zone)).time() for o in found] == [time(9, 0)] * 5
    offsets = [o.due_at.astimezone(ZoneInfo(zone)).utcoffset() for o in found]
    assert offsets[0] == timedelta(hours=before) and offsets[-1] == timedelta(hours=after)


@pytest.mark.parametrize(("zone", "day", "before", "after"), CHANGES)
def test_weekly_rule_keeps_its_wall_time_across_a_change(
    zone: str, day: date, before: int, after: int
) -> None:
    """A Sunday 09:00 weekly check-in (the changes are all on Sundays) keeps 09:00 local."""
    rule = one_rule(Calendar(frozenset({6}), time(9, 0)))
    found = plan_days(rule, zone, day - timedelta(days=7), 15, quiet=QuietHours())
    assert [o.key for o in found] == [f"r:{day + timedelta(days=d)}" for d in (-7, 0, 7)]
    assert {o.due_at.astimezone(ZoneInfo(zone)).time() for o in found} == {time(9, 0)}
    assert found[0].due_at.utcoffset() == timedelta(0)  # returned in UTC


# (zone, day, a local time the clock skips, the instant it becomes: the end of the gap)
GAPS = [
    (NY, date(2026, 3, 8), time(2, 30), datetime(2026, 3, 8, 7, 0, tzinfo=UTC)),  # 03:00 EDT
    (NY, date(2026, 3, 8), time(2, 0), datetime(2026, 3, 8, 7, 0, tzinfo=UTC)),
    ("Europe/London", date(2026, 3, 29), time(1, 30), datetime(2026, 3, 29, 1, 0, tzinfo=UTC)),
    ("Australia/Sydney", date(2026, 10, 4), time(2, 30), datetime(2026, 10, 3, 16, 0, tzinfo=UTC)),
]  # fmt: skip


@pytest.mark.parametrize(("zone", "day", "at", "expected"), GAPS)
def test_a_skipped_time_lands_once_after_the_gap(
    zone: str, day: date, at: time, expected: datetime
) -> None:
    """A daily rule at a time the clock skips fires once that day, when the clock jumps."""
    found = plan_days(daily(at), zone, day - timedelta(days=1), 3)
    assert [o.key for o in found] == [f"r:{day + timedelta(days=d)}" for d in (-1, 0, 1)]
    assert found[1].due_at == expected
    assert found[0].due_at.astimezone(ZoneInfo(zone)).time() == at
    assert found[2].due_at.astimezone(ZoneInfo(zone)).time() == at


# (zone, day, a local time the clock shows twice, its first showing in UTC)
FOLDS = [
    (NY, date(2026, 11, 1), time(1, 30), datetime(2026, 11, 1, 5, 30, tzinfo=UTC)),  # EDT
    ("Europe/London", date(2026, 10, 25), time(1, 30), datetime(2026, 10, 25, 0, 30, tzinfo=UTC)),
    ("Australia/Sydney", date(2026, 4, 5), time(2, 30), datetime(2026, 4, 4, 15, 30, tzinfo=UTC)),
]  # fmt: skip


@pytest.mark.parametrize(("zone", "day", "at", "expected"), FOLDS)
def test_a_repeated_time_fires_once_at_its_first_showing(
    zone: str, day: date, at: time, expected: datetime
) -> None:
    """A daily rule at a time the clock shows twice fires once, at the earlier instant."""
    found = plan_days(daily(at), zone, day - timedelta(days=1), 3)
    assert len(found) == 3
    assert found[1].due_at == expected
    assert len({o.due_at for o in found}) == 3


def test_a_skipped_time_inside_quiet_hours_is_deferred_once() -> None:
    """02:30 on the spring-forward night is quiet by default: it comes at 08:00, once."""
    found = plan_days(daily(time(2, 30)), NY, date(2026, 3, 8), 1, quiet=QuietHours())
    assert walls(found, NY) == ["03-08 08:00-0400"]
    assert found[0].key == "r:2026-03-08"


def test_session_offsets_are_elapsed_time_across_a_change() -> None:
    """24 h after a Saturday 10:00 EST session is Sunday 11:00 EDT: elapsed time, not wall time."""
    session = Session(1, local(NY, 2026, 3, 7, 10).astimezone(UTC))
    found = plan_days(
        one_rule(SessionRelative(timedelta(hours=24))), NY, date(2026, 3, 6), 4, sessions=[session]
    )
    assert walls(found, NY) == ["03-08 11:00-0400"]


# ---- quiet hours -------------------------------------------------------------------------

LATE = QuietHours(time(22, 0), time(6, 0))
LUNCH = QuietHours(time(13, 0), time(14, 0))
# (quiet hours, local time on Wed 2026-06-10 in London, where it goes: day offset, time)
QUIET = [
    (QuietHours(), time(12, 0), 0, time(12, 0)),
    (QuietHours(), time(7, 59), 0, time(8, 0)),
    (QuietHours(), time(8, 0), 0, time(8, 0)),  # the first allowed minute
    (QuietHours(), time(19, 59), 0, time(19, 59)),
    (QuietHours(), time(20, 0), 1, time(8, 0)),  # the first quiet minute
    (QuietHours(), time(23, 30), 1, time(8, 0)),  # across midnight
    (QuietHours(), time(0, 0), 0, time(8, 0)),
    (LATE, time(21, 0), 0, time(21, 0)),
    (LATE, time(23, 0), 1, time(6, 0)),
    (LATE, time(5, 0), 0, time(6, 0)),
    (LUNCH, time(13, 30), 0, time(14, 0)),  # quiet hours within one day
    (LUNCH, time(14, 0), 0, time(14, 0)),
    (NO_QUIET_HOURS, time(3, 0), 0, time(3, 0)),  # disabled
    (QuietHours(time(8, 0), time(8, 0)), time(23, 0), 0, time(23, 0)),  # equal ends: disabled
]


@pytest.mark.parametrize(("quiet", "at", "days", "expected"), QUIET)
def test_quiet_hours_defer_to_their_end(
    quiet: QuietHours, at: time, days: int, expected: time
) -> None:
    """A time inside quiet hours moves to the next allowed local time; others stay."""
    zone = ZoneInfo("Europe/London")
    due = defer(datetime.combine(date(2026, 6, 10), at, zone), zone, quiet)
    assert due.tzinfo is UTC
    assert due.astimezone(zone) == datetime.combine(date(2026, 6, 10 + days), expected, zone)


def test_deferral_keeps_the_key_of_the_intended_day() -> None:
    """A daily 21:00 check-in comes at 08:00 the next morning, keyed by the day it was meant for."""
    found = plan_days(
        daily(time(21, 0)), NY, date(2026, 6, 10), 2, quiet=QuietHours(), enrolled_at=ENROLLED
    )
    assert [(o.key, w) for o, w in zip(found, walls(found, NY), strict=True)] == [
        ("r:2026-06-09", "06-10 08:00-0400"),  # planned on the 9th, deferred into the window
        ("r:2026-06-10", "06-11 08:00-0400"),
    ]


def test_quiet_hours_ending_in_the_repeated_hour() -> None:
    """Quiet hours ending at 01:30 on the fall-back night: the second 01:10 waits for 01:30 EST."""
    zone = ZoneInfo(NY)
    quiet = QuietHours(time(23, 0), time(1, 30))
    second = local(NY, 2026, 11, 1, 1, 10, fold=1)
    assert defer(second, zone, quiet) == local(NY, 2026, 11, 1, 1, 30, fold=1).astimezone(UTC)
    first = local(NY, 2026, 11, 1, 1, 10)
    assert defer(first, zone, quiet) == local(NY, 2026, 11, 1, 1, 30).astimezone(UTC)


# ---- bundling ----------------------------------------------------------------------------


def test_check_ins_far_apart_are_not_bundled() -> None:
    """'After session 2' (Thu 10:00) and 'before session 3' (Fri 08:00) stay two conversations."""
    found = [o for o in plan_ketamine(series()) if o.key in {"after_session:2", "before_session:3"}]
    bundles = bundle(found)
    assert [b.key for b in bundles] == ["after_session:2", "before_session:3"]
    assert [b.instruments for b in bundles] == [("side_effects", "phq9"), ("phq9",)]


def test_check_ins_within_the_window_share_one_conversation() -> None:
    """'After session 2' (Fri 09:00) joins 'before session 3' (Fri 08:00, session at 10:00)
    in one conversation that asks PHQ-9 once and closes when session 3 begins."""
    sessions = series([(3, 2), (3, 5), (3, 6)])
    sessions[1] = Session(2, local(NY, 2026, 3, 5, 9).astimezone(UTC))  # Thu 09:00
    found = [o for o in plan_ketamine(sessions) if o.key in {"after_session:2", "before_session:3"}]
    (merged,) = bundle(found)
    assert merged.key == "after_session:2+before_session:3"
    assert merged.instruments == ("phq9", "side_effects")
    assert merged.due_at == local(NY, 2026, 3, 6, 8).astimezone(UTC)
    assert merged.expires_at == local(NY, 2026, 3, 6, 10).astimezone(UTC)  # session 3 starts
    assert (merged.reminder_after, merged.max_reminders) == (timedelta(hours=1), 2)


def test_a_check_in_due_when_a_session_begins_is_not_bundled_before_it() -> None:
    """'After session 2' due at 10:00, just as session 3 begins, is its own conversation:
    bundled with 'before session 3' it would close the moment it came due."""
    days = [(3, 2), (3, 5), (3, 6)]  # sessions 2 and 3 on Thu and Fri, both 10:00
    found = [
        o for o in plan_ketamine(series(days)) if o.key in {"after_session:2", "before_session:3"}
    ]
    assert [b.key for b in bundle(found)] == ["before_session:3", "after_session:2"]


def test_weekly_and_pre_session_phq9_on_one_morning() -> None:
    """A Monday 09:00 weekly PHQ-9 and an 08:00 pre-session PHQ-9 become one PHQ-9."""
    monday = date(2026, 3, 16)
    session = Session(7, local(NY, 2026, 3, 16, 10).astimezone(UTC))
    weekly = plan_days(one_rule(Calendar(frozenset({0}), time(9, 0))), NY, monday, 1)
    pre = plan_days(
        one_rule(SessionRelative(timedelta(hours=-2))), NY, monday, 1, sessions=[session]
    )
    (merged,) = bundle([*weekly, *pre])
    assert merged.instruments == ("phq9",)
    assert merged.key == "r:2026-03-16+r:7"


BUNDLE_WINDOWS = [
    (timedelta(hours=2), 1),  # inclusive: exactly two hours apart still bundles
    (timedelta(hours=1, minutes=59), 2),
    (timedelta(0), 2),
]


@pytest.mark.parametrize(("window", "count"), BUNDLE_WINDOWS)
def test_bundle_window_edges(window: timedelta, count: int) -> None:
    """Two occurrences exactly two hours apart bundle under a 2 h window and not under less."""
    every_day = frozenset(range(7))
    protocol = Protocol(
        "two",
        (
            Rule("early", ("phq9",), Calendar(every_day, time(8))),
            Rule("late", ("gad7",), Calendar(every_day, time(10))),
        ),
    )
    found = plan_days(protocol, NY, date(2026, 3, 6), 1)
    assert len(bundle(found, window)) == count


def test_bundle_drops_a_repeated_key() -> None:
    """The same occurrence given twice (overlapping plans) is asked once."""
    found = plan_ketamine(series())[:2]
    assert [b.key for b in bundle([*found, *found])] == [o.key for o in found]


# ---- reminders and next_due --------------------------------------------------------------

SENT = local(NY, 2026, 6, 10, 10)
# (reminders sent, reminder_after, max, now, quiet, due?)
REMINDERS = [
    (0, timedelta(hours=4), 2, SENT + timedelta(hours=3, minutes=59), NO_QUIET_HOURS, False),
    (0, timedelta(hours=4), 2, SENT + timedelta(hours=4), NO_QUIET_HOURS, True),
    (1, timedelta(hours=4), 2, SENT + timedelta(hours=4), NO_QUIET_HOURS, True),
    (2, timedelta(hours=4), 2, SENT + timedelta(hours=9), NO_QUIET_HOURS, False),  # used up
    (0, None, 0, SENT + timedelta(days=1), NO_QUIET_HOURS, False),  # no reminders
    (0, timedelta(hours=11), 1, SENT + timedelta(hours=11), QuietHours(), False),  # 21:00
    (0, timedelta(hours=11), 1, SENT + timedelta(hours=22), QuietHours(), True),  # 08:00
]


@pytest.mark.parametrize(("sent", "after", "most", "now", "quiet", "due"), REMINDERS)
def test_reminders_due(
    sent: int, after: timedelta | None, most: int, now: datetime, quiet: QuietHours, due: bool
) -> None:
    """A reminder is due `reminder_after` the latest message, up to the limit, never in quiet hours."""
    assert reminders_due(SENT, sent, after, most, now, timezone=NY, quiet=quiet) is due


def test_next_due_is_strictly_after() -> None:
    """next_due from Monday 09:00 itself is the following Monday; from Sunday, that Monday."""
    rule = Rule("weekly", ("phq9",), Calendar(frozenset({0}), time(9, 0)))
    monday = local(NY, 2026, 3, 16, 9)
    kw: dict[str, Any] = {"timezone": NY, "enrolled_at": ENROLLED, "quiet": QuietHours()}
    found = next_due(rule, after=monday, **kw)
    assert found is not None and found.key == "weekly:2026-03-23"
    found = next_due(rule, after=monday - timedelta(days=1), **kw)
    assert found is not None and found.key == "weekly:2026-03-16"
    start_later = Rule(
        "weekly", ("phq9",), Calendar(frozenset({0}), time(9), start=Bound("last_session"))
    )
    assert next_due(start_later, after=monday, **kw) is None  # no session yet: not started


# ---- calendar bounds and intervals -------------------------------------------------------

BOUNDS = [
    (Calendar(frozenset({0}), time(9), every_weeks=2), ["03-02", "03-16", "03-30"]),
    (Calendar(frozenset({0}), time(9), start=Bound("first_session")), ["03-09", "03-16", "03-23", "03-30"]),
    (Calendar(frozenset({0}), time(9), end=Bound("session", number=2)), ["03-02", "03-09", "03-16", "03-23"]),
    (Calendar(frozenset({0}), time(9), end=Bound("enrollment", timedelta(weeks=2))), ["03-02", "03-09"]),
    (Calendar(frozenset({0}), time(9), start=Bound("session", number=9)), []),  # not yet
    (Calendar(frozenset({0}), time(9), end=Bound("session", number=9)), ["03-02", "03-09", "03-16", "03-23", "03-30"]),
    (Calendar(frozenset({0, 3}), time(9), start=Bound("last_session", timedelta(days=3))), ["03-30", "04-02"]),
]  # fmt: skip


@pytest.mark.parametrize(("timing", "days"), BOUNDS)
def test_calendar_bounds_and_intervals(timing: Calendar, days: list[str]) -> None:
    """Start and end bounds from enrollment or sessions; every N weeks from the start's week."""
    sessions = [Session(1, local(NY, 2026, 3, 5, 10)), Session(2, local(NY, 2026, 3, 26, 10))]
    found = plan_days(one_rule(timing), NY, date(2026, 3, 2), 32, sessions=sessions)
    assert [w[:5] for w in walls(found, NY)] == days


# ---- protocol files ----------------------------------------------------------------------

PARSED = [
    ("2h", timedelta(hours=2)), ("-2h", timedelta(hours=-2)), ("+24h", timedelta(hours=24)),
    ("3d", timedelta(days=3)), ("30m", timedelta(minutes=30)), ("1w2d3h4m", timedelta(weeks=1, days=2, hours=3, minutes=4)),
]  # fmt: skip


@pytest.mark.parametrize(("text", "expected"), PARSED)
def test_durations(text: str, expected: timedelta) -> None:
    """Durations read as a sign then weeks, days, hours, minutes."""
    assert parse_duration(text) == expected


def test_bounds_read_back() -> None:
    """Bounds read as an anchor and an optional signed duration, and print the same way."""
    assert parse_bound("session 6 + 1d") == Bound("session", timedelta(days=1), 6)
    assert str(parse_bound("last_session-12h")) == "last_session-12h"
    assert parse_bound("enrollment") == Bound("enrollment")


Edit = Callable[[dict[str, Any]], object]
R = "config.toml: protocols.ketamine-iv-6.rules"
BROKEN: list[tuple[Edit, str]] = [
    (lambda d: d["rules"]["baseline"].update(expires_after="2 days"), f'{R}.baseline.expires_after: must be a duration like "2h"'),
    (lambda d: d["rules"]["before_session"].update(from_session="-2"), f"{R}.before_session.from_session: must be a duration"),
    (lambda d: d["rules"]["before_session"].update(from_session=-2), f"{R}.before_session.from_session: must be text, not -2"),
    (lambda d: d["rules"]["maintenance"].update(weekdays=["monday"]), f"{R}.maintenance.weekdays: must list days from mon"),
    (lambda d: d["rules"]["maintenance"].update(weekdays=["mon", "mon"]), f"{R}.maintenance.weekdays: lists a day twice"),
    (lambda d: d["rules"]["maintenance"].update(at="9am"), f'{R}.maintenance.at: must be a local time like "09:00"'),
    (lambda d: d["rules"]["maintenance"].update(at="24:00"), f"{R}.maintenance.at: must be a local time"),
    (lambda d: d["rules"]["maintenance"].pop("at"), f"{R}.maintenance.at: is missing"),
    (lambda d: d["rules"]["maintenance"].update(start="last session"), f"{R}.maintenance.start: must be enrollment, first_session"),
    (lambda d: d["rules"]["maintenance"].update(every_weeks=0), f"{R}.maintenance.every_weeks: must be at least 1"),
    (lambda d: d["rules"]["baseline"].update(instruments=[]), f"{R}.baseline.instruments: needs at least one"),
    (lambda d: d["rules"]["baseline"].update(instruments=["phq10"]), f"{R}.baseline.instruments: unknown instrument 'phq10'"),
    (lambda d: d["rules"]["baseline"].update(instruments=["phq9", "phq9"]), f"{R}.baseline.instruments: lists an instrument twice"),
    (lambda d: d["rules"]["baseline"].update(instrument=["phq9"]), f"{R}.baseline.instrument: unknown setting"),
    (lambda d: d["rules"]["baseline"].update(from_session="1h"), f"{R}.baseline: has more than one timing"),
    (lambda d: d["rules"]["baseline"].pop("from_enrollment"), f"{R}.baseline: needs a timing"),
    (lambda d: d["rules"]["baseline"].update(from_enrollment="-1d"), f"{R}.baseline.from_enrollment: cannot be before enrollment"),
    (lambda d: d["rules"]["after_session"].pop("from_session"), f"{R}.after_session.from_session: is missing"),
    (lambda d: d["rules"]["after_session"].update(max_session=0), f"{R}.after_session.max_session: must be at least 1"),
    (lambda d: d["rules"]["after_session"].update(sessions=[0, 1]), f"{R}.after_session.sessions: must list session numbers"),
    (lambda d: d["rules"]["baseline"].update(max_reminders=-1), f"{R}.baseline.max_reminders: cannot be negative"),
    (lambda d: d["rules"]["baseline"].update(max_reminders="2"), f"{R}.baseline.max_reminders: must be an integer"),
    (lambda d: d["rules"]["baseline"].update(max_reminders=True), f"{R}.baseline.max_reminders: must be an integer"),
    (lambda d: d["rules"]["baseline"].pop("reminder_after"), f"{R}.baseline.max_reminders: needs reminder_after"),
    (lambda d: d["rules"]["baseline"].update(reminder_after="3d"), f"{R}.baseline.reminder_after: must be positive and shorter"),
    (lambda d: d["rules"]["baseline"].update(expires_after="-1h"), f"{R}.baseline.expires_after: must be positive"),
    (lambda d: d["rules"].update({"Base line": d["rules"]["baseline"]}), f"{R}.Base line: a rule name is"),
    (lambda d: d["rules"].update(baseline="phq9"), f"{R}.baseline: must be a table"),
    (lambda d: d.update(rules={}), "config.toml: protocols.ketamine-iv-6.rules: a protocol needs at least one rule"),
    (lambda d: d.pop("rules"), "config.toml: protocols.ketamine-iv-6.rules: is missing"),
    (lambda d: d.update(rule={}), "config.toml: protocols.ketamine-iv-6.rule: unknown setting"),
]  # fmt: skip


@pytest.mark.parametrize(("edit", "message"), BROKEN)
def test_broken_protocols_name_file_and_key(edit: Edit, message: str) -> None:
    """Every malformed setting is refused with the file and the full dotted key."""
    data = copy.deepcopy(example_protocols()["ketamine-iv-6"])
    edit(data)
    with pytest.raises(ConfigError) as caught:
        protocol_from_mapping(
            "ketamine-iv-6", data, "config.toml", instruments={"phq9", "gad7", "side_effects"}
        )
    assert str(caught.value).startswith(message)


def test_protocol_name_is_checked() -> None:
    """A protocol name that cannot be stored as a key is refused by name."""
    with pytest.raises(ConfigError, match=r"^config\.toml: protocols\.Ketamine IV: a protocol"):
        protocol_from_mapping("Ketamine IV", example_protocols()["weekly-phq9"], "config.toml")


def test_toml_local_times_are_accepted() -> None:
    """``at = 09:00:00`` (a TOML local time) reads like ``at = "09:00"``."""
    data = example_protocols()["weekly-phq9"]
    data["rules"]["weekly"]["at"] = time(9, 0)
    assert protocol_from_mapping("weekly-phq9", data, "c.toml") == protocol_from_mapping(
        "weekly-phq9", example_protocols()["weekly-phq9"], "c.toml"
    )


def test_naive_datetimes_are_refused() -> None:
    """A naive time has no place in a plan."""
    with pytest.raises(ValueError, match="start must be an aware datetime"):
        plan(
            KETAMINE,
            timezone=NY,
            enrolled_at=ENROLLED,
            sessions=(),
            start=datetime(2026, 3, 1),
            end=ENROLLED,
            quiet=QuietHours(),
        )


# ---- properties --------------------------------------------------------------------------

ZONES = st.one_of(
    st.sampled_from(
        [
            NY,
            "Europe/London",
            "Australia/Sydney",
            "Australia/Lord_Howe",
            "Europe/Dublin",
            "America/Santiago",
            "Pacific/Chatham",
        ]
    ),
    st.timezone_keys(),
)
WALL = st.builds(time, st.integers(0, 23), st.sampled_from([0, 15, 30, 59]))
QUIETS = st.one_of(st.just(NO_QUIET_HOURS), st.builds(QuietHours, WALL, WALL))
YEAR = datetime(2026, 1, 1, tzinfo=UTC)
INSTANTS = st.integers(0, 365 * 24 * 4).map(lambda q: YEAR + timedelta(minutes=15 * q))


@st.composite
def protocols(draw: st.DrawFn) -> Protocol:
    calendar = Calendar(
        frozenset(draw(st.sets(st.integers(0, 6), min_size=1))),
        draw(WALL),
        every_weeks=draw(st.integers(1, 3)),
    )
    hours = st.integers(-72, 72).map(lambda h: timedelta(hours=h))
    return Protocol(
        "p",
        (
            Rule("cal", ("phq9",), calendar),
            Rule("ses", ("phq9", "side_effects"), SessionRelative(draw(hours))),
            Rule("enr", ("gad7",), EnrollmentRelative(abs(draw(hours)))),
        ),
    )


@st.composite
def cases(draw: st.DrawFn) -> dict[str, Any]:
    start = draw(INSTANTS)
    times = draw(st.lists(INSTANTS, max_size=8))
    return {
        "protocol": draw(protocols()),
        "timezone": draw(ZONES),
        "enrolled_at": draw(INSTANTS),
        "sessions": [Session(n, t, draw(st.booleans())) for n, t in enumerate(times, start=1)],
        "start": start,
        "end": start + timedelta(hours=draw(st.integers(0, 24 * 45))),
        "quiet": draw(QUIETS),
    }


@pytest.mark.parametrize(
    ("quiet", "at", "moved"),
    [
        ((time(20), time(8)), time(5), (-1, time(19, 30))),  # the evening before
        ((time(12), time(14)), time(13), (0, time(11, 30))),  # quiet hours at midday
        ((time(1), time(0, 59)), time(1), (0, time(0, 59))),  # one minute allowed
        ((time(1), time(0, 59)), time(0, 30), (-1, time(0, 59))),  # ... its morning part
        ((time(12), time(11, 50)), time(13), (0, time(11, 50))),  # ten minutes allowed
    ],
)
def test_earlier_goes_before_the_quiet_hours_and_never_into_the_ones_before(
    quiet: tuple[time, time], at: time, moved: tuple[int, time]
) -> None:
    """Moved earlier: 30 minutes before the quiet hours began, or as early as the allowed
    time before them goes when it is shorter than that (found by the property below:
    quiet hours of 01:00-00:59 moved a time into the quiet hours of the night before)."""
    zone, day = ZoneInfo("America/New_York"), date(2026, 1, 15)
    hours = QuietHours(*quiet)
    result = advance(wall_clock(day, at, zone), zone, hours)
    assert result == wall_clock(day + timedelta(days=moved[0]), moved[1], zone)
    assert not in_quiet_hours(result, zone, hours)


@settings(max_examples=300, deadline=None)
@given(cases())
def test_every_occurrence_is_in_range_allowed_and_utc(case: dict[str, Any]) -> None:
    """Whatever the zone, rules and quiet hours: due in [start, end), UTC, not quiet, keys unique, sorted."""
    found = plan(**case)
    zone = ZoneInfo(case["timezone"])
    for o in found:
        assert case["start"] <= o.due_at < case["end"]
        assert o.due_at.tzinfo is UTC
        assert not in_quiet_hours(o.due_at, zone, case["quiet"])
    assert len({o.key for o in found}) == len(found)
    assert found == sorted(found, key=lambda o: (o.due_at, o.key))


@settings(max_examples=200, deadline=None)
@given(cases(), st.floats(0, 1))
def test_plans_of_adjacent_windows_add_up(case: dict[str, Any], split: float) -> None:
    """Planning [a, c) equals planning [a, b) then [b, c): a tick-by-tick planner misses nothing."""
    middle = case["start"] + (case["end"] - case["start"]) * split
    whole = plan(**case)
    parts = plan(**{**case, "end": middle}) + plan(**{**case, "start": middle})
    assert parts == whole


@settings(max_examples=500, deadline=None)
@given(ZONES, st.dates(date(2026, 1, 1), date(2026, 12, 31)), WALL)
def test_wall_clock_gives_one_real_instant(zone_key: str, day: date, at: time) -> None:
    """A local time maps to itself at its first showing, or to the instant the clock jumped past it."""
    zone = ZoneInfo(zone_key)
    instant = wall_clock(day, at, zone)
    shown = instant.astimezone(zone)
    if shown.replace(tzinfo=None) == datetime.combine(day, at):
        assert shown.fold == 0
    else:
        second_before = (instant - timedelta(seconds=1)).astimezone(zone)
        assert second_before.utcoffset() != shown.utcoffset()
        assert (
            second_before.replace(tzinfo=None)
            < datetime.combine(day, at)
            < shown.replace(tzinfo=None)
        )


@settings(max_examples=500, deadline=None)
@given(ZONES, INSTANTS, QUIETS)
def test_defer_never_goes_back_and_lands_outside_quiet_hours(
    zone_key: str, at: datetime, quiet: QuietHours
) -> None:
    """Deferral keeps an allowed time, and moves a quiet one forward to an allowed one within a day."""
    zone = ZoneInfo(zone_key)
    due = defer(at, zone, quiet)
    assert not in_quiet_hours(due, zone, quiet)
    assert at <= due < at + timedelta(days=1)
    assert (due == at) is not in_quiet_hours(at, zone, quiet)

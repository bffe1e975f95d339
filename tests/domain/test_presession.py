"""Pre-session timing, pure: where a check-in before a session goes when its time falls in
quiet hours, when it expires, how a protocol says so; and the wall-clock rule for a local
time an operator types."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from bot.domain.errors import ConfigError
from bot.domain.schedule import (
    Occurrence,
    Protocol,
    QuietHours,
    Rule,
    Session,
    SessionRelative,
    Stored,
    plan,
    protocol_from_mapping,
    reconcile,
    resolve_local,
    to_close,
)

LA = "America/Los_Angeles"
ZONE = ZoneInfo(LA)
QUIET = QuietHours(time(20), time(8))


def la(month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2027, month, day, hour, minute, tzinfo=ZONE)


def before(policy: str | None, offset_h: int = -2) -> Protocol:
    timing = SessionRelative(timedelta(hours=offset_h))
    rule = Rule("pre", ("phq9",), timing, expires_after=timedelta(hours=3), quiet_hours=policy)  # type: ignore[arg-type]
    return Protocol("p", (rule,))


def pre_session(policy: str | None, session_at: datetime) -> tuple[str, str, str]:
    """(due, expires, placement) of the one check-in before a session, in local time."""
    (found,) = plan(
        before(policy),
        timezone=LA,
        enrolled_at=la(3, 1, 9),
        sessions=[Session(1, session_at)],
        start=la(3, 1, 0),
        end=la(3, 31, 0),
        quiet=QUIET,
    )
    shown = [t.astimezone(ZONE).strftime("%m-%d %H:%M") for t in (found.due_at, found.expires_at)]
    return shown[0], shown[1], found.placement


PLACEMENTS = [
    # policy, session (local), due, expires, placement
    (None, la(3, 3, 7), "03-02 19:30", "03-02 22:30", "earlier"),  # default before a session
    (None, la(3, 3, 22, 30), "03-03 19:30", "03-03 22:30", "earlier"),  # late evening
    (None, la(3, 3, 11), "03-03 09:00", "03-03 11:00", "as_planned"),  # expiry: the session
    (None, la(3, 14, 8), "03-13 19:30", "03-13 22:30", "earlier"),  # spring-forward day
    ("later", la(3, 3, 9), "03-03 08:00", "03-03 09:00", "later"),  # an hour before: allowed
    ("later", la(3, 3, 7, 30), "03-02 19:30", "03-02 22:30", "no_allowed_time"),
    ("later", la(3, 3, 8), "03-02 19:30", "03-02 22:30", "no_allowed_time"),  # 08:00: too late
    ("ignore", la(3, 3, 7), "03-03 05:00", "03-03 07:00", "ignore"),  # the 06:00-message clinic
]


@pytest.mark.parametrize(("policy", "session_at", "due", "expires", "placement"), PLACEMENTS)
def test_a_pre_session_check_in_is_due_and_expires_before_its_session(
    policy: str | None, session_at: datetime, due: str, expires: str, placement: str
) -> None:
    """Each quiet-hours policy puts the check-in, and its expiry, before the session."""
    assert pre_session(policy, session_at) == (due, expires, placement)


def test_other_rules_still_wait_for_the_end_of_quiet_hours() -> None:
    """A check-in after a session keeps the old rule: deferred to the end of quiet hours."""
    (found,) = plan(
        before(None, offset_h=24),
        timezone=LA,
        enrolled_at=la(3, 1, 9),
        sessions=[Session(1, la(3, 3, 7))],
        start=la(3, 1, 0),
        end=la(3, 31, 0),
        quiet=QUIET,
    )
    assert (found.due_at, found.placement, found.closes_at) == (
        la(3, 4, 8).astimezone(UTC),
        "later",
        None,
    )


def test_the_quiet_hours_key_is_read_and_a_wrong_value_named() -> None:
    """`quiet_hours` on a rule takes later, earlier or ignore; anything else names the key."""
    table = {"rules": {"pre": {"instruments": ["phq9"], "from_session": "-2h"}}}
    assert protocol_from_mapping("p", table, "c.toml").rules[0].quiet_policy == "earlier"
    table["rules"]["pre"]["quiet_hours"] = "ignore"
    assert protocol_from_mapping("p", table, "c.toml").rules[0].quiet_policy == "ignore"
    table["rules"]["pre"]["quiet_hours"] = "sooner"
    with pytest.raises(ConfigError) as caught:
        protocol_from_mapping("p", table, "c.toml")
    assert str(caught.value) == (
        'c.toml: protocols.p.rules.pre.quiet_hours: must be "later", "earlier" or "ignore", '
        "not 'sooner'"
    )


LOCAL_TIMES = [
    # a local time in Los Angeles, the instant it becomes (UTC), what the clock did
    (datetime(2027, 3, 14, 2, 30), datetime(2027, 3, 14, 10, 0, tzinfo=UTC), "skipped"),  # 03:00
    (datetime(2027, 11, 7, 1, 30), datetime(2027, 11, 7, 8, 30, tzinfo=UTC), "repeated"),  # PDT
    (datetime(2027, 3, 14, 3, 0), datetime(2027, 3, 14, 10, 0, tzinfo=UTC), "exact"),
    (datetime(2027, 7, 1, 7, 0), datetime(2027, 7, 1, 14, 0, tzinfo=UTC), "exact"),
]


@pytest.mark.parametrize(("naive", "instant", "clock"), LOCAL_TIMES)
def test_a_typed_local_time_follows_the_protocols_wall_clock_rule(
    naive: datetime, instant: datetime, clock: str
) -> None:
    """A skipped time is the moment the gap ends; a repeated one its first showing."""
    found = resolve_local(naive, ZONE)
    assert (found.at, found.clock) == (instant, clock)


def test_resolve_local_refuses_an_aware_time() -> None:
    with pytest.raises(ValueError, match="no tzinfo"):
        resolve_local(datetime(2027, 3, 14, 2, 30, tzinfo=UTC), ZONE)


# ---- a moved session against what was stored (reconcile) --------------------------------


def planned_before(session_at: datetime) -> Occurrence:
    """The one pre-session occurrence (-2 h, no quiet hours) for a session at `session_at`."""
    (found,) = plan(
        before(None),
        timezone=LA,
        enrolled_at=la(3, 1, 9),
        sessions=[Session(1, session_at)],
        start=la(3, 1, 0),
        end=la(3, 31, 0),
        quiet=QuietHours(time(0), time(0)),
    )
    return found


def stored(status: str, due: datetime, done: datetime | None = None, key: str = "pre:1") -> Stored:
    return Stored(key, "pre", 1, due.astimezone(UTC), status, done and done.astimezone(UTC))


SENT_FOR_10 = la(3, 3, 8)  # the check-in before a 10:00 session on 03-03
MOVES = [
    # session now at, what was stored, (status, key) of the outlook
    (la(3, 3, 10), [stored("completed", SENT_FOR_10, la(3, 3, 8, 5))], ("stored", "pre:1")),
    (la(3, 3, 10), [stored("pending", SENT_FOR_10)], ("stored", "pre:1")),
    (la(3, 3, 11), [stored("completed", SENT_FOR_10, la(3, 3, 8, 5))], ("satisfied", "pre:1")),
    (
        la(3, 5, 10),
        [stored("completed", SENT_FOR_10, la(3, 3, 8, 5))],
        ("new", "pre:1@20270305T1800Z"),
    ),
    (la(3, 3, 11), [stored("expired", SENT_FOR_10)], ("new", "pre:1@20270303T1900Z")),
    (la(3, 3, 11), [stored("sent", SENT_FOR_10)], ("stored", "pre:1")),  # still open, in time
    (la(3, 5, 10), [stored("sent", SENT_FOR_10)], ("new", "pre:1@20270305T1800Z")),
    (  # moved once and asked again: that one is the session's now
        la(3, 5, 10),
        [
            stored("completed", SENT_FOR_10, la(3, 3, 8, 5)),
            stored("completed", la(3, 5, 8), la(3, 5, 8, 5), key="pre:1@20270305T1800Z"),
        ],
        ("stored", "pre:1@20270305T1800Z"),
    ),
]


@pytest.mark.parametrize(("session_at", "found", "expected"), MOVES)
def test_a_moved_sessions_check_in_is_asked_again_only_when_its_score_is_stale(
    session_at: datetime, found: list[Stored], expected: tuple[str, str]
) -> None:
    """A score from the rule's offset before the new due time on still counts; an older
    one, or a missed check-in, plans a new one keyed by the session's new start."""
    (outlook,) = reconcile([planned_before(session_at)], found)
    assert (outlook.status, outlook.occurrence.key) == expected


def test_other_stored_occurrences_are_stored_whatever_their_time() -> None:
    """A day-after check already sent is not planned again when its session moves."""
    after = plan(
        before(None, offset_h=24), timezone=LA, enrolled_at=la(3, 1, 9),
        sessions=[Session(1, la(3, 5, 10))], start=la(3, 1, 0), end=la(3, 31, 0),
        quiet=QUIET,
    )  # fmt: skip
    (outlook,) = reconcile(after, [stored("sent", la(3, 4, 10))])
    assert (outlook.status, outlook.occurrence.key) == ("stored", "pre:1")


def test_an_open_check_in_closes_by_the_start_of_its_moved_session() -> None:
    """Session moved from 10:00 to 09:00 while its 08:00 check-in is open: it now expires
    at 09:00, not at the old start."""
    open_one = replace(stored("sent", SENT_FOR_10), checkin_id=7, expires_at=la(3, 3, 10))
    outlooks = reconcile([planned_before(la(3, 3, 9))], [open_one])
    assert to_close(outlooks) == [(7, la(3, 3, 9).astimezone(UTC))]
    assert to_close(reconcile([planned_before(la(3, 3, 11))], [open_one])) == []

"""Build :class:`Protocol` values from the ``[protocols.<name>]`` tables of config.toml.

Pure: the caller reads the file and passes one protocol's table with its name and the
file's name, so every error names the file and the key
(``config.toml: protocols.ketamine-iv-6.rules.baseline.expires_after: must be a
duration like "2h", "-2h", "3d" or "30m", not '2 days'``).

The shape, one table per rule, named by the rule (the name goes into idempotency keys:
renaming a rule re-plans its check-ins as new ones)::

    [protocols.ketamine-iv-6]
    description = "..."                      # optional
    [protocols.ketamine-iv-6.rules.baseline]
    instruments = ["phq9", "gad7"]           # instrument keys, asked in this order
    from_enrollment = "0h"                   # timing 1: an offset from enrollment
    reminder_after = "4h"                    # optional; reminders this long after the
    max_reminders = 2                        #   latest message, at most this many
                                             #   (default 1 with reminder_after, else 0)
    expires_after = "2d"                     # default "24h", from the due time
    quiet_hours = "earlier"                  # optional: "later", "earlier" or "ignore"
                                             #   (default "earlier" before a session,
                                             #   else "later"; see Rule)

    [protocols.ketamine-iv-6.rules.after_session]
    from_session = "24h"                     # timing 2: an offset from each session
    max_session = 6                          # optional: only sessions 1..6
    sessions = [1, 4]                        # optional: only these session numbers

    [protocols.ketamine-iv-6.rules.maintenance]
    weekdays = ["mon"]                       # timing 3: "mon".."sun" ...
    at = "09:00"                             #   ... at this local time (or 09:00:00)
    every_weeks = 1                          # optional, counted from the start's week
    start = "last_session"                   # optional, default "enrollment"
    end = "enrollment+26w"                   # optional, default open-ended

Durations: a sign, then weeks, days, hours, minutes in that order: ``"2h"``, ``"-2h"``,
``"+24h"``, ``"3d"``, ``"30m"``, ``"1d12h"``. Bounds: ``enrollment``, ``first_session``,
``last_session`` or ``session N``, optionally ``+``/``-`` a duration
(``"last_session+3d"``). A rule has exactly one timing.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from datetime import time, timedelta
from typing import Any

from bot.domain.errors import ConfigError
from bot.domain.schedule.rules import (
    INSTRUMENT_KEY,
    PROTOCOL_NAME,
    QUIET_POLICIES,
    RULE_NAME,
    WEEKDAYS,
    AnchorKind,
    Bound,
    Calendar,
    EnrollmentRelative,
    Protocol,
    QuietPolicy,
    Rule,
    SessionRelative,
    Timing,
)

_DURATION = re.compile(r"^([+-])?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?$")
_TIME = re.compile(r"^(\d{1,2}):(\d{2})$")
_BOUND = re.compile(
    r"^(enrollment|first_session|last_session|session\s+([1-9]\d*))"  # anchor, session number
    r"\s*(?:([+-])\s*(\S+))?$"  # optional signed duration
)
_ANCHORS: dict[str, AnchorKind] = {
    "enrollment": "enrollment",
    "first_session": "first_session",
    "last_session": "last_session",
}
DURATION_HINT = 'a duration like "2h", "-2h", "3d" or "30m"'

_COMMON = {"instruments", "reminder_after", "max_reminders", "expires_after", "quiet_hours"}
_TIMINGS = {
    "from_enrollment": {"from_enrollment"},
    "from_session": {"from_session", "max_session", "sessions"},
    "weekdays": {"weekdays", "at", "every_weeks", "start", "end"},
}
_OWNER = {key: timing for timing, keys in _TIMINGS.items() for key in keys}


def parse_duration(text: str) -> timedelta:
    """``"-2h"`` -> ``timedelta(hours=-2)``; ValueError for anything else."""
    match = _DURATION.match(text)
    if not match or not any(match.groups()[1:]):
        raise ValueError(f"must be {DURATION_HINT}, not {text!r}")
    weeks, days, hours, minutes = (int(g or 0) for g in match.groups()[1:])
    delta = timedelta(weeks=weeks, days=days, hours=hours, minutes=minutes)
    return -delta if match.group(1) == "-" else delta


def parse_local_time(value: object) -> time:
    """``"09:00"`` (or a TOML local time) -> ``time(9, 0)``; ValueError for anything else."""
    if isinstance(value, time) and value.tzinfo is None:
        return value
    match = _TIME.match(value) if isinstance(value, str) else None
    if not match or int(match.group(1)) > 23 or int(match.group(2)) > 59:
        raise ValueError(f'must be a local time like "09:00", not {value!r}')
    return time(int(match.group(1)), int(match.group(2)))


def parse_bound(text: str) -> Bound:
    """``"last_session+3d"`` -> ``Bound("last_session", timedelta(days=3))``."""
    match = _BOUND.match(text.strip())
    if not match:
        raise ValueError(
            "must be enrollment, first_session, last_session or session N, "
            f'optionally +/- a duration ("last_session+3d"), not {text!r}'
        )
    anchor, number, sign, amount = match.groups()
    offset = parse_duration(f"{sign}{amount}") if sign else timedelta(0)
    if number is not None:
        return Bound("session", offset, int(number))
    return Bound(_ANCHORS[anchor], offset)


class _Table:
    """One TOML table of untrusted values, reporting file and dotted key on any problem."""

    def __init__(self, data: Mapping[str, Any], path: str, source: str) -> None:
        self.data, self.path, self.source = data, path, source

    def fail(self, name: str, problem: str) -> ConfigError:
        return ConfigError(self.source, f"{self.path}.{name}" if name else self.path, problem)

    def get(self, name: str, kind: type, default: Any = ...) -> Any:
        if name not in self.data:
            if default is ...:
                raise self.fail(name, "is missing")
            return default
        value = self.data[name]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise self.fail(name, f"must be {_KINDS.get(kind, kind.__name__)}, not {value!r}")
        return value

    def parsed(self, name: str, parse: Any, default: Any = None, *, text: bool = True) -> Any:
        """`parse` applied to the value (checked to be text first when `text`)."""
        if name not in self.data:
            return default
        try:
            return parse(self.get(name, str) if text else self.data[name])
        except ValueError as exc:
            raise self.fail(name, str(exc)) from None


_KINDS = {str: "text", int: "an integer", list: "a list", dict: "a table"}


def protocol_from_mapping(
    name: str,
    data: Mapping[str, Any],
    source: str,
    *,
    instruments: Collection[str] | None = None,
) -> Protocol:
    """Validate one ``[protocols.<name>]`` table; `instruments`, when given, are the known keys."""
    path = f"protocols.{name}"
    if not PROTOCOL_NAME.match(name):
        raise ConfigError(source, path, "a protocol name is lower-case letters, digits, - and _")
    if not isinstance(data, Mapping):
        raise ConfigError(source, path, "must be a table with rules")
    table = _Table(data, path, source)
    _known(table, {"description", "rules"})
    rules = table.get("rules", dict)
    if not rules:
        raise table.fail("rules", "a protocol needs at least one rule")
    built = tuple(
        _rule(rule, raw, f"{path}.rules.{rule}", source, instruments) for rule, raw in rules.items()
    )
    return Protocol(name, built, table.get("description", str, ""))


def _known(table: _Table, allowed: Collection[str]) -> None:
    for key in table.data:
        if key not in allowed:
            raise table.fail(key, f"unknown setting (known: {', '.join(sorted(allowed))})")


def _rule(name: str, raw: Any, path: str, source: str, known: Collection[str] | None) -> Rule:
    if not isinstance(raw, Mapping):
        raise ConfigError(source, path, "must be a table")
    table = _Table(raw, path, source)
    if not RULE_NAME.match(name):
        raise table.fail("", "a rule name is lower-case letters, digits, - and _")
    _known(table, _COMMON | set(_OWNER))
    reminder_after = table.parsed("reminder_after", parse_duration)
    expires_after = table.parsed("expires_after", parse_duration, timedelta(hours=24))
    max_reminders = table.get("max_reminders", int, 1 if reminder_after else 0)
    _check_reminders(table, reminder_after, max_reminders, expires_after)
    return Rule(
        name=name,
        instruments=_instruments(table, known),
        timing=_timing(table),
        expires_after=expires_after,
        reminder_after=reminder_after,
        max_reminders=max_reminders,
        quiet_hours=table.parsed("quiet_hours", _quiet_policy),
    )


def _quiet_policy(text: str) -> QuietPolicy:
    for policy in QUIET_POLICIES:
        if text == policy:
            return policy
    raise ValueError(f'must be "later", "earlier" or "ignore", not {text!r}')


def _check_reminders(
    table: _Table, reminder_after: timedelta | None, count: int, expires_after: timedelta
) -> None:
    if expires_after <= timedelta(0):
        raise table.fail("expires_after", "must be positive")
    if reminder_after is not None and not timedelta(0) < reminder_after < expires_after:
        raise table.fail("reminder_after", "must be positive and shorter than expires_after")
    if count < 0:
        raise table.fail("max_reminders", "cannot be negative")
    if count and reminder_after is None:
        raise table.fail("max_reminders", "needs reminder_after")


def _instruments(table: _Table, known: Collection[str] | None) -> tuple[str, ...]:
    keys = table.get("instruments", list)
    if not keys:
        raise table.fail("instruments", "needs at least one instrument key")
    for key in keys:
        if not isinstance(key, str) or not INSTRUMENT_KEY.match(key):
            raise table.fail("instruments", f"{key!r} is not an instrument key")
        if known is not None and key not in known:
            raise table.fail(
                "instruments", f"unknown instrument {key!r} (known: {', '.join(sorted(known))})"
            )
    if len(set(keys)) != len(keys):
        raise table.fail("instruments", "lists an instrument twice")
    return tuple(keys)


def _timing(table: _Table) -> Timing:
    kinds = [kind for kind in _TIMINGS if _uses(table, kind)]
    if len(kinds) != 1:
        problem = "has more than one timing" if kinds else "needs a timing"
        raise table.fail("", f"{problem}: from_enrollment, from_session, or weekdays and at")
    if kinds[0] == "from_enrollment":
        offset = table.parsed("from_enrollment", parse_duration)
        if offset < timedelta(0):
            raise table.fail("from_enrollment", "cannot be before enrollment")
        return EnrollmentRelative(offset)
    if kinds[0] == "from_session":
        return _session(table)
    return _calendar(table)


def _uses(table: _Table, kind: str) -> bool:
    return any(key in table.data for key in _TIMINGS[kind])


def _session(table: _Table) -> SessionRelative:
    table.get("from_session", str)  # present, even when only max_session / sessions are
    offset = table.parsed("from_session", parse_duration)
    top = table.get("max_session", int, None)
    if top is not None and top < 1:
        raise table.fail("max_session", "must be at least 1")
    numbers = table.get("sessions", list, None)
    if numbers is not None and (
        not numbers or not all(isinstance(n, int) and n >= 1 for n in numbers)
    ):
        raise table.fail("sessions", "must list session numbers (1, 2, ...)")
    return SessionRelative(offset, top, None if numbers is None else frozenset(numbers))


def _calendar(table: _Table) -> Calendar:
    names = table.get("weekdays", list)
    if not names or not all(isinstance(n, str) and n in WEEKDAYS for n in names):
        raise table.fail("weekdays", f"must list days from {', '.join(WEEKDAYS)}")
    if len(set(names)) != len(names):
        raise table.fail("weekdays", "lists a day twice")
    if "at" not in table.data:
        raise table.fail("at", 'is missing (a local time like "09:00")')
    every = table.get("every_weeks", int, 1)
    if every < 1:
        raise table.fail("every_weeks", "must be at least 1")
    return Calendar(
        weekdays=frozenset(WEEKDAYS.index(n) for n in names),
        at_local=table.parsed("at", parse_local_time, text=False),
        every_weeks=every,
        start=table.parsed("start", parse_bound),
        end=table.parsed("end", parse_bound),
    )

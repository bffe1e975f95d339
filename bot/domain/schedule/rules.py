"""Protocols as plain, frozen values: named sets of rules saying when a patient is asked
which instruments.

A rule has one of three timings:

* :class:`Calendar`: a wall-clock time on some weekdays in the patient's own time zone,
  every week or every N weeks, optionally bounded by :class:`Bound` instants
  ("from the last session on");
* :class:`SessionRelative`: an offset from each treatment session (``-2h``, ``+24h``),
  optionally only for sessions 1..N or for listed session numbers;
* :class:`EnrollmentRelative`: an offset from enrollment (the baseline is ``+0``).

Calendar times are wall-clock times (09:00 stays 09:00 across a clock change); session
and enrollment offsets are elapsed time (24 h after an infusion is 24 h later, whatever
the clock shows).

Rule names are stable: they go into idempotency keys (see :mod:`bot.domain.schedule.planning`), so
renaming a rule re-plans its check-ins as new ones. Files are read by
:mod:`bot.domain.schedule.config`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Literal

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # index = date.weekday()
PROTOCOL_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
RULE_NAME = re.compile(r"^[a-z][a-z0-9_-]*$")  # no ':' or '+': keys are built from it
INSTRUMENT_KEY = re.compile(r"^[a-z][a-z0-9_]*$")

AnchorKind = Literal["enrollment", "first_session", "last_session", "session"]
QuietPolicy = Literal["later", "earlier", "ignore"]
QUIET_POLICIES: tuple[QuietPolicy, ...] = ("later", "earlier", "ignore")


@dataclass(frozen=True)
class Bound:
    """An instant relative to enrollment or to a treatment session, plus `offset`.

    ``first_session`` / ``last_session`` are the earliest / latest session not cancelled;
    ``session`` is the session numbered `number`. A session anchor that does not exist yet
    leaves a start unreached (the rule waits) and an end unbounded (the rule goes on).
    """

    anchor: AnchorKind
    offset: timedelta = timedelta(0)
    number: int | None = None

    def __post_init__(self) -> None:
        if (self.anchor == "session") != (self.number is not None):
            raise ValueError("a 'session' bound needs a session number, and only it")

    def __str__(self) -> str:
        name = f"session {self.number}" if self.anchor == "session" else self.anchor
        return name + (_signed(self.offset) if self.offset else "")


@dataclass(frozen=True)
class Calendar:
    """`at_local` wall-clock time on `weekdays` (0 = Monday) in the patient's zone.

    With ``every_weeks=N`` it fires in every Nth week, counting from the week (Monday to
    Sunday, local) of its start: `start` when given, else enrollment. Occurrences fall in
    [start, end); without `start` they begin at enrollment.
    """

    weekdays: frozenset[int]
    at_local: time
    every_weeks: int = 1
    start: Bound | None = None
    end: Bound | None = None

    def __post_init__(self) -> None:
        if not self.weekdays or not self.weekdays <= frozenset(range(7)):
            raise ValueError("weekdays must be a non-empty set of 0 (Monday) .. 6 (Sunday)")
        if self.every_weeks < 1:
            raise ValueError("every_weeks must be at least 1")
        if self.at_local.tzinfo is not None:
            raise ValueError("at_local is a wall-clock time: no tzinfo")


@dataclass(frozen=True)
class SessionRelative:
    """`offset` from each session (negative: before it); None filters mean every session."""

    offset: timedelta
    max_session: int | None = None  # only sessions 1..max_session
    numbers: frozenset[int] | None = None  # only these session numbers

    def applies(self, number: int) -> bool:
        within = self.max_session is None or number <= self.max_session
        return within and (self.numbers is None or number in self.numbers)


@dataclass(frozen=True)
class EnrollmentRelative:
    """Once, `offset` after enrollment (``timedelta(0)``: the baseline)."""

    offset: timedelta = timedelta(0)

    def __post_init__(self) -> None:
        if self.offset < timedelta(0):
            raise ValueError("an enrollment-relative rule cannot come before enrollment")


Timing = Calendar | SessionRelative | EnrollmentRelative


@dataclass(frozen=True)
class Rule:
    """One kind of check-in: which instruments, when, how often reminded, when it lapses.

    A reminder comes `reminder_after` the latest message, at most `max_reminders` times;
    the check-in expires `expires_after` its due time.

    `quiet_hours` says where a due time inside the patient's quiet hours goes: ``"later"``
    (to their end), ``"earlier"`` (to just before they begin) or ``"ignore"`` (sent then
    anyway). None is the default, :attr:`quiet_policy`: ``"earlier"`` for a rule before a
    session (a score taken after dosing began is no pre-session score), else ``"later"``.
    """

    name: str
    instruments: tuple[str, ...]
    timing: Timing
    expires_after: timedelta = timedelta(hours=24)
    reminder_after: timedelta | None = None
    max_reminders: int = 0
    quiet_hours: QuietPolicy | None = None

    def __post_init__(self) -> None:
        if self.quiet_hours is not None and self.quiet_hours not in QUIET_POLICIES:
            raise ValueError(f"rule {self.name}: quiet_hours must be one of {QUIET_POLICIES}")
        if not RULE_NAME.match(self.name):
            raise ValueError(f"rule name {self.name!r}: lower-case letters, digits, - and _")
        if not self.instruments or len(set(self.instruments)) != len(self.instruments):
            raise ValueError(f"rule {self.name}: instruments must be given, each once")
        if self.expires_after <= timedelta(0):
            raise ValueError(f"rule {self.name}: expires_after must be positive")
        if self.max_reminders < 0 or (self.max_reminders and self.reminder_after is None):
            raise ValueError(f"rule {self.name}: max_reminders needs reminder_after, >= 0")

    @property
    def before_session(self) -> bool:
        """Planned ahead of each session: due, and expiring, before the session starts."""
        return isinstance(self.timing, SessionRelative) and self.timing.offset < timedelta(0)

    @property
    def quiet_policy(self) -> QuietPolicy:
        if self.quiet_hours is not None:
            return self.quiet_hours
        return "earlier" if self.before_session else "later"


@dataclass(frozen=True)
class Protocol:
    name: str
    rules: tuple[Rule, ...]
    description: str = ""

    def __post_init__(self) -> None:
        if not PROTOCOL_NAME.match(self.name):
            raise ValueError(f"protocol name {self.name!r}: lower-case letters, digits, - and _")
        names = [r.name for r in self.rules]
        if len(set(names)) != len(names):
            raise ValueError(f"protocol {self.name}: rule names must be unique")

    def rule(self, name: str) -> Rule:
        for rule in self.rules:
            if rule.name == name:
                return rule
        raise KeyError(name)


@dataclass(frozen=True)
class Session:
    """A treatment session (infusion, injection, dose): its number in the series and time."""

    number: int
    at: datetime  # aware
    cancelled: bool = False


def _signed(delta: timedelta) -> str:
    sign = "-" if delta < timedelta(0) else "+"
    return sign + format_duration(abs(delta))


def format_duration(delta: timedelta) -> str:
    """``timedelta(days=1, hours=2)`` -> ``"1d2h"``: the form the config reads."""
    if delta < timedelta(0):
        return "-" + format_duration(-delta)
    minutes = int(delta.total_seconds() // 60)
    parts = []
    for unit, size in (("w", 7 * 24 * 60), ("d", 24 * 60), ("h", 60), ("m", 1)):
        count, minutes = divmod(minutes, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0m"

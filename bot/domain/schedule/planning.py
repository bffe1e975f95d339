"""Planning check-ins from a protocol: which are due when, and which travel together.

Pure: the protocol, the patient's zone, enrollment time, treatment sessions, a window of
time and the quiet hours in; :class:`Occurrence` values out, in UTC. Nothing here reads a
clock or stores anything; the scheduler plans a horizon ahead and stores what it finds.

Idempotency keys name the *intended* occurrence, never its computed time, so re-planning
finds the same key for the same check-in:

* session-relative: ``"<rule>:<session number>"``. Moving a session moves its check-ins
  and keeps their keys; cancelling it removes them. A pre-session check-in already sent
  when its session moves may be planned again as ``"<rule>:<number>@<new start UTC>"``
  (:mod:`bot.domain.schedule.moves`).
* calendar: ``"<rule>:<local date>"`` (``"weekly:2026-03-09"``); a rule fires at most once
  a local day.
* enrollment-relative: ``"<rule>:enrolled"``.

Rule names are unique in a protocol and carry no ``:``, so two distinct occurrences for one
patient never share a key. The storage layer prefixes the patient. A due time inside quiet
hours goes where the rule's :attr:`~bot.domain.schedule.rules.Rule.quiet_policy` says
(:func:`place`); the key does not change.

A check-in before a session (a negative session offset) is due, and expires, before the
session starts: :attr:`Occurrence.closes_at` is the session's start and caps its expiry.
Moved into quiet hours it goes earlier by default, to just before they begin; a rule
that says ``"later"`` goes to their end unless that is at or after the session, and then
it too goes earlier (``placement="no_allowed_time"``, which the preview explains).

:func:`bundle` merges occurrences due close together into one conversation, asking an
instrument once (the pre-session PHQ-9 and the weekly PHQ-9 on the same morning). A
bundle with a pre-session member closes at that session's start, so nothing due at or
after that start joins it.

Protocol files (the ``[protocols.<name>]`` TOML shape) are read by
:mod:`bot.domain.schedule.config`; the model lives in :mod:`bot.domain.schedule.rules`
and time zones in :mod:`bot.domain.schedule.wallclock`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from bot.domain.schedule.rules import (
    Bound,
    Calendar,
    EnrollmentRelative,
    Protocol,
    Rule,
    Session,
    SessionRelative,
)
from bot.domain.schedule.wallclock import (
    NO_QUIET_HOURS,
    QuietHours,
    advance,
    defer,
    in_quiet_hours,
    wall_clock,
)

DEFAULT_BUNDLE_WINDOW = timedelta(hours=2)
_DEFER_MARGIN = timedelta(days=2)  # longer than any quiet hours plus a clock change

# Where a due time went: as the rule says; to the end of quiet hours; to just before they
# began; there because no allowed time was left before the session; in quiet hours anyway.
Placement = Literal["as_planned", "later", "earlier", "no_allowed_time", "ignore"]


@dataclass(frozen=True)
class Occurrence:
    rule: str
    instruments: tuple[str, ...]
    due_at: datetime  # aware UTC, after any quiet-hours move
    key: str
    session: int | None
    reminder_after: timedelta | None
    max_reminders: int
    expires_after: timedelta
    closes_at: datetime | None = None  # a pre-session check-in's session start
    placement: Placement = "as_planned"
    intended_at: datetime | None = None  # before any quiet-hours move (None: due_at)

    @property
    def expires_at(self) -> datetime:
        normal = self.due_at + self.expires_after
        return normal if self.closes_at is None else min(normal, self.closes_at)


@dataclass(frozen=True)
class Bundle:
    """Occurrences asked in one conversation: due at the earliest, expiring at the latest."""

    key: str  # the members' keys, sorted, joined with '+'
    instruments: tuple[str, ...]  # in member order, each once
    due_at: datetime
    expires_at: datetime
    reminder_after: timedelta | None  # the soonest any member asks for
    max_reminders: int  # the most any member allows
    members: tuple[Occurrence, ...]
    ignore_quiet_hours: bool = False  # a member is due in quiet hours by its rule's choice

    @property
    def closes_at(self) -> datetime | None:
        """The earliest session start of a pre-session member: the bundle closes then."""
        closes = [o.closes_at for o in self.members if o.closes_at is not None]
        return min(closes) if closes else None

    @property
    def expire_after(self) -> timedelta:
        """How long the bundle stays open, counted from its first message's delivery
        (bot/domain/deadlines.py): the latest member's window, as if asked on time."""
        return max(o.due_at + o.expires_after for o in self.members) - self.due_at


@dataclass(frozen=True)
class _Patient:
    zone: ZoneInfo
    enrolled_at: datetime
    sessions: Mapping[int, datetime]  # number -> time, cancelled ones left out

    def anchor(self, bound: Bound) -> datetime | None:
        base: datetime | None
        if bound.anchor == "enrollment":
            base = self.enrolled_at
        elif bound.anchor == "session":
            base = self.sessions.get(bound.number or 0)
        elif not self.sessions:
            base = None
        elif bound.anchor == "first_session":
            base = min(self.sessions.values())
        else:
            base = max(self.sessions.values())
        return None if base is None else base + bound.offset


def plan(
    protocol: Protocol,
    *,
    timezone: str,
    enrolled_at: datetime,
    sessions: Sequence[Session],
    start: datetime,
    end: datetime,
    quiet: QuietHours,
) -> list[Occurrence]:
    """Every occurrence of `protocol` due in [start, end), by due time then key."""
    for name, value in (("enrolled_at", enrolled_at), ("start", start), ("end", end)):
        _require_aware(name, value)
    zone = ZoneInfo(timezone)
    patient = _Patient(zone, enrolled_at.astimezone(UTC), _active(sessions))
    found = []
    for rule in protocol.rules:
        for key, session, intended in _intended(rule, patient, start, end):
            closes = patient.sessions.get(session or 0) if rule.before_session else None
            due, placement = place(rule, intended, closes, zone, quiet)
            if start <= due < end:
                found.append(_occurrence(rule, key, session, due, closes, placement, intended))
    return sorted(found, key=lambda o: (o.due_at, o.key))


def place(
    rule: Rule, intended: datetime, closes: datetime | None, zone: ZoneInfo, quiet: QuietHours
) -> tuple[datetime, Placement]:
    """Where `intended` goes under `quiet` by the rule's policy; `closes` is the session a
    pre-session check-in must come before (see the module docstring)."""
    intended = intended.astimezone(UTC)
    policy = rule.quiet_policy
    if not in_quiet_hours(intended, zone, quiet):
        return intended, "as_planned"
    if policy == "ignore":
        return intended, "ignore"
    if policy == "earlier":
        return advance(intended, zone, quiet), "earlier"
    later = defer(intended, zone, quiet)
    if closes is None or later < closes:
        return later, "later"
    return advance(intended, zone, quiet), "no_allowed_time"


def _require_aware(name: str, value: datetime) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be an aware datetime, not {value!r}")


def _active(sessions: Sequence[Session]) -> dict[int, datetime]:
    active: dict[int, datetime] = {}
    for session in sessions:
        _require_aware(f"session {session.number}", session.at)
        if session.cancelled:
            continue
        if session.number in active:
            raise ValueError(f"session {session.number} is recorded twice (not cancelled)")
        active[session.number] = session.at.astimezone(UTC)
    return active


def _occurrence(
    rule: Rule,
    key: str,
    session: int | None,
    due: datetime,
    closes: datetime | None,
    placement: Placement,
    intended: datetime,
) -> Occurrence:
    return Occurrence(
        rule=rule.name,
        instruments=rule.instruments,
        due_at=due,
        key=key,
        session=session,
        reminder_after=rule.reminder_after,
        max_reminders=rule.max_reminders,
        expires_after=rule.expires_after,
        closes_at=closes,
        placement=placement,
        intended_at=intended,
    )


def _intended(
    rule: Rule, patient: _Patient, start: datetime, end: datetime
) -> Iterator[tuple[str, int | None, datetime]]:
    """(key, session number, intended instant) for each occurrence that may fall in range."""
    timing = rule.timing
    if isinstance(timing, EnrollmentRelative):
        yield f"{rule.name}:enrolled", None, patient.enrolled_at + timing.offset
    elif isinstance(timing, SessionRelative):
        for number, at in sorted(patient.sessions.items()):
            if timing.applies(number):
                yield f"{rule.name}:{number}", number, at + timing.offset
    else:
        for day, at in _calendar(timing, patient, start, end):
            yield f"{rule.name}:{day.isoformat()}", None, at


def _calendar(
    timing: Calendar, patient: _Patient, start: datetime, end: datetime
) -> Iterator[tuple[date, datetime]]:
    first = patient.anchor(timing.start) if timing.start else patient.enrolled_at
    if first is None:
        return
    last = patient.anchor(timing.end) if timing.end else None
    zone = patient.zone
    first_day = first.astimezone(zone).date()
    week_zero = first_day - timedelta(days=first_day.weekday())
    day = max(first_day, (start - _DEFER_MARGIN).astimezone(zone).date())
    stop = end.astimezone(zone).date()
    while day <= stop:
        weeks = (day - week_zero).days // 7
        if day.weekday() in timing.weekdays and weeks % timing.every_weeks == 0:
            at = wall_clock(day, timing.at_local, zone)
            if first <= at and (last is None or at < last):
                yield day, at
        day += timedelta(days=1)


def next_due(
    rule: Rule,
    *,
    after: datetime,
    timezone: str,
    enrolled_at: datetime,
    sessions: Sequence[Session] = (),
    quiet: QuietHours,
    horizon: timedelta = timedelta(days=366),
) -> Occurrence | None:
    """The first occurrence of `rule` due strictly after `after`, looking `horizon` ahead."""
    found = plan(
        Protocol("next", (rule,)),
        timezone=timezone,
        enrolled_at=enrolled_at,
        sessions=sessions,
        start=after + timedelta(microseconds=1),
        end=after + horizon,
        quiet=quiet,
    )
    return found[0] if found else None


def bundle(
    occurrences: Sequence[Occurrence], window: timedelta = DEFAULT_BUNDLE_WINDOW
) -> list[Bundle]:
    """Merge one patient's occurrences due within `window` of a bundle's first (inclusive)."""
    if window < timedelta(0):
        raise ValueError("the bundling window cannot be negative")
    seen: set[str] = set()
    groups: list[list[Occurrence]] = []
    for occurrence in sorted(occurrences, key=lambda o: (o.due_at, o.key)):
        if occurrence.key in seen:  # the same occurrence from overlapping plans
            continue
        seen.add(occurrence.key)
        if groups and _joins(groups[-1], occurrence, window):
            groups[-1].append(occurrence)
        else:
            groups.append([occurrence])
    return [_bundle(group) for group in groups]


def _joins(group: Sequence[Occurrence], occurrence: Occurrence, window: timedelta) -> bool:
    """Within the window, and not due once a pre-session member's session has begun (the
    bundle closes then: a check-in due at or after it would have no time at all)."""
    if occurrence.due_at - group[0].due_at > window:
        return False
    return all(m.closes_at is None or occurrence.due_at < m.closes_at for m in group)


def _bundle(members: Sequence[Occurrence]) -> Bundle:
    """A bundle with a pre-session member closes at that session's start at the latest:
    nothing answered in it after dosing began counts as before the session."""
    instruments = tuple(dict.fromkeys(i for o in members for i in o.instruments))
    delays = [o.reminder_after for o in members if o.reminder_after is not None]
    expires = max(o.expires_at for o in members)
    closes = [o.closes_at for o in members if o.closes_at is not None]
    return Bundle(
        key="+".join(sorted(o.key for o in members)),
        instruments=instruments,
        due_at=members[0].due_at,
        expires_at=min([expires, *closes]),
        reminder_after=min(delays) if delays else None,
        max_reminders=max(o.max_reminders for o in members),
        members=tuple(members),
        ignore_quiet_hours=any(o.placement == "ignore" for o in members),
    )


def reminders_due(
    sent_at: datetime,
    reminders_sent: int,
    reminder_after: timedelta | None,
    max_reminders: int,
    now: datetime,
    *,
    timezone: str = "UTC",
    quiet: QuietHours = NO_QUIET_HOURS,
) -> bool:
    """Whether to remind now about a check-in still open.

    `sent_at` is the latest message about it (the check-in itself, or its latest
    reminder), so reminders keep their spacing even when quiet hours held one back. With
    `timezone` and `quiet`, no reminder is due inside the patient's quiet hours; the first
    tick after them finds it due.
    """
    if reminder_after is None or reminders_sent >= max_reminders:
        return False
    if now < sent_at + reminder_after:
        return False
    return not in_quiet_hours(now, ZoneInfo(timezone), quiet)

"""Wall-clock time in a patient's zone, daylight-saving changes, and quiet hours.

* :func:`wall_clock` turns a local date and time into one UTC instant. A time the clock
  skips (spring forward: 02:30 in New York on 2026-03-08) becomes the first instant after
  the gap (03:00 EDT); a time the clock shows twice (fall back: 01:30 on 2026-11-01) is
  taken once, at its first, earlier showing (01:30 EDT). Every date and time therefore has
  exactly one instant, and no instant is produced twice.
* :class:`QuietHours` are local wall-clock hours when nothing is sent: from `start_local`
  (inclusive) to `end_local` (exclusive), across midnight when the start is later than the
  end. The default, 20:00-08:00, allows 08:00 exactly and refuses 20:00 exactly. Equal
  start and end mean no quiet hours (:data:`NO_QUIET_HOURS`).
* :func:`defer` moves an instant inside quiet hours to the next allowed instant;
  :func:`advance` moves it to just before the quiet hours it falls in began.
* :func:`resolve_local` is :func:`wall_clock` for an operator's typed local time, saying
  whether the clock skipped it or showed it twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

# How long before quiet hours begin a check-in moved earlier is sent: time to answer a
# PHQ-9 (two to five minutes) with room to spare, before the evening goes quiet.
EARLIER_LEAD = timedelta(minutes=30)


@dataclass(frozen=True)
class QuietHours:
    start_local: time = time(20, 0)
    end_local: time = time(8, 0)

    def __post_init__(self) -> None:
        if self.start_local.tzinfo is not None or self.end_local.tzinfo is not None:
            raise ValueError("quiet hours are wall-clock times: no tzinfo")

    @property
    def enabled(self) -> bool:
        return self.start_local != self.end_local

    def contains(self, wall: time) -> bool:
        """Whether a local wall-clock time falls in the quiet hours."""
        start, end = self.start_local, self.end_local
        if start == end:
            return False
        if start < end:
            return start <= wall < end
        return wall >= start or wall < end


NO_QUIET_HOURS = QuietHours(time(0), time(0))


def wall_clock(day: date, at: time, zone: ZoneInfo) -> datetime:
    """The one UTC instant at which the clock in `zone` shows `at` on `day`."""
    naive = datetime.combine(day, at.replace(tzinfo=None, fold=0))
    instant = naive.replace(tzinfo=zone).astimezone(UTC)  # fold=0: the earlier if twice
    if instant.astimezone(zone).replace(tzinfo=None) == naive:
        return instant
    return _gap_end(naive, zone)


def _gap_end(naive: datetime, zone: ZoneInfo) -> datetime:
    """The first instant after the gap that swallowed `naive`: the moment the clock jumped.

    Read with the offset after the change (fold=1), `naive` is an instant before the jump;
    with the offset before (fold=0), one after it. Bisect between them to the second.
    """
    before = naive.replace(tzinfo=zone, fold=1).astimezone(UTC)
    after = naive.replace(tzinfo=zone, fold=0).astimezone(UTC)
    offset_after = after.astimezone(zone).utcoffset()
    span = int((after - before).total_seconds())
    while span > 1:
        middle = before + timedelta(seconds=span // 2)
        if middle.astimezone(zone).utcoffset() == offset_after:
            after = middle
        else:
            before = middle
        span = int((after - before).total_seconds())
    return after


def local_wall(at: datetime, zone: ZoneInfo) -> time:
    """The wall-clock time `zone` shows at the aware instant `at`."""
    return at.astimezone(zone).time()


def in_quiet_hours(at: datetime, zone: ZoneInfo, quiet: QuietHours) -> bool:
    return quiet.contains(local_wall(at, zone))


def defer(at: datetime, zone: ZoneInfo, quiet: QuietHours) -> datetime:
    """`at` (in UTC) when it is allowed, else the end of the quiet hours it falls in."""
    local = at.astimezone(zone)
    wall = local.time()
    if not quiet.contains(wall):
        return at.astimezone(UTC)
    day = local.date()
    if wall >= quiet.end_local:  # the evening part of quiet hours that run past midnight
        day += timedelta(days=1)
    allowed = wall_clock(day, quiet.end_local, zone)
    if allowed <= at:  # `at` is in a repeated hour after the end time's first showing
        allowed = datetime.combine(day, quiet.end_local.replace(fold=1), zone).astimezone(UTC)
    return allowed


def advance(
    at: datetime, zone: ZoneInfo, quiet: QuietHours, lead: timedelta = EARLIER_LEAD
) -> datetime:
    """`at` (in UTC) when it is allowed, else `lead` before the quiet hours it falls in
    began (the evening before, for a 05:00 time and quiet hours 20:00-08:00), or, when
    fewer than `lead` were allowed between them and the quiet hours before, the moment
    those ended (quiet hours 01:00-00:59 leave one minute: 00:59)."""
    local = at.astimezone(zone)
    wall = local.time()
    if not quiet.contains(wall):
        return at.astimezone(UTC)
    day = local.date()
    overnight = quiet.start_local > quiet.end_local
    if overnight and wall < quiet.end_local:
        day -= timedelta(days=1)  # the morning part: they began the evening before
    began = wall_clock(day, quiet.start_local, zone)
    ended = wall_clock(day if overnight else day - timedelta(days=1), quiet.end_local, zone)
    return min(max(began - lead, ended), at.astimezone(UTC))


@dataclass(frozen=True)
class LocalTime:
    """A local date and time read in a zone: the instant, and what the clock did then
    (``"skipped"``: the time does not exist, taken as the moment the gap ended;
    ``"repeated"``: it exists twice, taken at its first showing)."""

    at: datetime  # aware UTC
    clock: Literal["exact", "skipped", "repeated"]


def resolve_local(naive: datetime, zone: ZoneInfo) -> LocalTime:
    """The instant a clock in `zone` shows `naive`, by :func:`wall_clock`'s rule."""
    if naive.tzinfo is not None:
        raise ValueError("resolve_local reads a local time: no tzinfo")
    at = wall_clock(naive.date(), naive.time(), zone)
    if at.astimezone(zone).replace(tzinfo=None) != naive.replace(fold=0):
        return LocalTime(at, "skipped")
    second = naive.replace(tzinfo=zone, fold=1).astimezone(UTC)
    return LocalTime(at, "repeated" if second != at else "exact")

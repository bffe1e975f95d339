"""Schedules: when a patient is asked which instruments. Pure, standard library only;
imports nothing of ``bot`` outside ``bot.domain``.

* :mod:`.rules`: protocols as frozen values (calendar, enrollment- and session-relative
  rules), durations.
* :mod:`.config`: the ``[protocols.<name>]`` tables of config.toml -> :class:`Protocol`.
* :mod:`.wallclock`: local wall-clock time, daylight-saving changes, quiet hours.
* :mod:`.planning`: occurrences due in a window, pre-session timing, reminders, bundling.
* :mod:`.moves`: a plan against what was stored before (a moved session's check-ins).
* :mod:`.examples`: the example protocols config.example.toml ships.

The names below are the family's public surface; code outside it imports from here.
"""

from bot.domain.schedule.config import parse_duration, protocol_from_mapping
from bot.domain.schedule.examples import example_protocols
from bot.domain.schedule.moves import Outlook, Stored, reconcile, to_close
from bot.domain.schedule.planning import (
    Bundle,
    Occurrence,
    bundle,
    next_due,
    plan,
    reminders_due,
)
from bot.domain.schedule.rules import (
    WEEKDAYS,
    Bound,
    Calendar,
    EnrollmentRelative,
    Protocol,
    Rule,
    Session,
    SessionRelative,
    format_duration,
)
from bot.domain.schedule.wallclock import (
    NO_QUIET_HOURS,
    LocalTime,
    QuietHours,
    advance,
    defer,
    in_quiet_hours,
    resolve_local,
    wall_clock,
)

__all__ = [
    "NO_QUIET_HOURS",
    "WEEKDAYS",
    "Bound",
    "Bundle",
    "Calendar",
    "EnrollmentRelative",
    "LocalTime",
    "Occurrence",
    "Outlook",
    "Protocol",
    "QuietHours",
    "Rule",
    "Session",
    "SessionRelative",
    "Stored",
    "advance",
    "bundle",
    "defer",
    "example_protocols",
    "format_duration",
    "in_quiet_hours",
    "next_due",
    "parse_duration",
    "plan",
    "protocol_from_mapping",
    "reconcile",
    "reminders_due",
    "resolve_local",
    "to_close",
    "wall_clock",
]

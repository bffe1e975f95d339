"""Where a score stands in the treatment series: the session count and the hours since
the latest session, fixed when the score is made (stored on the score, never recomputed
from sessions moved or cancelled later).

The count is of the sessions held (not cancelled) that *started before* the score's time;
the hours are measured from the latest of them. A score made at a session's very start
(a pre-session check-in closed as dosing began) belongs before that session, the rule
the series report and the outcome assessment already use (``Observation.session``): the
pre-dose score of session 3 is number 2, never 3 at 0 hours.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

HOUR = timedelta(hours=1)


@dataclass(frozen=True)
class SessionPosition:
    session_number: int  # sessions held before the score; 0: before the series
    hours_since_session: float | None  # None before the first session; 2 decimals


def session_position(session_starts: Iterable[datetime], at: datetime) -> SessionPosition:
    """The position of a score made at `at`, given the start of every held session (any
    order; cancelled sessions are the caller's to leave out)."""
    before = [start for start in session_starts if start < at]
    if not before:
        return SessionPosition(0, None)
    return SessionPosition(len(before), round((at - max(before)) / HOUR, 2))

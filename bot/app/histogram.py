"""A histogram of durations kept in this process, for ``/metrics`` (Prometheus's
cumulative buckets, a sum and a count). Pure and cheap: an observation is a bisect and
two additions, so it can sit on every turn's path."""

from __future__ import annotations

import bisect
from collections.abc import Sequence

# seconds: a turn takes a few milliseconds; a turn that waited for the database (SQLite's
# one writer in a storm, a PostgreSQL lock) takes tenths; anything past a second is news
TURN_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Histogram:
    def __init__(self, bounds: Sequence[float] = TURN_BUCKETS_S) -> None:
        if list(bounds) != sorted(set(bounds)) or not bounds:
            raise ValueError("bucket bounds must be distinct and ascending")
        self.bounds = tuple(bounds)
        self._counts = [0] * (len(self.bounds) + 1)  # the last: above every bound
        self.total = 0.0

    def observe(self, value: float) -> None:
        self._counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value

    @property
    def count(self) -> int:
        return sum(self._counts)

    def cumulative(self) -> list[tuple[float, int]]:
        """(upper bound, observations at or below it) for each bound, then +Inf: the
        buckets as Prometheus counts them (``le``, cumulative)."""
        found: list[tuple[float, int]] = []
        running = 0
        for bound, n in zip((*self.bounds, float("inf")), self._counts, strict=True):
            running += n
            found.append((bound, running))
        return found

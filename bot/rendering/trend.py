"""What a trend chart shows, as plain values: per instrument its valid totals over time, its
severity bands and baseline; the treatment sessions. No matplotlib here, so the use case
that loads a trend (:mod:`bot.app.trends`) costs nothing at start-up; :mod:`.chart` draws it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from bot.domain.outcomes import Observation, assess
from bot.instruments import Catalog

INSTRUMENTS = ("phq9", "gad7")  # drawn when the patient has scores on them, in this order


@dataclass(frozen=True)
class Point:
    at: datetime
    total: int


@dataclass(frozen=True)
class SessionMark:
    at: datetime
    number: int


@dataclass(frozen=True)
class BandSpan:
    low: int
    high: int
    label: str


@dataclass(frozen=True)
class Series:
    instrument: str  # key, e.g. "phq9"
    name: str  # shown, e.g. "PHQ-9"
    max_total: int
    points: tuple[Point, ...]
    bands: tuple[BandSpan, ...] = ()
    baseline: int | None = None


@dataclass(frozen=True)
class Trend:
    title: str
    series: tuple[Series, ...]
    sessions: tuple[SessionMark, ...] = ()


def series_for(catalog: Catalog, key: str, points: tuple[Point, ...]) -> Series:
    """A series of `points` on instrument `key`, with its bands and inferred baseline."""
    instrument = catalog.get(key)
    bands = tuple(BandSpan(b.low, b.high, b.label.get("en")) for b in instrument.bands)
    observations = [Observation(p.at, p.total) for p in points]
    baseline = assess(observations, instrument.outcomes).baseline
    top = instrument.max_total or max(p.total for p in points)
    return Series(key, instrument.name, top, points, bands, baseline)

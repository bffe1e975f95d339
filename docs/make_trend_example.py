"""Render docs/img/trend-example.png from a made-up six-session series (no real patient).

Run from the repository root: ``.venv/bin/python docs/make_trend_example.py``.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's `bot`

from bot.instruments import load_catalog
from bot.rendering.chart import render_trend
from bot.rendering.trend import Point, SessionMark, Trend, series_for

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
PHQ9 = (19, 17, 14, 12, 9, 8, 6)  # before the series, then the day after each session
GAD7 = (14, 13, 11, 9, 8, 6, 5)


def example() -> Trend:
    catalog = load_catalog()
    days = [START + timedelta(days=3.5 * n) for n in range(len(PHQ9))]
    sessions = tuple(SessionMark(day - timedelta(days=1), n) for n, day in enumerate(days) if n)
    phq9 = tuple(Point(day, total) for day, total in zip(days, PHQ9, strict=True))
    gad7 = tuple(Point(day, total) for day, total in zip(days, GAD7, strict=True))
    series = (series_for(catalog, "phq9", phq9), series_for(catalog, "gad7", gad7))
    return Trend("P-017 (example)", series, sessions)


def main() -> None:
    target = Path(__file__).resolve().parent / "img" / "trend-example.png"
    target.write_bytes(render_trend(example()))
    print(f"wrote {target}")


if __name__ == "__main__":
    main()

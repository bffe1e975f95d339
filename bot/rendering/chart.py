"""A patient's trend as a PNG: scores over time per instrument, severity bands shaded,
treatment sessions as numbered vertical lines, the baseline marked.

Drawn with matplotlib's object API only (a ``Figure`` on its own Agg canvas, never
``pyplot``), so nothing global is touched and :func:`render_trend` is safe in a worker
thread (:func:`bot.app.trends.trend_png` loads the data and renders it there, off the event
loop). The chart carries numbers, band names and the display name given; never item
wording or answers.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import datetime

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.dates import DateFormatter, date2num
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from bot.rendering.trend import Series, SessionMark, Trend

# Band shades from the lowest band (calm) to the highest (alarming).
SHADES = ("#e3f1e3", "#f2f4dc", "#fbedd5", "#f9dccb", "#f4c9c9", "#eab3b3")


def render_trend(trend: Trend, dpi: int = 100) -> bytes:
    """The trend as PNG bytes (one panel per series, sharing the time axis)."""
    if not trend.series:
        raise ValueError("a trend needs at least one series with scores")
    figure = Figure(figsize=(8, 2.6 + 2.4 * len(trend.series)), dpi=dpi, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(trend.series), 1, sharex=True, squeeze=False)[:, 0]
    for ax, series in zip(axes, trend.series, strict=True):
        _panel(ax, series, trend.sessions)
    _session_numbers(axes[0], trend.sessions)
    axes[-1].tick_params(axis="x", labelrotation=30)
    figure.suptitle(trend.title, fontsize=12)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _panel(axes: Axes, series: Series, sessions: Sequence[SessionMark]) -> None:
    for n, band in enumerate(series.bands):
        shade = SHADES[round(n * (len(SHADES) - 1) / max(1, len(series.bands) - 1))]
        axes.axhspan(band.low - 0.5, band.high + 0.5, color=shade, zorder=0)
        middle = (band.low + band.high) / 2
        axes.text(1.01, middle, band.label, transform=axes.get_yaxis_transform(), fontsize=7,
                  va="center", color="#555555")  # fmt: skip
    for mark in sessions:
        axes.axvline(_x(mark.at), color="#7a7a7a", linestyle=":", linewidth=1, zorder=1)
    times = [_x(p.at) for p in series.points]
    totals = [p.total for p in series.points]
    axes.plot(times, totals, marker="o", color="#1f4e79", linewidth=2, zorder=3)
    for point in series.points:
        axes.annotate(str(point.total), (_x(point.at), point.total), textcoords="offset points",
                      xytext=(0, 7), ha="center", fontsize=8, zorder=4)  # fmt: skip
    if series.baseline is not None:
        axes.axhline(series.baseline, color="#1f4e79", linestyle="--", linewidth=1, zorder=2)
        axes.text(0.005, series.baseline, f"baseline {series.baseline}", fontsize=7,
                  transform=axes.get_yaxis_transform(), va="bottom", color="#1f4e79")  # fmt: skip
    axes.set_ylim(-0.5, series.max_total + 0.5)
    axes.set_ylabel(series.name)
    axes.yaxis.set_major_locator(MaxNLocator(integer=True))
    axes.grid(axis="y", alpha=0.3)
    axes.xaxis_date(tz="UTC")
    axes.xaxis.set_major_formatter(DateFormatter("%d %b"))  # type: ignore[no-untyped-call]


def _x(at: datetime) -> float:
    return float(date2num(at))  # type: ignore[no-untyped-call]


def _session_numbers(axes: Axes, sessions: Sequence[SessionMark]) -> None:
    for mark in sessions:
        axes.annotate(f"S{mark.number}", (_x(mark.at), 1.0), xycoords=("data", "axes fraction"),
                      xytext=(0, 2), textcoords="offset points", ha="center", fontsize=7,
                      color="#555555")  # fmt: skip

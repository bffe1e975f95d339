"""A patient's series drawn as inline SVG for the panel: one instrument's totals over time
on its own scale, its severity bands shaded, each held treatment session a vertical
marker labelled with its number and dose ("#3 0.5 mg/kg").

Pure: plain values in (:class:`SeriesChart`), an SVG string out; no clock, no database,
no matplotlib. The page's Content-Security-Policy allows no inline style, so the drawing
uses presentation attributes (``fill``, ``stroke``, ``font-size``) and classes only, never
a ``style`` attribute or element. It scales with its container (``viewBox``, width 100%).

The x axis is time, not the session number: a score stands at the moment it was made, so
a pre-dose score sits just left of its session's marker and the next day's score just
right of it, the spacing of sessions is visible (twice weekly, then weekly), and a moved
session moves its marker without the scores (whose session number was fixed when they
were made) disagreeing with the drawing.

Words: the caller passes the title and description (the template writes them); the
drawing itself carries only numbers, dates, the instrument's band labels and doses. How a
date and a dose are written is passed in too (:class:`ChartFormats`: the panel's locale,
"May 4, 2026" and "0,5 mg/kg"); without it, ISO dates and ``Dose.text()``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from xml.sax.saxutils import escape, quoteattr

from bot.domain.dosing import Dose

WIDTH = 720
HEIGHT = 330
LEFT = 40  # room for the y labels
RIGHT = 12
TOP = 100  # room for the session labels, drawn upward from the plot
BOTTOM = 26  # room for the first and last date
PLOT_WIDTH = WIDTH - LEFT - RIGHT
PLOT_HEIGHT = HEIGHT - TOP - BOTTOM
BAND_FILLS = ("#e3f1e7", "#eef3dc", "#fbf0d5", "#fbe1cf", "#f5cfcf", "#efc0c0")
INK = "#1d2430"
MUTED = "#5b6676"
SESSION = "#2f5d8a"


@dataclass(frozen=True)
class Mark:
    """One total at the moment it was made."""

    at: datetime
    value: int


@dataclass(frozen=True)
class SessionLine:
    """A held treatment session: its start, number and dose (None when not recorded)."""

    at: datetime
    number: int
    dose: Dose | None = None


def _iso_date(at: datetime) -> str:
    return f"{at:%Y-%m-%d}"


def _dose_text(dose: Dose) -> str:
    return dose.text()


@dataclass(frozen=True)
class ChartFormats:
    """How the drawing writes a date on its axis and a session's dose."""

    date: Callable[[datetime], str] = _iso_date
    dose: Callable[[Dose], str] = _dose_text

    def label(self, session: SessionLine) -> str:
        """``#3 0.5 mg/kg``; ``#3`` without a recorded dose."""
        given = self.dose(session.dose) if session.dose else ""
        return f"#{session.number} {given}".rstrip()


ISO = ChartFormats()


@dataclass(frozen=True)
class Shade:
    """A severity band, low and high inclusive, as the instrument defines it."""

    low: int
    high: int
    label: str


@dataclass(frozen=True)
class SeriesChart:
    key: str  # names the element ids: "phq9" -> "chart-phq9-title"
    top: int  # the scale's maximum (PHQ-9 27, MADRS 60); the minimum is 0
    start: datetime
    end: datetime
    points: tuple[Mark, ...]
    sessions: tuple[SessionLine, ...] = ()
    bands: tuple[Shade, ...] = ()


def time_span(times: Sequence[datetime], pad: float = 0.04) -> tuple[datetime, datetime]:
    """The x range for these moments, with a margin each side (a day for a single one)."""
    first, last = min(times), max(times)
    if first == last:
        return first - timedelta(days=1), last + timedelta(days=1)
    margin = (last - first) * pad
    return first - margin, last + margin


def x_of(chart: SeriesChart, at: datetime) -> float:
    share = (at - chart.start) / (chart.end - chart.start)
    return round(LEFT + share * PLOT_WIDTH, 1)


def y_of(chart: SeriesChart, value: float) -> float:
    return round(TOP + PLOT_HEIGHT - value / chart.top * PLOT_HEIGHT, 1)


def series_svg(
    chart: SeriesChart, title: str, description: str, formats: ChartFormats = ISO
) -> str:
    """The chart as one ``<svg>`` element, ready to place inline in a page."""
    ids = f"chart-{chart.key}-title chart-{chart.key}-desc"
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="100%" class="series-chart" role="img" aria-labelledby="{ids}">',
        f'<title id="chart-{chart.key}-title">{escape(title)}</title>',
        f'<desc id="chart-{chart.key}-desc">{escape(description)}</desc>',
        *_bands(chart),
        *_axes(chart, formats),
        *_sessions(chart, formats),
        *_series(chart),
        "</svg>",
    ]
    return "\n".join(parts)


def _bands(chart: SeriesChart) -> list[str]:
    out = ['<g class="bands">']
    for n, band in enumerate(chart.bands):
        top = y_of(chart, min(band.high + 1, chart.top))  # integer bands meet at n + 1
        bottom = y_of(chart, band.low)
        fill = BAND_FILLS[min(n, len(BAND_FILLS) - 1)]
        out.append(
            f'<rect x="{LEFT}" y="{top}" width="{PLOT_WIDTH}" height="{round(bottom - top, 1)}" '
            f'fill="{fill}"/>'
        )
        if bottom - top >= 12:
            out.append(
                f'<text x="{WIDTH - RIGHT - 4}" y="{round(bottom - 4, 1)}" text-anchor="end" '
                f'font-size="12" fill="{MUTED}">{escape(band.label)}</text>'
            )
    out.append("</g>")
    return out


def _axes(chart: SeriesChart, formats: ChartFormats) -> list[str]:
    ticks = sorted({0, chart.top, *(b.low for b in chart.bands)})
    base = TOP + PLOT_HEIGHT
    out = ['<g class="axes">']
    for value in ticks:
        y = y_of(chart, value)
        out.append(f'<line x1="{LEFT - 4}" y1="{y}" x2="{LEFT}" y2="{y}" stroke="{MUTED}"/>')
        out.append(
            f'<text x="{LEFT - 6}" y="{round(y + 4, 1)}" text-anchor="end" font-size="12" '
            f'fill="{INK}">{value}</text>'
        )
    out.append(f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{base}" stroke="{MUTED}"/>')
    out.append(f'<line x1="{LEFT}" y1="{base}" x2="{LEFT + PLOT_WIDTH}" y2="{base}" '
               f'stroke="{MUTED}"/>')  # fmt: skip
    for at, anchor in ((chart.start, "start"), (chart.end, "end")):
        out.append(
            f'<text x="{x_of(chart, at)}" y="{HEIGHT - 8}" text-anchor="{anchor}" '
            f'font-size="12" fill="{MUTED}">{escape(formats.date(at))}</text>'
        )
    out.append("</g>")
    return out


def _sessions(chart: SeriesChart, formats: ChartFormats) -> list[str]:
    out = ['<g class="sessions">']
    for session in chart.sessions:
        x = x_of(chart, session.at)
        out.append(
            f'<line class="session" x1="{x}" y1="{TOP}" x2="{x}" y2="{TOP + PLOT_HEIGHT}" '
            f'stroke="{SESSION}" stroke-width="1.5" stroke-dasharray="4 3"/>'
        )
        anchor_x, anchor_y = round(x + 4, 1), TOP - 4
        out.append(
            f'<text class="session-label" x="{anchor_x}" y="{anchor_y}" font-size="12" '
            f'fill="{SESSION}" transform="rotate(-90 {anchor_x} {anchor_y})">'
            f"{escape(formats.label(session))}</text>"
        )
    out.append("</g>")
    return out


def _series(chart: SeriesChart) -> list[str]:
    ordered = sorted(chart.points, key=lambda m: m.at)
    coordinates = [(x_of(chart, m.at), y_of(chart, m.value), m) for m in ordered]
    out = ['<g class="series">']
    if len(coordinates) > 1:
        line = " ".join(f"{x},{y}" for x, y, _ in coordinates)
        out.append(f'<polyline points="{line}" fill="none" stroke="{INK}" stroke-width="2"/>')
    for x, y, mark in coordinates:
        out.append(
            f'<circle class="score" cx="{x}" cy="{y}" r="4" fill="{INK}" '
            f"data-value={quoteattr(str(mark.value))}/>"
        )
    out.append("</g>")
    return out

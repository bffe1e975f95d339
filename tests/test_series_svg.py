"""The series chart as SVG, from known data, read back with xml.etree: each score a point
where time and total put it, each session a marker labelled with its number and dose,
the bands shaded on the instrument's scale, accessible, and no inline style anywhere."""

from __future__ import annotations

import itertools
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

import pytest

from bot.domain.dosing import Dose
from bot.rendering import series_svg as svg
from bot.rendering.series_svg import Mark, SeriesChart, SessionLine, Shade, series_svg

NS = {"s": "http://www.w3.org/2000/svg"}
START = datetime(2026, 5, 1, tzinfo=UTC)
END = START + timedelta(days=10)
PHQ9_BANDS = (Shade(0, 4, "Minimal"), Shade(5, 9, "Mild"), Shade(10, 14, "Moderate"),
              Shade(15, 19, "Moderately severe"), Shade(20, 27, "Severe"))  # fmt: skip


def chart(**changes: object) -> SeriesChart:
    values: dict[str, object] = {
        "key": "phq9",
        "top": 27,
        "start": START,
        "end": END,
        "points": (
            Mark(START, 27),
            Mark(START + timedelta(days=5), 0),
            Mark(START + timedelta(days=10), 9),
        ),
        "sessions": (
            SessionLine(START + timedelta(days=2), 1, Dose("ketamine-iv", 0.5, "mg/kg")),
            SessionLine(START + timedelta(days=4), 2),
        ),
        "bands": PHQ9_BANDS,
    }
    return SeriesChart(**{**values, **changes})  # type: ignore[arg-type]


def drawn(c: SeriesChart) -> ET.Element:
    return ET.fromstring(series_svg(c, "PHQ-9 <series>", "PHQ-9 from 27 to 9 after session 2"))


def test_each_score_is_a_point_at_its_time_and_total() -> None:
    """The span's start is the left edge, its middle the middle; 27 is the top, 0 the
    bottom, 9 a third of the way up; the line joins them in time order."""
    root = drawn(chart())
    points = [(float(c.get("cx", "")), float(c.get("cy", "")))
              for c in root.iterfind(".//s:circle[@class='score']", NS)]  # fmt: skip
    bottom = svg.TOP + svg.PLOT_HEIGHT
    assert points == [
        (svg.LEFT, svg.TOP),
        (svg.LEFT + svg.PLOT_WIDTH / 2, bottom),
        (svg.LEFT + svg.PLOT_WIDTH, round(bottom - svg.PLOT_HEIGHT / 3, 1)),
    ]
    [line] = root.iterfind(".//s:polyline", NS)
    assert line.get("points") == " ".join(f"{x},{y}" for x, y in points)


def test_each_session_is_a_marker_labelled_with_its_number_and_dose() -> None:
    root = drawn(chart())
    markers = [float(m.get("x1", "")) for m in root.iterfind(".//s:line[@class='session']", NS)]
    assert markers == [svg.LEFT + svg.PLOT_WIDTH * 0.2, svg.LEFT + svg.PLOT_WIDTH * 0.4]
    labels = [t.text for t in root.iterfind(".//s:text[@class='session-label']", NS)]
    assert labels == ["#1 0.5 mg/kg", "#2"]


def test_the_severity_bands_are_shaded_on_the_instruments_scale() -> None:
    """Five bands stacked from the bottom to the top of the plot, meeting without gaps;
    their lower bounds are the y axis' ticks."""
    root = drawn(chart())
    rects = list(root.iterfind(".//s:g[@class='bands']/s:rect", NS))
    spans = [(float(r.get("y", "")), float(r.get("height", ""))) for r in rects]
    assert len(spans) == 5
    assert spans[0][0] + spans[0][1] == pytest.approx(svg.TOP + svg.PLOT_HEIGHT)
    assert spans[-1][0] == svg.TOP
    for lower, upper in itertools.pairwise(spans):
        assert upper[0] + upper[1] == pytest.approx(lower[0], abs=0.11)
    ticks = [t.text for t in root.iterfind(".//s:g[@class='axes']/s:text", NS)]
    assert ticks[:6] == ["0", "5", "10", "15", "20", "27"]
    assert ticks[6:] == ["2026-05-01", "2026-05-11"]


def test_the_chart_is_accessible_scalable_and_has_no_inline_style() -> None:
    text = series_svg(chart(), "PHQ-9 <series>", "from 27 to 9")
    root = ET.fromstring(text)
    assert root.get("role") == "img" and root.get("width") == "100%"
    assert root.get("viewBox") == f"0 0 {svg.WIDTH} {svg.HEIGHT}"
    assert root.get("aria-labelledby") == "chart-phq9-title chart-phq9-desc"
    assert root.findtext("s:title", namespaces=NS) == "PHQ-9 <series>"  # escaped, read back
    assert root.findtext("s:desc", namespaces=NS) == "from 27 to 9"
    assert "style" not in text


def test_a_single_score_draws_a_point_and_no_line() -> None:
    start, end = svg.time_span([START])
    root = drawn(chart(start=start, end=end, points=(Mark(START, 12),), sessions=()))
    assert [c.get("cx") for c in root.iterfind(".//s:circle", NS)] == [
        str(svg.LEFT + svg.PLOT_WIDTH / 2)
    ]
    assert root.find(".//s:polyline", NS) is None
    assert root.find(".//s:line[@class='session']", NS) is None


def test_time_span_leaves_a_margin_each_side() -> None:
    first, last = START, START + timedelta(days=25)
    assert svg.time_span([last, first]) == (START - timedelta(days=1), last + timedelta(days=1))

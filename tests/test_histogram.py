"""The process's turn-time histogram and its Prometheus form: a value on a bound counts
in that bound's bucket (``le`` is "at or below"), buckets are cumulative, and +Inf holds
every observation."""

from __future__ import annotations

import pytest

from bot.app.histogram import Histogram
from bot.app.metrics import histogram, render


def test_a_value_on_a_bound_counts_at_or_below_it_and_buckets_accumulate() -> None:
    values = Histogram((0.01, 0.1, 1.0))
    for seconds in (0.01, 0.0100001, 0.1, 0.5, 1.0, 7.0):
        values.observe(seconds)
    assert values.cumulative() == [(0.01, 1), (0.1, 3), (1.0, 5), (float("inf"), 6)]
    assert values.count == 6
    assert values.total == pytest.approx(8.6200001)


def test_rendered_as_a_prometheus_histogram() -> None:
    values = Histogram((0.005, 0.25))
    values.observe(0.004)
    values.observe(0.3)
    assert render([histogram("checkin_turn_seconds", "Turn time.", values)]) == (
        "# HELP checkin_turn_seconds Turn time.\n"
        "# TYPE checkin_turn_seconds histogram\n"
        'checkin_turn_seconds_bucket{le="0.005"} 1\n'
        'checkin_turn_seconds_bucket{le="0.25"} 1\n'
        'checkin_turn_seconds_bucket{le="+Inf"} 2\n'
        "checkin_turn_seconds_sum 0.304\n"
        "checkin_turn_seconds_count 2\n"
    )


@pytest.mark.parametrize("bounds", [(), (0.1, 0.01), (0.1, 0.1)])
def test_bounds_must_be_distinct_and_ascending(bounds: tuple[float, ...]) -> None:
    with pytest.raises(ValueError, match="distinct and ascending"):
        Histogram(bounds)

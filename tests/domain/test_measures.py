"""Clinician-rated measures: MADRS totals and bands, blood pressure at its time points."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot.domain.errors import AnswerError
from bot.domain.instruments import BloodPressure as BP
from bot.domain.measures import MADRS_RULES, blood_pressure, madrs
from bot.domain.outcomes import Observation, assess

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("total", "band"),
    [(0, "normal"), (6, "normal"), (7, "mild"), (19, "mild"), (20, "moderate"),
     (34, "moderate"), (35, "severe"), (60, "severe")],
)  # fmt: skip
def test_madrs_bands_at_their_edges(total: int, band: str) -> None:
    """Each Snaith band starts and ends where the paper puts it."""
    assert (madrs(total).total, madrs(total).band) == (total, band)


@pytest.mark.parametrize("total", [-1, 61])
def test_madrs_outside_0_to_60_is_refused(total: int) -> None:
    """A total no rating can produce is an error naming the field."""
    with pytest.raises(AnswerError, match=r"madrs\.total"):
        madrs(total)


@pytest.mark.parametrize(
    ("totals", "statuses"),
    [
        ((30, 15), ("response",)),  # exactly 50 % down, not yet <= 12
        ((30, 16), ()),  # 46.7 %: no response
        ((24, 12), ("response", "remission")),  # 12 is remission (SUSTAIN-2)
        ((20, 13), ()),  # 13 is not
    ],
)
def test_madrs_response_and_remission(totals: tuple[int, int], statuses: tuple[str, ...]) -> None:
    """Response at >= 50 % from baseline, remission at <= 12."""
    observations = [Observation(T0 + timedelta(days=n), t, n) for n, t in enumerate(totals)]
    found = assess(observations, MADRS_RULES).statuses
    assert tuple(s for s in found if s in ("response", "remission")) == statuses


@pytest.mark.parametrize(
    ("reading", "point", "pre", "flags"),
    [
        (BP(140, 90), "pre", None, ()),  # at the label's limit: not above it
        (BP(141, 80), "pre", None, ("bp_elevated_pre",)),
        (BP(130, 91), "pre", None, ("bp_elevated_pre",)),
        (BP(165, 95), "40min", BP(125, 80), ("bp_rise",)),  # +40 systolic
        (BP(150, 104), "2h", BP(125, 79), ("bp_rise",)),  # +25 diastolic
        (BP(164, 104), "40min", BP(125, 80), ()),  # +39 / +24
        (BP(182, 100), "40min", None, ("bp_severe",)),
        (BP(185, 112), "pre", None, ("bp_elevated_pre", "bp_severe")),
    ],
)
def test_blood_pressure_flags(
    reading: BP, point: str, pre: BP | None, flags: tuple[str, ...]
) -> None:
    """Elevated before dosing (> 140/90), a rise over the pre-dose reading (+40 / +25) and
    severe (>= 180/110) are each flagged at their exact limits."""
    measured = blood_pressure(reading, point, pre)
    assert measured.flags == flags
    assert measured.time_point == point and measured.total is None
    assert dict(measured.components) == {
        "systolic": reading.systolic,
        "diastolic": reading.diastolic,
    }


@pytest.mark.parametrize(
    ("reading", "point", "field"),
    [
        (BP(120, 80), "1h", "blood_pressure.point"),
        (BP(40, 30), "pre", "blood_pressure.systolic"),
        (BP(120, 10), "pre", "blood_pressure.diastolic"),
        (BP(80, 120), "pre", "blood_pressure.diastolic"),  # swapped
    ],
)
def test_blood_pressure_refuses_what_no_reading_is(reading: BP, point: str, field: str) -> None:
    """An unknown time point, an implausible value or swapped values are refused by name."""
    with pytest.raises(AnswerError, match=field):
        blood_pressure(reading, point)

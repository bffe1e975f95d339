"""Routes and doses of a treatment session: what is accepted, its unit, and what is
refused with a reason (boundaries of the mg/kg range, the esketamine devices)."""

from __future__ import annotations

import pytest

from bot.domain.dosing import BadDose, Dose, read_dose


@pytest.mark.parametrize(
    ("route", "amount", "unit", "expected"),
    [
        ("ketamine-iv", "0.5", None, Dose("ketamine-iv", 0.5, "mg/kg")),
        ("ketamine-iv", "0,75", "mg/kg", Dose("ketamine-iv", 0.75, "mg/kg")),
        ("Ketamine-IM", 0.05, None, Dose("ketamine-im", 0.05, "mg/kg")),  # the low edge
        ("ketamine-iv", "3", None, Dose("ketamine-iv", 3.0, "mg/kg")),  # the high edge
        ("esketamine-in", "84", None, Dose("esketamine-in", 84.0, "mg")),
        ("esketamine-in", "56", "mg", Dose("esketamine-in", 56.0, "mg")),
        ("esketamine-in", "28", None, Dose("esketamine-in", 28.0, "mg")),
        ("ketamine-iv", None, None, Dose("ketamine-iv", None, None)),  # route, dose later
        ("other", "", None, Dose("other", None, None)),
        ("other", "100", "mcg", Dose("other", 100.0, "mcg")),
    ],
)
def test_accepted(route: str, amount: str | float | None, unit: str | None, expected: Dose) -> None:
    assert read_dose(route, amount, unit) == expected


@pytest.mark.parametrize(
    ("route", "amount", "unit", "reason"),
    [
        ("ketamine", "0.5", None, "route 'ketamine' is not one of"),
        ("ketamine-iv", "35", None, "35 mg/kg is outside 0.05-3 mg/kg"),  # a total in mg
        ("ketamine-iv", "0.04", None, "outside 0.05-3 mg/kg"),
        ("ketamine-iv", "3.01", None, "outside 0.05-3 mg/kg"),
        ("ketamine-iv", "0.5", "mg", "ketamine-iv is dosed in mg/kg, not mg"),
        ("esketamine-in", "70", None, "given as 28, 56, 84 mg"),
        ("esketamine-in", "0.5", "mg/kg", "dosed in mg, not mg/kg"),
        ("other", "5", None, "needs a unit"),
        ("other", "5", "drops", "needs a unit"),
        ("ketamine-iv", "half", None, "is not a number"),
        ("ketamine-iv", "-0.5", None, "must be a positive number"),
        ("ketamine-iv", "nan", None, "must be a positive number"),
    ],
)
def test_refused_with_a_reason(route: str, amount: str, unit: str | None, reason: str) -> None:
    with pytest.raises(BadDose, match=reason.replace(".", r"\.")):
        read_dose(route, amount, unit)


def test_text_drops_a_trailing_zero() -> None:
    assert read_dose("esketamine-in", "84").text() == "84 mg"
    assert read_dose("ketamine-iv", "0.5").text() == "0.5 mg/kg"
    assert read_dose("ketamine-iv", None).text() == ""

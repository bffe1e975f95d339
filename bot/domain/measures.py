"""Clinician-rated measures: a MADRS total and a blood-pressure reading at a monitoring
time point, checked and interpreted here, stored by the caller like any other score.

MADRS (Montgomery & Åsberg, Br J Psychiatry 1979;134:382): only the clinician's total is
taken (0-60; the item text is not ours to ship, see docs/INSTRUMENTS.md). Bands are
Snaith et al. 1986. Response is a >= 50 % drop from baseline (TRANSFORM pooled, Turkoz
2021; SUSTAIN-2, Nijs 2020); remission is a total <= 12 (SUSTAIN-2, Nijs 2020; SUSTAIN-3;
ASPIRE), the esketamine programme's threshold.

Blood pressure: the Spravato label asks for a reading before dosing, about 40 minutes
after and until values settle (the REMS monitoring form records pre-dose, ~40 min and
pre-discharge; we name the points ``pre``, ``40min`` and ``2h``). Flags: ``bp_elevated_pre``
for a pre-dose reading above 140 systolic or 90 diastolic (the label's "elevated at
baseline"), ``bp_rise`` for a rise of >= 40 systolic or >= 25 diastolic over the same
session's pre-dose reading (the label's trial criterion), ``bp_severe`` at >= 180 systolic
or >= 110 diastolic (Hebert & Vidt 2008). A flag is a fact on the score; what to do about
it is the clinician's.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.domain.errors import AnswerError
from bot.domain.instruments import BloodPressure
from bot.domain.outcomes import OutcomeRules

MADRS = "madrs"
BLOOD_PRESSURE = "blood_pressure"
MEASURES = (MADRS, BLOOD_PRESSURE)  # the score.instrument of clinician-rated measures
MADRS_MAX = 60
MADRS_RULES = OutcomeRules(response_pct=50, remission_max=12)
MADRS_BANDS = ((6, "normal"), (19, "mild"), (34, "moderate"), (60, "severe"))  # Snaith 1986
BP_POINTS = ("pre", "40min", "2h")  # pre-dose, +40 minutes, +2 hours


@dataclass(frozen=True)
class Measured:
    """A checked measure, ready to store as a score."""

    instrument: str
    total: int | None
    band: str | None
    flags: tuple[str, ...] = ()
    time_point: str | None = None
    components: tuple[tuple[str, int], ...] = ()  # ("systolic", 150), ("diastolic", 95)


def madrs(total: int) -> Measured:
    """A clinician's MADRS total; AnswerError outside 0-60."""
    if not 0 <= total <= MADRS_MAX:
        raise AnswerError("madrs.total", f"{total} is not a MADRS total (0 to {MADRS_MAX})")
    band = next(name for top, name in MADRS_BANDS if total <= top)
    return Measured(MADRS, total, band)


def blood_pressure(
    reading: BloodPressure, point: str, pre_dose: BloodPressure | None = None
) -> Measured:
    """A reading at a time point (`pre_dose`: that session's pre-dose reading, if any)."""
    if point not in BP_POINTS:
        raise AnswerError("blood_pressure.point", f"{point!r} is not one of {', '.join(BP_POINTS)}")
    _check_reading(reading)
    flags = []
    if point == "pre" and (reading.systolic > 140 or reading.diastolic > 90):
        flags.append("bp_elevated_pre")
    if pre_dose is not None and point != "pre" and _rise(pre_dose, reading):
        flags.append("bp_rise")
    if reading.systolic >= 180 or reading.diastolic >= 110:
        flags.append("bp_severe")
    parts = (("systolic", reading.systolic), ("diastolic", reading.diastolic))
    return Measured(BLOOD_PRESSURE, None, None, tuple(flags), point, parts)


def _check_reading(reading: BloodPressure) -> None:
    if not 50 <= reading.systolic <= 300:
        raise AnswerError("blood_pressure.systolic", f"{reading.systolic} mmHg is not plausible")
    if not 20 <= reading.diastolic <= 200:
        raise AnswerError("blood_pressure.diastolic", f"{reading.diastolic} mmHg is not plausible")
    if reading.diastolic >= reading.systolic:
        raise AnswerError("blood_pressure.diastolic", "must be below the systolic pressure")


def _rise(pre: BloodPressure, now: BloodPressure) -> bool:
    return now.systolic - pre.systolic >= 40 or now.diastolic - pre.diastolic >= 25

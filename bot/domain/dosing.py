"""What a treatment session gave: the route and the dose, checked against what the
treatments given in these clinics look like.

* ``ketamine-iv`` and ``ketamine-im``: racemic ketamine by infusion or injection, dosed
  by body weight in mg/kg. The series studied for depression give 0.5 mg/kg over 40
  minutes, some clinics titrate towards 1 mg/kg or a little above; a figure outside
  0.05-3 mg/kg is almost always a slip (a total in mg typed as mg/kg), so it is refused
  with that reason instead of being stored.
* ``esketamine-in``: intranasal esketamine, 28 mg per device, given as 56 or 84 mg (28 mg
  only where the label allows it as a starting dose); nothing else is a dose of it.
* ``other``: anything else (another drug, ECT, a study treatment): a positive amount in
  one of :data:`OTHER_UNITS`, or no dose at all.

The route is stored beside the session's free-text ``kind``; the dose and its unit too,
so every score's session can show the dose it followed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from bot.domain.errors import CheckinError

ROUTES = ("ketamine-iv", "ketamine-im", "esketamine-in", "other")
PER_KG = ("ketamine-iv", "ketamine-im")
ESKETAMINE_MG = (28.0, 56.0, 84.0)
PER_KG_RANGE = (0.05, 3.0)
OTHER_UNITS = ("mg", "mg/kg", "mcg", "mcg/kg", "ml", "session")


class BadDose(CheckinError):
    """A route or dose that cannot be what was given; the message says why, and `field`
    which of ``route``, ``dose`` and ``unit`` it is about (a form marks that field)."""

    def __init__(self, message: str, field: str = "dose") -> None:
        self.field = field
        super().__init__(message)


@dataclass(frozen=True)
class Dose:
    route: str
    amount: float | None  # None: the route is known, the dose not (yet)
    unit: str | None

    def text(self) -> str:
        """``0.5 mg/kg`` or ``84 mg`` (no trailing ``.0``); empty without an amount."""
        if self.amount is None:
            return ""
        return f"{self.amount:g} {self.unit}"


def read_dose(route: str, amount: str | float | None, unit: str | None = None) -> Dose:
    """The route and dose as given (text from a form or the command line), checked.

    `unit` is needed only for ``other`` (it is fixed by the route otherwise; a different
    one is refused rather than converted)."""
    route = route.strip().lower()
    if route not in ROUTES:
        raise BadDose(f"route {route!r} is not one of {', '.join(ROUTES)}", "route")
    value = _number(amount)
    given_unit = (unit or "").strip().lower() or None
    if route in PER_KG:
        return _per_kg(route, value, given_unit)
    if route == "esketamine-in":
        return _esketamine(value, given_unit)
    if value is None:
        return Dose(route, None, None)
    if given_unit not in OTHER_UNITS:
        raise BadDose(
            f"a dose by route 'other' needs a unit: one of {', '.join(OTHER_UNITS)}", "unit"
        )
    return Dose(route, value, given_unit)


def _number(amount: str | float | None) -> float | None:
    if amount is None or (isinstance(amount, str) and not amount.strip()):
        return None
    try:
        value = float(str(amount).strip().replace(",", "."))
    except ValueError:
        raise BadDose(f"dose {amount!r} is not a number") from None
    if not math.isfinite(value) or value <= 0:
        raise BadDose(f"dose {amount!r} must be a positive number")
    return value


def _per_kg(route: str, value: float | None, unit: str | None) -> Dose:
    if unit not in (None, "mg/kg"):
        raise BadDose(f"{route} is dosed in mg/kg, not {unit}", "unit")
    if value is None:
        return Dose(route, None, None)
    low, high = PER_KG_RANGE
    if not low <= value <= high:
        raise BadDose(
            f"{value:g} mg/kg is outside {low:g}-{high:g} mg/kg for {route}; "
            "give the dose per kilogram of body weight, not the total in mg"
        )
    return Dose(route, value, "mg/kg")


def _esketamine(value: float | None, unit: str | None) -> Dose:
    if unit not in (None, "mg"):
        raise BadDose(f"esketamine-in is dosed in mg, not {unit}", "unit")
    if value is None:
        return Dose("esketamine-in", None, None)
    if value not in ESKETAMINE_MG:
        allowed = ", ".join(f"{m:g}" for m in ESKETAMINE_MG)
        raise BadDose(
            f"intranasal esketamine is given as {allowed} mg (28 mg devices), not {value:g}"
        )
    return Dose("esketamine-in", value, "mg")

"""Dates, times and numbers written the way the clinic's locale writes them (``[panel]
locale``, a BCP 47 name such as ``en-US``, ``en-GB`` or ``es-ES``), from the CLDR data that
Babel ships: month and day names, the order of day and month, the 12- or 24-hour clock,
the decimal separator and the percent sign's spacing.

Invariants:

* Only how a value is written changes with the locale; the value does not. Times arrive
  already in the viewer's zone, and are written in that zone.
* No word of the panel comes from here: the templates own those. A zone is written as its
  abbreviation from the time zone database ("BST", "EDT"), the same in every locale.
* Machine-readable outputs (the CLI, CSV, FHIR, ``Dose.text()``) never pass through here:
  they keep a point for decimals and ISO dates.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal, cast

from babel import Locale
from babel.dates import (
    format_date,
    format_time,
    get_datetime_format,
    match_skeleton,
    tokenize_pattern,
    untokenize_pattern,
)
from babel.numbers import format_decimal, format_percent, get_plus_sign_symbol

from bot.config.locales import parse_locale
from bot.domain.dosing import Dose

Style = Literal["full", "long", "medium", "short"]
STYLES = ("full", "long", "medium", "short")  # CLDR's own date lengths
# name fields a skeleton may ask wider than the locale's nearest pattern has them, and the
# skeleton letter that asks (stand-alone month L and weekday c follow M and E)
WIDENED = {"E": "E", "c": "E", "M": "M", "L": "M"}
DAY_MONTH = "MMMEd"  # `when` on another day: "Mon, May 4" (en-US), "lun, 4 may" (es-ES)


@dataclass(frozen=True)
class LocalFormats:
    """The panel's formatting for one locale; each method is a Jinja filter."""

    locale: Locale

    @classmethod
    def named(cls, name: str) -> LocalFormats:
        return cls(parse_locale(name))

    def date(self, at: datetime, style: str = "medium") -> str:
        """A CLDR date length (``full``, ``long``, ``medium``, ``short``), or a skeleton
        such as ``MMMMEEEEd`` (weekday, day and month in full, in the locale's order)."""
        if style in STYLES:
            return format_date(at, style, locale=self.locale)
        return format_date(at, self._widened(style), locale=self.locale)

    def time(self, at: datetime) -> str:
        """Hours and minutes on the locale's clock: ``9:00 AM``, ``09:00``, ``9:00``."""
        return format_time(at, "short", locale=self.locale)

    def date_time(self, at: datetime, style: str = "medium") -> str:
        """The date (as :meth:`date`) and the time, joined as the locale joins them (the
        ``datetime`` filter)."""
        length = cast(Style, style if style in STYLES else "medium")
        joint = str(get_datetime_format(length, locale=self.locale))
        return joint.replace("{1}", self.date(at, style)).replace("{0}", self.time(at))

    def when(self, at: datetime | None, now: datetime) -> str:
        """The time alone today; the weekday, day and month with the time otherwise."""
        if at is None:
            return ""
        if at.date() == now.date():
            return self.time(at)
        return self.date_time(at, DAY_MONTH)

    @staticmethod
    def zone(at: datetime) -> str:
        """The zone's abbreviation at that moment ("BST", "CEST"), from the zone database."""
        return at.tzname() or ""

    def number(self, value: float | None, digits: int | None = None) -> str:
        """A decimal with the locale's separators: ``0.5`` or ``0,5``; `digits` fixes how
        many decimals are shown (``24.0``); without it, up to three, none trailing."""
        if value is None:
            return ""
        pattern = None if digits is None else "#,##0" + ("." + "0" * digits if digits else "")
        return format_decimal(value, pattern, locale=self.locale)

    def percent(self, value: float | None, signed: bool = False) -> str:
        """`value` in percent (62.0 is 62 %), whole, as the locale writes it: ``62%``,
        ``62 %``; `signed` puts a plus before a rise (``+20%``), as a fall has a minus."""
        if value is None:
            return ""
        text = format_percent(value / 100, locale=self.locale)
        if signed and round(value) > 0:
            return get_plus_sign_symbol(self.locale) + text
        return text

    def dose(self, dose: Dose | None) -> str:
        """A dose's amount with the locale's decimal separator, then its unit, unchanged
        (``0,5 mg/kg``); empty when no amount was recorded."""
        if dose is None or dose.amount is None:
            return ""
        return f"{self.number(dose.amount)} {dose.unit}"

    def _widened(self, skeleton: str) -> str:
        """The locale's pattern nearest `skeleton`, its names made as wide as the skeleton
        asks (CLDR's availableFormats often hold only the short-name form, "MMMEd"), as
        CLDR's skeleton matching says to; numeric fields (``M``, ``MM``) stay numeric."""
        nearest = match_skeleton(skeleton, self.locale.datetime_skeletons)
        if nearest is None:
            raise ValueError(f"no date pattern near {skeleton!r} in {self.locale}")
        pattern = self.locale.datetime_skeletons[nearest].pattern
        tokens: list[tuple[str, str | tuple[str, int]]] = []
        for kind, value in tokenize_pattern(pattern):
            if kind == "field" and isinstance(value, tuple) and _is_name(*value):
                field, count = value
                value = (field, max(count, skeleton.count(WIDENED[field])))
            tokens.append((kind, value))
        return str(untokenize_pattern(tokens))


def _is_name(field: str, count: int) -> bool:
    """A field written as a name (``E`` at any width, ``MMM``), not a number (``M``, ``c``)."""
    return field in WIDENED and (field == "E" or count >= 3)

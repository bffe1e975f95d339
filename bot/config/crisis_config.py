"""The crisis keys of ``[clinic]`` read and checked: ``country``, ``emergency_number``,
``crisis_lines`` and the ``[clinic.countries.XX]`` tables. Every error names the key.

What a patient is sent, and how their country is chosen, is :mod:`bot.domain.crisis`.
The rules checked here keep a crisis message from ever being wrong by omission:

* every country has an emergency number, and every crisis message says it;
* only the US may leave its lines unset (the templates hold the 988 Lifeline wording);
  a clinic elsewhere, and every other country it lists, names its lines;
* a country the built-in tables do not know names its phone prefixes or time zones,
  or no patient could ever be matched to it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bot.domain.crisis import PHONE_PREFIXES, TIME_ZONES, Country, CrisisLine
from bot.domain.errors import ConfigError

BUILT_IN_LINES = "US"  # the country whose lines the templates hold (988, in en and es)
_COUNTRY_KEYS = {"emergency_number", "crisis_lines", "phone_prefixes", "time_zones"}
_LINE_KEYS = {"name", "how", "language"}
_CODE = re.compile(r"^[A-Z]{2}$")
_PREFIX = re.compile(r"^\+[0-9]{1,4}$")


def clinic_crisis(raw: Mapping[str, Any], source: str) -> dict[str, Any]:
    """``country``, ``crisis_lines`` and ``countries`` for :class:`bot.config.Clinic`."""
    country = _code(raw.get("country", BUILT_IN_LINES), "clinic.country", source)
    number = raw.get("emergency_number", "911")
    _number(number, "clinic.emergency_number", source)
    lines = _lines(raw.get("crisis_lines"), "clinic.crisis_lines", source)
    if country != BUILT_IN_LINES and "emergency_number" not in raw:
        why = "the default, 911, is the US number"
        raise ConfigError(source, "clinic.emergency_number", f"must be set for {country} ({why})")
    if country != BUILT_IN_LINES and not lines:
        why = "the built-in lines are the US 988 Lifeline"
        raise ConfigError(source, "clinic.crisis_lines", f"must be set for {country} ({why})")
    countries = raw.get("countries", {})
    if not isinstance(countries, dict):
        raise ConfigError(source, "clinic.countries", "must be a table of country codes")
    others = tuple(_country(code, table, country, source) for code, table in countries.items())
    return {"country": country, "crisis_lines": lines, "countries": others}


def _country(code: str, table: Any, home: str, source: str) -> Country:
    key = f"clinic.countries.{code}"
    code = _code(code, key, source)
    if code == home:
        raise ConfigError(source, key, "is the clinic's own country: set its lines in [clinic]")
    if not isinstance(table, dict):
        raise ConfigError(source, key, "must be a table")
    for name in table:
        if name not in _COUNTRY_KEYS:
            known = ", ".join(sorted(_COUNTRY_KEYS))
            raise ConfigError(source, f"{key}.{name}", f"unknown key (known: {known})")
    if "emergency_number" not in table:
        raise ConfigError(source, f"{key}.emergency_number", "is missing")
    _number(table["emergency_number"], f"{key}.emergency_number", source)
    lines = _lines(table.get("crisis_lines"), f"{key}.crisis_lines", source)
    if not lines:
        raise ConfigError(source, f"{key}.crisis_lines", "is missing")
    prefixes = _texts(table.get("phone_prefixes", []), f"{key}.phone_prefixes", source)
    for prefix in prefixes:
        if not _PREFIX.match(prefix):
            raise ConfigError(source, f"{key}.phone_prefixes", f'{prefix!r} is not like "+34"')
    zones = _texts(table.get("time_zones", []), f"{key}.time_zones", source)
    for zone in zones:
        _zone(zone, f"{key}.time_zones", source)
    if not (prefixes or zones or code in PHONE_PREFIXES or code in TIME_ZONES):
        raise ConfigError(
            source, key,
            "needs phone_prefixes or time_zones (built in only for "
            f"{', '.join(sorted(PHONE_PREFIXES))}), or no patient is ever matched to it",
        )  # fmt: skip
    return Country(code, table["emergency_number"], lines, prefixes, zones)


def _lines(value: Any, key: str, source: str) -> tuple[CrisisLine, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not value:
        raise ConfigError(source, key, "must be a non-empty list of {name, how}")
    lines = []
    for n, line in enumerate(value):
        where = f"{key}[{n}]"
        if not isinstance(line, dict) or not all(
            isinstance(line.get(k), str) and line[k].strip() for k in ("name", "how")
        ):
            raise ConfigError(source, where, "needs name and how, both text")
        for name in line:
            if name not in _LINE_KEYS:
                known = ", ".join(sorted(_LINE_KEYS))
                raise ConfigError(source, f"{where}.{name}", f"unknown key (known: {known})")
        language = line.get("language")
        if language is not None and (not isinstance(language, str) or not language.strip()):
            raise ConfigError(source, f"{where}.language", 'must be a language code like "es"')
        lines.append(CrisisLine(line["name"], line["how"], language))
    return tuple(lines)


def _code(value: Any, key: str, source: str) -> str:
    if not isinstance(value, str) or not _CODE.match(value.upper()):
        raise ConfigError(source, key, 'must be a two-letter country code like "US"')
    return value.upper()


def _number(value: Any, key: str, source: str) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(source, key, 'must be a phone number as text, like "112"')


def _texts(value: Any, key: str, source: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(source, key, "must be a list of text")
    return tuple(value)


def _zone(zone: str, key: str, source: str) -> None:
    if zone.endswith("/"):
        return  # a family of zones (America/Indiana/)
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(source, key, f"{zone!r} is not an IANA time zone") from None

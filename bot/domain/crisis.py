"""Which crisis lines a patient is given: the patient's country, and that country's lines
and emergency number in the patient's language. Pure, standard library only.

* A clinic lists crisis lines per country (``[clinic]`` for its own country,
  ``[clinic.countries.XX]`` for others); each country has an emergency number, which is
  said in every crisis message whatever lines are listed.
* The patient's country is the one configured country their phone number's prefix
  (E.164, e.g. ``+34...``) points to; else the one their IANA time zone lies in; else the
  clinic's own country. A number shared by several configured countries (``+1``: the US
  and Canada) is settled by the time zone.
* A line may be for one language only (``language = "es"``); a patient is given the lines
  for their language and those for every language. If that leaves none, all are given:
  a line in another language is better than no line.

The prefix and time-zone tables below cover the countries the example configuration
documents (US, ES, MX); a clinic elsewhere names its country's prefixes and time zones
in its configuration.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

# The crisis messages that give the patient the crisis lines (CrisisResources.flag); the
# others ("medical", "blood_pressure") send them to the emergency number and the clinic.
LINES_KINDS = frozenset({"suicidality"})

# The North American Numbering Plan (+1) also covers Canada and much of the Caribbean:
# a clinic serving them lists those countries with their time zones.
PHONE_PREFIXES: Mapping[str, tuple[str, ...]] = {
    "US": ("+1",),
    "ES": ("+34",),
    "MX": ("+52",),
}
# A name ending in "/" covers every zone under it (America/Indiana/...).
TIME_ZONES: Mapping[str, tuple[str, ...]] = {
    "US": (
        "America/New_York", "America/Detroit", "America/Kentucky/", "America/Indiana/",
        "America/Chicago", "America/Menominee", "America/North_Dakota/", "America/Denver",
        "America/Boise", "America/Phoenix", "America/Los_Angeles", "America/Anchorage",
        "America/Juneau", "America/Sitka", "America/Metlakatla", "America/Yakutat",
        "America/Nome", "America/Adak", "Pacific/Honolulu", "US/",
    ),
    "ES": ("Europe/Madrid", "Africa/Ceuta", "Atlantic/Canary"),
    "MX": (
        "America/Mexico_City", "America/Cancun", "America/Merida", "America/Monterrey",
        "America/Matamoros", "America/Chihuahua", "America/Ciudad_Juarez", "America/Ojinaga",
        "America/Mazatlan", "America/Bahia_Banderas", "America/Hermosillo", "America/Tijuana",
        "Mexico/",
    ),
}  # fmt: skip


@dataclass(frozen=True)
class CrisisLine:
    """One line as the patient reads it: ``{name}: {how}`` ("988 Lifeline: call or text 988")."""

    name: str
    how: str
    language: str | None = None  # None: for patients of every language


@dataclass(frozen=True)
class Country:
    """What a clinic configured for one country (ISO 3166 alpha-2 code, upper case)."""

    code: str
    emergency_number: str
    lines: tuple[CrisisLine, ...] = ()  # empty: the templates' built-in lines (US only)
    phone_prefixes: tuple[str, ...] = ()  # empty: PHONE_PREFIXES
    time_zones: tuple[str, ...] = ()  # empty: TIME_ZONES

    @property
    def prefixes(self) -> tuple[str, ...]:
        return self.phone_prefixes or PHONE_PREFIXES.get(self.code, ())

    @property
    def zones(self) -> tuple[str, ...]:
        return self.time_zones or TIME_ZONES.get(self.code, ())

    def in_zone(self, zone: str) -> bool:
        return any(zone.startswith(z) if z.endswith("/") else zone == z for z in self.zones)


@dataclass(frozen=True)
class CrisisContacts:
    """What one patient is told to call: templates read this (``crisis`` in every render).

    `lines` empty means the built-in lines of `country` (the templates hold the US 988
    wording in each language)."""

    country: str
    emergency_number: str
    lines: tuple[CrisisLine, ...]


def country_of(
    phone: str | None, zone: str | None, countries: Sequence[Country], default: str
) -> str:
    """The patient's country among the configured `countries` (`default`: the clinic's)."""
    by_phone = _by_phone(phone, countries) if phone else []
    if len(by_phone) == 1:
        return by_phone[0].code
    candidates = by_phone or countries
    by_zone = [c for c in candidates if zone and c.in_zone(zone)]
    if by_zone:
        return by_zone[0].code
    return default


def _by_phone(phone: str, countries: Sequence[Country]) -> list[Country]:
    """The countries whose longest matching prefix is the longest of all."""
    digits = "+" + "".join(ch for ch in phone if ch.isdigit())
    if not phone.strip().startswith("+"):
        return []  # a national number says nothing about the country
    scored = [
        (max((len(p) for p in c.prefixes if digits.startswith(p)), default=0), c) for c in countries
    ]
    best = max((n for n, _ in scored), default=0)
    return [c for n, c in scored if best and n == best]


def contacts_for(country: Country, language: str) -> CrisisContacts:
    """The country's lines for a patient who reads `language`."""
    mine = tuple(line for line in country.lines if line.language in (None, language))
    return CrisisContacts(country.code, country.emergency_number, mine or country.lines)

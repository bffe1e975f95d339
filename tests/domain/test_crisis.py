"""Which country's crisis lines a patient gets, and which of its lines: pure, table-driven."""

from __future__ import annotations

import pytest

from bot.domain.crisis import Country, CrisisLine, contacts_for, country_of

US = Country("US", "911")
ES = Country("ES", "112", (CrisisLine("Línea 024", "llame al 024"),))
MX = Country("MX", "911", (CrisisLine("Línea de la Vida", "llame al 800 911 2000"),))
CA = Country("CA", "911", (CrisisLine("9-8-8", "call or text 988"),), ("+1",), ("America/Toronto",))
GB = Country("GB", "999", (CrisisLine("Samaritans", "call 116 123"),), ("+44",), ())
ALL = [US, ES, MX, CA, GB]


@pytest.mark.parametrize(
    ("phone", "zone", "countries", "expected", "why"),
    [
        ("+34 600 111 222", "America/New_York", ALL, "ES", "the phone prefix wins over the zone"),
        ("+5215512345678", None, ALL, "MX", "a Mexican mobile number"),
        ("+15555550100", "America/Chicago", ALL, "US", "+1 is shared: the zone settles it"),
        ("+14165550100", "America/Toronto", ALL, "CA", "+1 with a Canadian zone"),
        ("+15555550100", "UTC", ALL, "US", "+1, zone says nothing: the clinic's country"),
        ("+447700900123", "Europe/Madrid", ALL, "GB", "a configured prefix"),
        (None, "Europe/Madrid", ALL, "ES", "no phone (Telegram): the zone"),
        (None, "Atlantic/Canary", ALL, "ES", "the Canaries are Spain"),
        (None, "America/Indiana/Indianapolis", ALL, "US", "a zone family"),
        (None, "America/Tijuana", ALL, "MX", "a Mexican zone"),
        (None, "Asia/Tokyo", ALL, "US", "nothing known: the clinic's country"),
        ("5551234", "Europe/Madrid", ALL, "ES", "a national number says nothing: the zone"),
        ("+34600111222", "Europe/Madrid", [US], "US", "Spain not configured: the clinic's"),
        ("+49301234567", "Europe/Berlin", ALL, "US", "an unconfigured country: the clinic's"),
    ],
)
def test_country_of(
    phone: str | None, zone: str | None, countries: list[Country], expected: str, why: str
) -> None:
    """The prefix, else the zone, else the clinic's own country, among configured ones."""
    assert country_of(phone, zone, countries, "US") == expected, why


def test_language_lines_and_the_lines_for_everyone() -> None:
    """A patient gets the lines for their language and those for every language."""
    spain = Country(
        "ES",
        "112",
        (
            CrisisLine("Línea 024", "llame al 024", "es"),
            CrisisLine("024 line", "call 024", "en"),
            CrisisLine("Teléfono X", "91 000 00 00"),
        ),
    )
    assert [line.how for line in contacts_for(spain, "es").lines] == [
        "llame al 024",
        "91 000 00 00",
    ]
    assert [line.how for line in contacts_for(spain, "en").lines] == ["call 024", "91 000 00 00"]


def test_no_line_in_the_language_gives_every_line() -> None:
    """A line in another language is better than none; the emergency number goes along."""
    spain = Country("ES", "112", (CrisisLine("Línea 024", "llame al 024", "es"),))
    contacts = contacts_for(spain, "en")
    assert [line.how for line in contacts.lines] == ["llame al 024"]
    assert contacts.emergency_number == "112" and contacts.country == "ES"

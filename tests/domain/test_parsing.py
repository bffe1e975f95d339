"""Reading replies: every accepted form, every command, and a clear Invalid otherwise."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.domain.instruments import BloodPressure, Item
from bot.domain.parsing import Answer, Command, Invalid, Parsed, parse_command, parse_reply
from bot.instruments import Catalog, load_catalog


@pytest.fixture(scope="module")
def frequency(catalog: Catalog) -> Item:
    return catalog.get("phq9").item("phq9.q1")


ANSWERS = [
    ("0", 0), ("3", 3), (" 2 ", 2), ("2.", 2), ("(1)", 1), ("2!", 2), ("+1", 1),
    ("2️⃣", 2), ("0️⃣", 0), ("２", 2),
    ("two", 2), ("Three", 3), ("zero", 0),
    ("not at all", 0), ("Not at all.", 0), ("NOT AT ALL", 0), ("none", 0), ("never", 0),
    ("no", 0), ("several days", 1), ("several", 1), ("sev", 1), ("more than half the days", 2),
    ("more", 2), ("nearly every day", 3), ("nearly", 3), ("every day", 3),
    ("2 - More than half the days", 2), ("3) nearly every day", 3), ("1: several days", 1),
    ("  several   days  ", 1),
]  # fmt: skip


@pytest.mark.parametrize(("text", "value"), ANSWERS)
def test_accepted_answers(frequency: Item, text: str, value: int) -> None:
    """Digits, keycaps, number words, labels, prefixes and synonyms all read as the option value."""
    assert parse_reply(frequency, text) == Answer(value)


INVALID = [
    ("", "empty"), ("   ", "empty"), ("4", "out_of_range"), ("-1", "out_of_range"),
    ("10", "out_of_range"), ("🔟", "out_of_range"), ("1.5", "not_whole"), ("2,5", "not_whole"),
    ("nee", "unrecognised"), ("1 - nearly every day", "ambiguous"), ("2 3", "ambiguous"),
    ("hello", "unrecognised"), ("I feel awful", "unrecognised"), ("!!!", "unrecognised"),
    ("x" * 500, "unrecognised"),
    # A range or a choice is never narrowed to its first number (item 9 "0-1" is not 0).
    ("0-1", "ambiguous"), ("0 - 1", "ambiguous"), ("0–1", "ambiguous"), ("0:1", "ambiguous"),
    ("0. 1", "ambiguous"), ("2-3", "ambiguous"), ("1 or 2", "ambiguous"), ("0 - one", "ambiguous"),
    # One or two letters are too little to pick an option ("a" is not "always").
    ("a", "unrecognised"), ("A.", "unrecognised"), ("e", "unrecognised"), ("s", "unrecognised"),
    ("m", "unrecognised"), ("ne", "unrecognised"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "reason"), INVALID)
def test_invalid_replies_name_the_reason(frequency: Item, text: str, reason: str) -> None:
    """Out-of-range, fractional, ambiguous and unknown replies are Invalid with a reason code."""
    parsed = parse_reply(frequency, text)
    assert isinstance(parsed, Invalid) and parsed.reason == reason


def test_a_range_offers_its_own_numbers_back(frequency: Item) -> None:
    """'0-1' is offered back as 0 or 1, so the patient picks one."""
    assert parse_reply(frequency, "0-1") == Invalid("ambiguous", "0-1", (0, 1))
    assert parse_reply(frequency, "1 or 2") == Invalid("ambiguous", "1 or 2", (1, 2))


def test_three_letters_of_a_label_are_enough(catalog: Catalog) -> None:
    """A three-letter start of one label is read as that option."""
    item = catalog.get("side_effects").item("side_effects.nausea")
    assert [parse_reply(item, t) for t in ("mod", "sev", "mil")] == [
        Answer(2),
        Answer(3),
        Answer(1),
    ]


COMMANDS = [
    ("back", "back"), ("BACK", "back"), ("/back", "back"), ("skip", "skip"), ("pause", "pause"),
    ("later", "pause"), ("Later!", "pause"), ("stop", "stop"), ("STOP", "stop"),
    ("unsubscribe", "stop"), ("stopall", "stop"), ("cancel", "stop"), ("quit", "stop"),
    ("end", "stop"), ("revoke", "stop"), ("optout", "stop"), ("start", "start"),
    ("unstop", "start"), ("help", "help"), ("/help", "help"), ("?", "help"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "name"), COMMANDS)
def test_commands_win_over_answers(frequency: Item, text: str, name: str) -> None:
    """BACK, SKIP, PAUSE/LATER, STOP (and carrier synonyms), START and HELP are commands."""
    assert parse_reply(frequency, text) == Command(name)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "name"),
    [("atrás", "back"), ("ATRAS", "back"), ("saltar", "skip"), ("más tarde", "pause"),
     ("ayuda", "help"), ("parar", "stop"), ("STOP", "stop"), ("help", "help")],
)  # fmt: skip
def test_spanish_commands_and_english_keywords(text: str, name: str) -> None:
    """Spanish speakers get Spanish commands, and the English keywords still work for them."""
    assert parse_command(text, "es") == Command(name)  # type: ignore[arg-type]


def test_spanish_number_words_and_synonyms(frequency: Item) -> None:
    """A Spanish speaker may answer 'dos' or 'nunca'; English digits and labels still work."""
    replies = [parse_reply(frequency, t, "es") for t in ("dos", "nunca", "2", "several")]
    assert replies == [Answer(2), Answer(0), Answer(2), Answer(1)]


def test_spanish_words_are_not_english_commands() -> None:
    """'ayuda' is help only for a Spanish speaker."""
    assert parse_command("ayuda", "en") is None


def test_yes_no_item(catalog: Catalog) -> None:
    """A yes/no item takes yes, y, no, n, and Spanish sí in Spanish."""
    item = catalog.get("side_effects").item("side_effects.red_flags")
    assert [parse_reply(item, t) for t in ("yes", "Y", "no", "n", "1")] == [
        Answer(1),
        Answer(1),
        Answer(0),
        Answer(0),
        Answer(1),
    ]
    assert parse_reply(item, "sí", "es") == Answer(1)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("135/85", Answer(BloodPressure(135, 85))),
        ("135 / 85", Answer(BloodPressure(135, 85))),
        ("120 over 80", Answer(BloodPressure(120, 80))),
        ("182/111 mmHg", Answer(BloodPressure(182, 111))),
        ("80/120", Invalid("implausible", "80/120")),
        ("400/90", Invalid("implausible", "400/90")),
        ("high", Invalid("unrecognised", "high")),
        ("skip", Command("skip")),
    ],
)
def test_blood_pressure(catalog: Catalog, text: str, expected: Parsed) -> None:
    """Readings parse as systolic/diastolic; reversed or impossible ones are refused."""
    item = catalog.get("side_effects").item("side_effects.blood_pressure")
    assert parse_reply(item, text) == expected


def _all_items() -> list[Item]:
    return [item for instrument in load_catalog() for item in instrument.items]


_ITEMS = _all_items()


@given(st.text())
def test_parsing_never_raises_on_any_string(text: str) -> None:
    """Property: any string gives an Answer, a Command or an Invalid for every shipped item."""
    for item in _ITEMS:
        for language in ("en", "es"):
            assert isinstance(parse_reply(item, text, language), Answer | Command | Invalid)


@given(st.text(alphabet=st.characters(categories=["N", "P", "S", "Z"]), max_size=12))
def test_numeric_and_symbol_noise_never_raises(text: str) -> None:
    """Property: digits, punctuation, symbols and spaces in any mix still parse without error."""
    for item in _ITEMS:
        parse_reply(item, text)

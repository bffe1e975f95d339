"""How a list is cut into messages that fit a channel, the last resort for one item too
long for any (bot/rendering/budget.py), and the words of a list sent in parts."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from bot.domain import events as ev
from bot.rendering import budget
from bot.rendering.renderer import CHANNELS, LANGUAGES, Renderer
from tests.test_services import CATALOG, CLINIC


@pytest.mark.parametrize(
    ("sizes", "limit", "cap", "expected"),
    [
        ([1, 1, 1], 10, 20, [(0, 3)]),
        ([4, 4, 4], 10, 20, [(0, 2), (2, 3)]),
        ([1, 1, 1, 1, 1], 10, 2, [(0, 2), (2, 4), (4, 5)]),
        ([12, 1, 12], 10, 20, [(0, 1), (1, 2), (2, 3)]),
        ([], 10, 20, []),
    ],
    ids=["all in one", "cut where the next would not fit", "at most cap", "one too long alone", "none"],
)  # fmt: skip
def test_runs_are_as_long_as_fit_in_order_and_never_drop_an_item(
    sizes: list[int], limit: int, cap: int, expected: list[tuple[int, int]]
) -> None:
    """Consecutive runs, each as long as fits and the cap allow; an item too long alone
    still gets a run of its own."""
    assert budget.runs(len(sizes), lambda a, b: sum(sizes[a:b]) <= limit, cap) == expected


def test_runs_stop_at_most_without_measuring_the_rest() -> None:
    """With `most`, the first runs only, and nothing past them is measured."""
    measured: list[int] = []

    def fits(a: int, b: int) -> bool:
        measured.append(b)
        return b - a <= 2

    assert budget.runs(100, fits, cap=100, most=2) == [(0, 2), (2, 4)]
    assert max(measured) == 5


@pytest.mark.parametrize(
    ("limit", "expected"),
    [
        (100, "CRISIS: P with a long name, suicidal thoughts.\nReply ACK K7QM2X"),
        (40, "CRISIS: P with a long…\nReply ACK K7QM2X"),
        (10, "CRISIS: P…"),
    ],
    ids=["fits", "words cut at a space, the code kept", "not even the code fits"],
)
def test_cut_loses_words_never_the_last_line(limit: int, expected: str) -> None:
    """A message too long loses words at a space, never its last line (the code)."""
    text = "CRISIS: P with a long name, suicidal thoughts.\nReply ACK K7QM2X"
    cut = budget.cut(text, limit)
    assert cut == expected and len(cut) <= limit


def test_every_channel_has_a_budget_and_whatsapp_alerts_fit_the_template() -> None:
    """Each channel a clinician may use has a limit; a WhatsApp alert is measured on one
    line against the template's variable."""
    assert set(budget.MESSAGE_CHARS) == {"sms", "whatsapp", "telegram", "console"}
    assert budget.alert_chars("whatsapp", "Lakeside") == 1024 - 200 - len("Lakeside")
    assert budget.alert_chars("sms", "Lakeside") == 1600
    assert budget.alert_length("a\n\nb  c", "whatsapp") == len("a b c")


AT = datetime(2026, 5, 4, 16, tzinfo=UTC)
NOTICE = ev.AlertNotice("K7QM2X", "suicidality", "crisis", "P-1", {}, 0, AT)
LINE = ev.AlertLine("K7QM2X", "crisis", "suicidality", "P-1", "open", AT)
PATIENT = ev.PatientLine(7, "P-7", None, None, None, 0)
MORE = {"en": "…and 12 more", "es": "…y 12 "}


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("channel", CHANNELS)
def test_a_part_says_which_it_is_and_the_last_how_many_are_left(
    channel: str, language: str
) -> None:
    """In every language and channel: the header of part 3 of 3 names it, the numbering
    goes on from the part before, and the list's last part counts what was left."""
    renderer = Renderer(CATALOG, CLINIC)
    part = {"en": "message 3 of 3", "es": "mensaje 3 de 3"}[language]
    more = MORE[language] if channel != "sms" else MORE[language].replace("…", "...")
    for intent in (ev.ClinicianAlerts((LINE,), 30, 3, 3, 12),
                   ev.ClinicianPatients((PATIENT,), 30, 3, 3, 12)):  # fmt: skip
        rendered = renderer.render(intent, channel, language)
        assert rendered is not None and part in rendered.text and more in rendered.text
    digest = renderer.render(ev.AlertDigest((NOTICE,), 30, 21, 3, 3), channel, language)
    assert digest is not None and part in digest.text and "\n21. CRISIS" in digest.text


@pytest.mark.parametrize("limit", range(20, 60))
def test_an_html_cut_never_goes_through_an_entity_or_a_tag(limit: int) -> None:
    """Telegram's HTML: a name like "Smith&Co" is ``Smith&amp;Co``; a cut anywhere keeps
    every entity and tag whole (Telegram refuses "&am" for good), and the code."""
    for text in (
        "CRISIS: " + "Smith&amp;Co" * 8 + "\nReply ACK K7QM2X",
        "CRISIS:" + "Smith&amp;Co<b>x</b>" * 8 + "\nReply ACK K7QM2X",  # no space to cut at
    ):
        cut = budget.cut(text, limit, html=True)
        assert len(cut) <= limit
        assert re.search(r"&(?!amp;)|<(?!/?b>)", cut) is None, cut
        assert cut.endswith("…\nReply ACK K7QM2X") or limit < len("…\nReply ACK K7QM2X") + 3

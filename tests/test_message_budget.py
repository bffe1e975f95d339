"""How a list is cut into messages that fit a channel, and the last resort for one item too
long for any (bot/rendering/budget.py)."""

from __future__ import annotations

import pytest

from bot.rendering import budget


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

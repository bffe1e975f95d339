"""A check-in opens with one message: the introduction above the first question, wherever
the channel takes free text (bot/app/conversations/messages.py, ``ONE_OPENING``). WhatsApp
keeps them apart (its first message is an approved template)."""

from __future__ import annotations

import pytest

from bot.app.conversations.messages import outbox_rows
from bot.config import Clinic
from bot.domain import events as ev
from bot.instruments import load_catalog
from bot.rendering.renderer import Rendered, Renderer
from bot.storage.tables import Patient
from tests.test_services import T0

RENDERER = Renderer(load_catalog(), Clinic(name="Lakeside"))
OPENING = [ev.Intro("phq9"), ev.Ask("phq9.q1", 1, 9)]


def patient(channel: str, address: str, language: str = "en") -> Patient:
    return Patient(
        id=1, display_name="P-1", channel=channel, address=address, timezone="UTC",
        language=language, status="active",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("channel", "address"),
    [("telegram", "123"), ("sms", "+12125550123"), ("console", "console")],
)
@pytest.mark.parametrize("language", ["en", "es"])
def test_the_introduction_goes_above_the_first_question(
    channel: str, address: str, language: str
) -> None:
    """One row: the introduction's text, a blank line, the question's text; the row is the
    question's (its item, its buttons, its key), so an answer and an edit find it."""
    who = patient(channel, address, language)
    intro = RENDERER.render(OPENING[0], channel, language)
    ask = RENDERER.render(OPENING[1], channel, language)
    assert intro is not None and ask is not None
    (row,) = outbox_rows(RENDERER, who, OPENING, "start:5", T0)
    assert row.body == f"{intro.text}\n\n{ask.text}"
    assert row.payload["intent"] == "Ask" and row.payload["item"] == "phq9.q1"
    assert row.idempotency_key == "start:5:1"
    # Telegram edits the question once answered: the introduction is kept for that edit
    assert row.payload.get("above") == (intro.text if channel == "telegram" else None)
    if ask.buttons:
        assert row.payload["buttons"] == [[b.label, b.data] for b in ask.buttons]


def test_whatsapp_keeps_the_introduction_apart() -> None:
    """WhatsApp: two rows, as before (a conversation opens there with a template)."""
    who = patient("whatsapp", "whatsapp:+12125550123")
    rows = outbox_rows(RENDERER, who, OPENING, "start:5", T0)
    assert [r.payload["intent"] for r in rows] == ["Intro", "Ask"]


def test_a_new_instrument_mid_checkin_is_introduced_above_its_first_question() -> None:
    """After the last PHQ-9 answer: the edit, and GAD-7's introduction above its first
    question in one message (the edit still comes last)."""
    intents = [ev.Answered("phq9.q9", 0), ev.Intro("gad7"), ev.Ask("gad7.q1", 10, 16)]
    rows = outbox_rows(RENDERER, patient("telegram", "123"), intents, "in:7", T0)
    assert [r.payload["intent"] for r in rows] == ["Ask", "Answered"]
    assert "GAD-7" in rows[0].body.split("\n\n", 1)[0]
    assert [r.idempotency_key for r in rows] == ["in:7:2", "in:7:0"]


def test_an_introduction_with_no_question_after_it_is_sent_alone() -> None:
    """Nothing to go above: the introduction is its own message."""
    (row,) = outbox_rows(RENDERER, patient("sms", "+12125550123"), [ev.Intro("phq9")], "s:1", T0)
    assert row.payload["intent"] == "Intro"


class Unasked(Renderer):
    """Renders every intent but a question, as a channel without the question's template."""

    def render(
        self, intent: ev.Intent, channel: str, language: str, country: str | None = None
    ) -> Rendered | None:
        if isinstance(intent, ev.Ask):
            return None
        return super().render(intent, channel, language, country)


@pytest.mark.parametrize(("channel", "address"), [("telegram", "123"), ("sms", "+12125550123")])
def test_an_introduction_whose_question_renders_nothing_is_its_own_message(
    channel: str, address: str
) -> None:
    """No question to go above: the introduction is sent alone, not put above the next
    message (here the pause)."""
    unasked = Unasked(load_catalog(), Clinic(name="Lakeside"))
    intents = [*OPENING, ev.Paused()]
    rows = outbox_rows(unasked, patient(channel, address), intents, "start:5", T0)
    assert [r.payload["intent"] for r in rows] == ["Intro", "Paused"]
    intro, paused = (unasked.render(i, channel, "en") for i in (OPENING[0], ev.Paused()))
    assert intro is not None and paused is not None
    assert [r.body for r in rows] == [intro.text, paused.text]
    assert "above" not in rows[1].payload

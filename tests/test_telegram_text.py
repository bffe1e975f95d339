"""A typed message read without python-telegram-bot (bot/channels/telegram_text.py) is
recorded exactly as the library's ``Update`` is; any other update is left to the library."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest
import telegram

from bot.channels.telegram import to_inbound
from bot.channels.telegram_text import typed_text
from tests.standins.telegram import build_callback_update, build_text_update

AT = datetime(2026, 5, 4, 9, 0, 7, tzinfo=UTC)


def _typed(text: str = "2", **given: Any) -> dict[str, Any]:
    return build_text_update(update_id=81, chat_id=7100, message_id=12, text=text, date=AT,
                             **given)  # fmt: skip


def _librarys(update: dict[str, Any]) -> Any:
    return to_inbound(telegram.Update.de_json(copy.deepcopy(update), None))


def _changed(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    """The plain typed update with one value set (``...``: the key removed)."""
    update = _typed()
    *parents, key = path
    inner = update
    for parent in parents:
        inner = inner[parent]
    if value is ...:
        del inner[key]
    else:
        inner[key] = value
    return update


TAKEN = {
    "a digit": _typed("2"),
    "words with an emoji": _typed("not today 🙂\nsorry"),
    "a username and no last name": _typed("1", username="pat_1", first_name="Pat"),
    "no sender": _changed(("message", "from"), ...),
    "a user's optional fields": _changed(("message", "from", "is_premium"), True),
    "a chat's last name": _changed(("message", "chat", "last_name"), "Q"),
    "a date long ago": _changed(("message", "date"), 0),
}


@pytest.mark.parametrize("name", TAKEN)
def test_a_plain_typed_message_is_recorded_as_the_librarys_update_is(name: str) -> None:
    """Read without the library, the record equals the one made from its ``Update``."""
    update = TAKEN[name]
    ours = typed_text(copy.deepcopy(update))
    assert ours is not None and ours == _librarys(update)
    assert ours.received_at.tzinfo is not None


LEFT = {
    "a command with its entities": _typed("/start abc"),
    "a button": build_callback_update(
        update_id=3, chat_id=7100, data="phq9.q1=2", message=_typed()["message"], query_id="q5"
    ),
    "a group": _changed(("message", "chat", "type"), "group"),
    "a reply": _changed(("message", "reply_to_message"), {"message_id": 1}),
    "a sticker": _changed(("message", "text"), ...),
    "an empty text": _changed(("message", "text"), ""),
    "a text that is a list": _changed(("message", "text"), ["2"]),
    "a date as text": _changed(("message", "date"), "never"),
    "a date with a fraction": _changed(("message", "date"), 1.5),
    "a chat id as text": _changed(("message", "chat", "id"), "7100"),
    "a message id that is true": _changed(("message", "message_id"), True),
    "a chat that is text": _changed(("message", "chat"), "not a chat"),
    "a chat's title": _changed(("message", "chat", "title"), ["a list"]),
    "a user without a first name": _changed(("message", "from", "first_name"), ...),
    "a user that is text": _changed(("message", "from"), "pat"),
    "an edited message's key": {"update_id": 4, "edited_message": _typed()["message"]},
    "an unknown field": _changed(("message", "via_bot"), {"id": 1}),
    "an unknown update field": _changed(("business_connection",), {}),
    "no update id": _changed(("update_id",), ...),
    "not an update": ["2"],
}


@pytest.mark.parametrize("name", LEFT)
def test_any_other_update_is_left_to_the_library(name: str) -> None:
    """A command, a button, another chat or shape, an unexpected type: None, so the caller
    reads the update with the library (which may find it unusable) as before."""
    assert typed_text(copy.deepcopy(LEFT[name])) is None

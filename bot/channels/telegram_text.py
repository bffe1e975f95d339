"""A patient's typed message read from the update's JSON, without python-telegram-bot.

Every answered item on Telegram is one such update. The library's ``Update.de_json``
builds an ``Update``, a ``Message`` (whose parser visits each of its some fifty optional
fields), a ``User`` and a ``Chat`` for it: about 490 Python calls, a fifteenth of a turn,
for four values our record keeps (bot/channels/telegram.py, `to_inbound`).

`typed_text` reads those four values only from an update of the one plain shape a typed
message has, and only where the library would read it without fail: every key one it
knows and takes as given (no nested object of its own to parse), every value it reads
typed as ours expects. Anything else (a command with its entities, a button, a reply, a
sticker, a group, a field added by a newer Bot API, a value of the wrong type) is None,
and the caller reads it with the library as before, unusable updates included.
tests/test_telegram_text.py checks, update by update, that the record is the library's.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from bot.app.conversations.inbox import Inbound

_UPDATE_KEYS = frozenset({"update_id", "message"})
_MESSAGE_KEYS = frozenset({"message_id", "from", "chat", "date", "text"})
_MESSAGE_NEEDS = frozenset({"message_id", "chat", "date", "text"})
# the library's User and Chat take these as plain values, unchecked
_USER_KEYS = frozenset(
    {"id", "is_bot", "first_name", "last_name", "username", "language_code", "is_premium"}
)
_USER_NEEDS = frozenset({"id", "is_bot", "first_name"})
_CHAT_KEYS = frozenset({"id", "type", "first_name", "last_name", "username"})


def typed_text(data: Any) -> Inbound | None:
    """Our record of a typed message in a private chat, as `to_inbound` makes it from the
    library's ``Update``; None when the update is not of that plain shape."""
    if not isinstance(data, dict) or data.keys() != _UPDATE_KEYS:
        return None
    message = data["message"]
    if type(data["update_id"]) is not int or not _plain_message(message):
        return None
    chat_id, message_id = message["chat"]["id"], message["message_id"]
    return Inbound(
        "telegram",
        f"m{chat_id}:{message_id}",
        str(chat_id),
        message["text"],
        datetime.fromtimestamp(message["date"], tz=UTC),
    )


def _plain_message(message: Any) -> bool:
    if not isinstance(message, dict) or not _MESSAGE_NEEDS <= message.keys() <= _MESSAGE_KEYS:
        return False
    if not all(type(message[k]) is int for k in ("message_id", "date")):
        return False
    if type(message["text"]) is not str or not message["text"]:
        return False
    chat, user = message["chat"], message.get("from")
    if not isinstance(chat, dict) or not chat.keys() <= _CHAT_KEYS:
        return False
    if type(chat.get("id")) is not int or chat.get("type") != "private":
        return False
    return user is None or (isinstance(user, dict) and _USER_NEEDS <= user.keys() <= _USER_KEYS)

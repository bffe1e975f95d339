"""Telegram updates in: the webhook route's and the poller's shared path.

Read the update (an update that can never be used raises :class:`Unusable`: the caller
acknowledges it, so Telegram stops sending it, and :func:`skip` counts it), record and
process it (one transaction; see `Services.handle_inbound`), then stop the button spinner.
Processing errors are logged and left to the scheduler's recovery pass; only a failure to
*record* is reported to the caller, so the webhook can answer 5xx and Telegram sends the
update again.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import telegram

from bot.app.conversations.inbox import Inbound
from bot.app.telegram_intake import update_kind
from bot.bootstrap import App
from bot.channels.telegram import TelegramChannel, to_inbound
from bot.channels.telegram_text import typed_text

log = logging.getLogger(__name__)
ALLOWED_UPDATES = ["message", "callback_query", "my_chat_member"]


class Unusable(Exception):
    """An update that can never be recorded; ``reason`` is one of telegram_intake.REASONS."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


async def handle_update(app: App, channel: TelegramChannel, data: dict[str, Any]) -> None:
    """Record and process one update (raises Unusable, or anything if it was not recorded)."""
    button, inbound = read_update(channel, data)
    if inbound is None:
        return
    recorded = await app.services.inbox.handle_inbound(inbound)  # raises if not recorded
    if button is not None:
        await channel.answer_button(button)
    if recorded and not app.deliverer.hands_off:  # else the inbox handed them over
        app.kick()


def read_update(
    channel: TelegramChannel, data: dict[str, Any]
) -> tuple[str | None, Inbound | None]:
    """The id of the button press to answer (None: the update is no button press) and our
    record of the update; Unusable if either cannot be made. A typed message of the plain
    shape is read without the library (bot/channels/telegram_text.py)."""
    try:
        if (typed := typed_text(data)) is not None:
            return None, typed
        update = telegram.Update.de_json(data, channel.bot)
        inbound = to_inbound(update)
    except RecursionError:
        raise Unusable("too_deep") from None
    except Exception:  # whatever the library raises on a structure it does not expect
        raise Unusable("unparseable") from None
    if inbound is not None and not _well_typed(inbound):
        raise Unusable("unparseable")
    query = update.callback_query
    return (None if query is None else query.id), inbound


def _well_typed(inbound: Inbound) -> bool:
    """The library does not check field types: a text that is a list would fail later."""
    fields = (inbound.provider_id, inbound.sender, inbound.text)
    return all(isinstance(f, str) for f in fields) and isinstance(inbound.received_at, datetime)


def skip(app: App, data: object, reason: str) -> None:
    """Count an unusable update and log its id and kind, nothing else of it."""
    kind = update_kind(data)
    update_id = data.get("update_id") if isinstance(data, dict) else None
    app.telegram_intake.skip(kind, reason)
    log.warning(
        "telegram update skipped as unusable (%s)",
        reason,
        extra={"update_id": update_id if isinstance(update_id, int) else "none", "kind": kind},
    )

"""Telegram updates in: the webhook route's and the poller's shared path.

Record and process (one transaction; see `Services.handle_inbound`), then stop the button
spinner. Processing errors are logged and left to the scheduler's recovery pass; only a
failure to *record* is reported to the caller, so the webhook can answer 5xx and Telegram
sends the update again.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import telegram
from telegram.error import Conflict, TelegramError

from bot.bootstrap import App
from bot.channels.telegram import TelegramChannel, to_inbound

log = logging.getLogger(__name__)
ALLOWED_UPDATES = ["message", "callback_query", "my_chat_member"]


async def handle_update(app: App, channel: TelegramChannel, data: dict[str, Any]) -> None:
    """Record and process one update (raises only if it could not be recorded)."""
    update = telegram.Update.de_json(data, channel.bot)
    inbound = to_inbound(update)
    if inbound is None:
        return
    recorded = await app.services.inbox.handle_inbound(inbound)  # raises if not recorded
    if update.callback_query is not None:
        await channel.answer_button(update.callback_query.id)
    if recorded:
        app.kick()


async def poll(
    app: App, channel: TelegramChannel, stop: asyncio.Event, timeout_s: int = 20
) -> None:
    """Long polling: the laptop and single-process mode (one poller per bot token)."""
    await channel.start()
    await channel.bot.delete_webhook()
    offset: int | None = None
    backoff = 1.0
    while not stop.is_set():
        try:
            updates = await channel.bot.get_updates(
                offset=offset, timeout=timeout_s, allowed_updates=ALLOWED_UPDATES
            )
        except Conflict:
            log.error("another process is polling this bot token; stopping the poller")
            return
        except TelegramError as exc:
            log.warning("getUpdates failed (%s); retrying in %.0fs", type(exc).__name__, backoff)
            await _sleep(stop, backoff)
            backoff = min(backoff * 2, 60.0)
            continue
        backoff = 1.0
        for update in updates:
            try:
                await handle_update(app, channel, update.to_dict())
            except Exception as exc:
                log.error("update not recorded (%s); it will be fetched again", type(exc).__name__)
                await _sleep(stop, backoff)
                break
            offset = update.update_id + 1


async def _sleep(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        return

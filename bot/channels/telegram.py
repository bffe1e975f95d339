"""Telegram delivery through python-telegram-bot: rendered messages out, errors translated.

`api_base_url` has python-telegram-bot's ``base_url`` meaning (default
``https://api.telegram.org/bot``; the token is appended), so a self-hosted Bot API server
or a test stand-in is one setting away. Failures become :class:`DeliveryFailed`:

* 403 (blocked by the user, deactivated) and 400 (chat not found): permanent.
* 429: retried no sooner than Telegram's ``retry_after``.
* timeouts, network errors, 5xx: retried with backoff.
"""

from __future__ import annotations

from datetime import timedelta

import telegram
from telegram import InlineKeyboardButton, InlineKeyboardMarkup
from telegram.constants import ParseMode
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter, TelegramError, TimedOut
from telegram.request import HTTPXRequest

from bot.domain.errors import DeliveryFailed
from bot.rendering import Rendered

DEFAULT_API_BASE_URL = "https://api.telegram.org/bot"


class TelegramChannel:
    name = "telegram"

    def __init__(
        self, token: str, api_base_url: str = DEFAULT_API_BASE_URL, timeout_s: float = 10.0
    ) -> None:
        request = HTTPXRequest(
            connect_timeout=timeout_s, read_timeout=timeout_s, write_timeout=timeout_s
        )
        self.bot = telegram.Bot(token, base_url=api_base_url, request=request)
        self._ready = False

    async def start(self) -> None:
        if not self._ready:
            await self.bot.initialize()
            self._ready = True

    async def close(self) -> None:
        if self._ready:
            await self.bot.shutdown()
            self._ready = False

    async def send(self, address: str, message: Rendered, payload: dict[str, object]) -> str:
        await self._initialized()
        markup = _keyboard(message)
        try:
            sent = await self.bot.send_message(
                chat_id=int(address),
                text=message.text,
                parse_mode=ParseMode.HTML if message.html else None,
                reply_markup=markup,
            )
        except RetryAfter as exc:
            raise DeliveryFailed(
                "telegram: flood limit", retry_after_s=_seconds(exc.retry_after)
            ) from exc
        except Forbidden as exc:
            raise DeliveryFailed(
                "telegram: forbidden (bot blocked by the user)", permanent=True
            ) from exc
        except BadRequest as exc:
            raise DeliveryFailed(f"telegram: bad request ({_kind(exc)})", permanent=True) from exc
        except (TimedOut, NetworkError) as exc:
            raise DeliveryFailed(f"telegram: {type(exc).__name__}") from exc
        except TelegramError as exc:
            raise DeliveryFailed(f"telegram: {type(exc).__name__}") from exc
        return str(sent.message_id)

    async def _initialized(self) -> None:
        try:
            await self.start()
        except TelegramError as exc:
            raise DeliveryFailed(f"telegram: cannot initialise ({type(exc).__name__})") from exc


def _keyboard(message: Rendered) -> InlineKeyboardMarkup | None:
    if not message.buttons:
        return None
    rows = [[InlineKeyboardButton(b.label, callback_data=b.data)] for b in message.buttons]
    return InlineKeyboardMarkup(rows)


def _seconds(value: int | timedelta) -> float:
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def _kind(exc: TelegramError) -> str:
    """The error's kind without anything the provider echoed back (no chat ids in logs)."""
    text = exc.message.lower()
    for known in (
        "chat not found",
        "message is too long",
        "can't parse entities",
        "user not found",
    ):
        if known in text:
            return known
    return "rejected"

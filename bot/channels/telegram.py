"""Telegram delivery through python-telegram-bot: rendered messages out, errors translated.

`api_base_url` has python-telegram-bot's ``base_url`` meaning (default
``https://api.telegram.org/bot``; the token is appended), so a self-hosted Bot API server
or a test stand-in is one setting away. Failures become :class:`DeliveryFailed`:

* 403 (blocked by the user, deactivated), 400 (chat not found) and an address that is
  not a chat id: permanent.
* 429: retried no sooner than Telegram's ``retry_after``.
* timeouts, network errors, 5xx: retried with backoff. A read timeout means the message
  may have arrived (Telegram has no idempotency key): the client waits ``timeout_s``
  (default 30 s, longer than the Bot API's slow answers) before giving up, and the retry
  waits longer (see ``RetryPolicy.maybe_sent_s``), so a slow provider is not sent the
  same message several times.

Requests go out through aiohttp (`bot.channels.telegram_request`); getUpdates keeps the
library's httpx connection, which reads its answers without logging them.

sendMessage and editMessageText, one each a patient's turn, are posted with their
parameters written out here (byte for byte the library's form: tests/test_telegram_send.py)
and only the answer's ``message_id`` is read. The library's methods build a ``Message``
from each answer: 0.85-1.24 ms of CPU a request that way, 0.49-0.57 ms this way
(``bench/telegram_sends.py``, three runs each on a busy machine). Errors are still the
library's: ``BaseRequest.post`` reads the status and description of every answer.
(``Bot.do_api_request`` would read the answer as JSON too, at the same cost, but warns on
every call to a method the library has, and warnings filters are process-wide.)

A payload with ``photo`` (base64 PNG bytes, e.g. a trend chart) is sent with
``sendPhoto``, the rendered text as its caption.

Updates are fetched as plain JSON (:meth:`TelegramChannel.fetch_updates`), not as the
library's ``Update`` objects: ``Bot.get_updates`` parses the whole batch at once, so one
update it cannot parse fails the batch (and is logged whole, at CRITICAL). The caller
parses each update alone and can skip the one that is unusable.
"""

from __future__ import annotations

import base64
import json
import re
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import telegram
from telegram import InlineKeyboardButton, InlineKeyboardMarkup
from telegram.constants import ParseMode
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter, TelegramError, TimedOut
from telegram.request import HTTPXRequest

from bot.app.conversations.inbox import Inbound
from bot.channels.telegram_request import AiohttpRequest, form
from bot.domain.errors import DeliveryFailed
from bot.rendering.renderer import Rendered

DEFAULT_API_BASE_URL = "https://api.telegram.org/bot"
UNREADABLE = "_unreadable"  # marks an update whose JSON could not be read (see _UpdatesRequest)
_FIRST_UPDATE_ID = re.compile(rb'"update_id"\s*:\s*(\d+)')


class TelegramChannel:
    name = "telegram"

    def __init__(
        self, token: str, api_base_url: str = DEFAULT_API_BASE_URL, timeout_s: float = 30.0
    ) -> None:
        # The outbox sends several messages at once (Deliverer.concurrency): a pool of one
        # connection would queue them behind each other and time out waiting for it.
        # aiohttp, not the library's httpx: a third of the CPU a request (telegram_request).
        request = AiohttpRequest(
            connection_pool_size=32,
            pool_timeout=timeout_s,
            connect_timeout=timeout_s,
            read_timeout=timeout_s,
        )
        updates = _UpdatesRequest(
            connection_pool_size=1,
            connect_timeout=timeout_s,
            read_timeout=timeout_s,
            write_timeout=timeout_s,
        )
        self.bot = telegram.Bot(
            token, base_url=api_base_url, request=request, get_updates_request=updates
        )
        self._request = request
        self._updates = updates
        self._ready = False

    async def start(self) -> None:
        if not self._ready:
            await self.bot.initialize()
            self._ready = True

    async def close(self) -> None:
        if self._ready:
            await self.bot.shutdown()
            self._ready = False

    async def send(self, address: str, message: Rendered, payload: dict[str, object]) -> str | None:
        await self._initialized()
        try:
            chat_id = _chat_id(address)
            if payload.get("edit"):
                return await self._edit(chat_id, message, payload.get("edit_message_id"))
            photo = payload.get("photo")
            if isinstance(photo, str):
                return await self._photo(chat_id, message, base64.b64decode(photo))
            return await self._message(chat_id, message)
        except RetryAfter as exc:
            raise DeliveryFailed(
                "telegram: flood limit", retry_after_s=_seconds(exc.retry_after)
            ) from exc
        except Forbidden as exc:
            raise DeliveryFailed(
                "telegram: forbidden (bot blocked by the user)", recipient_gone=True
            ) from exc
        except BadRequest as exc:
            raise DeliveryFailed(f"telegram: bad request ({_kind(exc)})", permanent=True) from exc
        except TimedOut as exc:  # may have arrived: Telegram has no idempotency key
            raise DeliveryFailed("telegram: TimedOut", maybe_sent=True) from exc
        except NetworkError as exc:
            raise DeliveryFailed(f"telegram: {type(exc).__name__}") from exc
        except TelegramError as exc:
            raise DeliveryFailed(f"telegram: {type(exc).__name__}") from exc

    async def _message(self, chat_id: int, message: Rendered) -> str:
        """sendMessage; the new message's id."""
        fields = {"chat_id": str(chat_id), "text": message.text}
        sent = await self._call("sendMessage", fields | _parse_mode(message) | _markup(message))
        if not isinstance(sent, dict) or "message_id" not in sent:
            # not a TelegramError: the send succeeded, so it is not retried (as when the
            # library's Message could not be built; outbox/sending.py: unexpected error)
            raise TypeError("sendMessage answered without a message_id")
        return str(sent["message_id"])

    async def _photo(self, chat_id: int, message: Rendered, png: bytes) -> str:
        """A picture (a trend chart) with the message as its caption."""
        sent = await self.bot.send_photo(
            chat_id=chat_id,
            photo=png,
            caption=message.text,
            parse_mode=ParseMode.HTML if message.html else None,
            reply_markup=_keyboard(message),
        )
        return str(sent.message_id)

    async def _edit(self, chat_id: int, message: Rendered, message_id: object) -> str | None:
        """Show the chosen answer on the question message (and drop its buttons)."""
        if not isinstance(message_id, int | str):
            return None  # the question was never delivered: nothing to edit
        try:
            fields = {"text": message.text, "chat_id": str(chat_id)}
            fields["message_id"] = str(int(message_id))
            await self._call("editMessageText", fields | _parse_mode(message))
        except BadRequest as exc:
            if "not modified" in exc.message.lower() or "not found" in exc.message.lower():
                return str(message_id)  # already shows it, or gone: nothing left to do
            raise
        return str(message_id)

    async def _call(self, method: str, fields: dict[str, str]) -> object:
        """One Bot API call; the answer's ``result`` as JSON, unparsed. Raises TelegramError
        as the library's methods do (RetryAfter, Forbidden, BadRequest, TimedOut, ...)."""
        return await self._request.post(f"{self.bot.base_url}/{method}", form(fields))

    async def fetch_updates(
        self, offset: int | None, timeout_s: int, limit: int = 100, allowed: list[str] | None = None
    ) -> list[object]:
        """One getUpdates call: the updates as JSON values, unparsed. Raises TelegramError.

        When the answer is not readable JSON (nested too deep, broken), it holds a single
        placeholder, ``{"update_id": <the first id in the answer>, UNREADABLE: True}``."""
        query = {"offset": offset, "timeout": timeout_s, "limit": limit}
        listed = {"allowed_updates": json.dumps(allowed)} if allowed is not None else {}
        url = f"{self.bot.base_url}/getUpdates?" + urlencode(
            {k: v for k, v in query.items() if v is not None} | listed
        )  # the Bot API reads parameters from the query string too
        result = await self._updates.post(url, None, read_timeout=timeout_s + 10)
        return list(result) if isinstance(result, list) else []

    async def answer_button(self, query_id: str) -> None:
        """Stop the button's spinner. Best effort: the answer is already recorded."""
        try:
            await self._initialized()
            await self.bot.answer_callback_query(query_id)
        except (TelegramError, DeliveryFailed):
            return

    async def _initialized(self) -> None:
        try:
            await self.start()
        except TelegramError as exc:
            raise DeliveryFailed(f"telegram: cannot initialise ({type(exc).__name__})") from exc


class _UpdatesRequest(HTTPXRequest):
    """The getUpdates connection: its answers are read without logging them.

    The library's reader logs a payload it cannot read in full (message texts, names) and
    lets RecursionError through; this one keeps the first update id of an unreadable
    answer, so the poller can fetch that update alone and skip it."""

    @staticmethod
    def parse_json_payload(payload: bytes) -> dict[str, object]:
        try:
            parsed = json.loads(payload.decode("utf-8", "replace"))
        except (ValueError, RecursionError):
            parsed = None
        if isinstance(parsed, dict):
            return parsed
        first = first_update_id(payload)
        if first is None:
            raise TelegramError("unreadable answer to getUpdates")
        return {"ok": True, "result": [{"update_id": first, UNREADABLE: True}]}


def first_update_id(payload: bytes) -> int | None:
    """The first ``"update_id": N`` in JSON text that could not be parsed (Telegram writes
    it first in each update; an escaped quote inside a text does not match)."""
    found = _FIRST_UPDATE_ID.search(payload)
    return int(found.group(1)) if found else None


def to_inbound(update: telegram.Update) -> Inbound | None:
    """Our record of an update: typed text, a tapped button, or a block / unblock.

    Ids dedupe redeliveries: a message is keyed by chat and message id (Telegram has been
    seen to resend one under a new update_id), a button by its callback query id, a
    membership change by its update_id. Anything else (edits, groups, stickers) is None.
    """
    if update.message is not None and update.message.chat.type == "private":
        message = update.message
        return Inbound(
            "telegram",
            f"m{message.chat.id}:{message.message_id}",
            str(message.chat.id),
            message.text or "",
            message.date,
        )
    query = update.callback_query
    if query is not None and query.data is not None and query.message is not None:
        chat = query.message.chat
        return Inbound("telegram", f"q{query.id}", str(chat.id), query.data, _now(), kind="button")
    member = update.my_chat_member
    if member is not None and member.chat.type == "private":
        status = member.new_chat_member.status
        return Inbound(
            "telegram",
            f"u{update.update_id}",
            str(member.chat.id),
            status,
            member.date,
            kind="member",
        )
    return None


def _chat_id(address: str) -> int:
    """The chat id an address names; a permanent failure when it names none (the address
    was typed by hand or belongs to another channel): retrying cannot make it one."""
    try:
        return int(address)
    except ValueError:
        raise DeliveryFailed("telegram: the address is not a chat id", permanent=True) from None


def _now() -> datetime:
    return datetime.now(UTC)


def _keyboard(message: Rendered) -> InlineKeyboardMarkup | None:
    if not message.buttons:
        return None
    rows = [[InlineKeyboardButton(b.label, callback_data=b.data)] for b in message.buttons]
    return InlineKeyboardMarkup(rows)


def _parse_mode(message: Rendered) -> dict[str, str]:
    return {"parse_mode": ParseMode.HTML.value} if message.html else {}


def _markup(message: Rendered) -> dict[str, str]:
    """The buttons as ``reply_markup``, written as the library writes `_keyboard`'s markup
    (``json.dumps(markup.to_dict())``: keys in its order), without building it."""
    if not message.buttons:
        return {}
    rows = [[{"callback_data": b.data, "text": b.label}] for b in message.buttons]
    return {"reply_markup": json.dumps({"inline_keyboard": rows})}


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

"""A stand-in for the Telegram Bot API, for python-telegram-bot pointed at it with ``base_url``.

    stand_in = TelegramStandIn()
    async with serve(stand_in.app) as url:
        bot = telegram.Bot(stand_in.token, base_url=f"{url}/bot")

Serves ``/bot{token}/{method}`` for getMe, sendMessage, sendPhoto (the uploaded bytes kept in
``photos``), editMessageText, editMessageReplyMarkup,
answerCallbackQuery, setWebhook, deleteWebhook, getWebhookInfo and getUpdates, answering
``{"ok": true, "result": ...}`` like the real API. Every request is recorded in ``calls``.
Failures are scripted with ``fail(fault, method=..., chat_id=..., times=...)`` using the
factories below (``flood``, ``blocked``, ``chat_not_found``, ``server_error``) or the generic
``Fault.slow`` / ``Fault.dropped``; ``block(chat_id)`` makes a patient block the bot for good.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import json
import re
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from html.parser import HTMLParser
from http import HTTPStatus
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.standins.limits import ProviderLimits
from tests.standins.server import Call, Fault, FaultScript, apply_fault, utc_now

JSON = dict[str, Any]
SECRET_TOKEN_HEADER = "X-Telegram-Bot-Api-Secret-Token"
MAX_TEXT_CHARS = 4096
MAX_CAPTION_CHARS = 1024
NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup are "
    "exactly the same as a current content and reply markup of the message"
)

_JSON_FIELDS = {"reply_markup", "entities", "allowed_updates", "link_preview_options"}
_INT_FIELDS = {"message_id", "offset", "limit", "timeout", "max_connections", "cache_time"}
_BOOL_FIELDS = {"show_alert", "drop_pending_updates", "disable_notification", "protect_content"}


def flood(retry_after_s: int = 3) -> Fault:
    """HTTP 429 with ``parameters.retry_after``; python-telegram-bot raises ``RetryAfter``."""
    message = f"Too Many Requests: retry after {retry_after_s}"
    return Fault(status=429, message=message, retry_after_s=retry_after_s)


def blocked() -> Fault:
    """HTTP 403 for a patient who blocked the bot; python-telegram-bot raises ``Forbidden``."""
    return Fault(status=403, message="Forbidden: bot was blocked by the user")


def chat_not_found() -> Fault:
    """HTTP 400 for an unknown chat; python-telegram-bot raises ``BadRequest``."""
    return Fault(status=400, message="Bad Request: chat not found")


def server_error(status: int = 500) -> Fault:
    """HTTP 5xx; python-telegram-bot raises ``NetworkError``."""
    return Fault(status=status, message=HTTPStatus(status).phrase)


def build_text_update(
    *,
    update_id: int,
    chat_id: int,
    message_id: int,
    text: str,
    date: datetime,
    first_name: str = "Pat",
    username: str | None = None,
) -> JSON:
    """The Update Telegram delivers when a patient writes ``text`` in a private chat."""
    user = _user(chat_id, first_name, username)
    chat = {k: v for k, v in user.items() if k not in ("is_bot", "language_code")}
    message = {
        "message_id": message_id,
        "from": user,
        "chat": {**chat, "type": "private"},
        "date": int(date.timestamp()),
        "text": text,
    }
    if text.startswith("/"):
        command = text.split()[0]
        message["entities"] = [{"type": "bot_command", "offset": 0, "length": len(command)}]
    return {"update_id": update_id, "message": message}


def build_callback_update(
    *,
    update_id: int,
    chat_id: int,
    data: str,
    message: Mapping[str, Any],
    query_id: str,
    first_name: str = "Pat",
    username: str | None = None,
) -> JSON:
    """The Update Telegram delivers when a patient taps a button carrying ``data`` on ``message``."""
    query = {
        "id": query_id,
        "from": _user(chat_id, first_name, username),
        "message": dict(message),
        "chat_instance": f"-{chat_id}0",
        "data": data,
    }
    return {"update_id": update_id, "callback_query": query}


def _user(user_id: int, first_name: str, username: str | None) -> JSON:
    user: JSON = {"id": user_id, "is_bot": False, "first_name": first_name}
    if username:
        user["username"] = username
    return user | {"language_code": "en"}


class TelegramStandIn:
    """The Bot API for one bot token, with recorded calls, scripted faults and queued updates."""

    def __init__(
        self,
        token: str = "123456:TEST-standin-token",
        *,
        bot_username: str = "checkin_test_bot",
        max_long_poll_s: float = 1.0,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.token = token
        self.bot_user: JSON = {
            "id": int(token.split(":", 1)[0]),
            "is_bot": True,
            "first_name": "Check-in",
            "username": bot_username,
        }
        self.max_long_poll_s = max_long_poll_s
        self.clock = clock
        self.calls: list[Call] = []
        self.faults = FaultScript()
        self.blocked_chats: set[int] = set()
        self.webhook_url = ""
        self.webhook_secret: str | None = None
        self.answered_queries: list[str] = []
        # Telegram's broadcast limit, when set: more than this many sendMessage calls in
        # any one second are answered 429 with retry_after 1 (as the real API does).
        self.limit_per_s: float | None = None
        self._recent_sends: collections.deque[float] = collections.deque()
        # Telegram's limits as a whole (30 per sliding second, a burst allowance per
        # chat), enforced over sends and edits when set: see tests/standins/limits.py.
        self.limits: ProviderLimits | None = None
        self.photos: dict[tuple[int | str, int], bytes] = {}  # (chat, message id) -> upload
        self._updates: list[JSON] = []
        self._messages: dict[tuple[int | str, int], JSON] = {}
        self._message_ids: defaultdict[int | str, itertools.count[int]] = defaultdict(
            lambda: itertools.count(1)
        )
        self._update_ids = itertools.count(10_000)
        self._query_ids = itertools.count(1)
        self._handlers: dict[str, Callable[[JSON], Awaitable[Any]]] = {
            "getme": self._get_me,
            "sendmessage": self._send_message,
            "sendphoto": self._send_photo,
            "editmessagetext": self._edit_message_text,
            "editmessagereplymarkup": self._edit_message_reply_markup,
            "answercallbackquery": self._answer_callback_query,
            "setwebhook": self._set_webhook,
            "deletewebhook": self._delete_webhook,
            "getwebhookinfo": self._get_webhook_info,
            "getupdates": self._get_updates,
        }
        route = Route("/bot{token}/{method}", self._endpoint, methods=["GET", "POST"])
        self.app = Starlette(routes=[route])

    # -- scripting and inspection ------------------------------------------------------------

    def fail(
        self,
        fault: Fault,
        *,
        method: str | None = None,
        chat_id: int | str | None = None,
        times: int = 1,
    ) -> None:
        """Script ``fault`` for the next ``times`` calls to ``method`` (any if None) in ``chat_id``."""
        key = None if chat_id is None else str(chat_id)
        self.faults.add(fault, method=method, key=key, times=times)

    def block(self, chat_id: int) -> None:
        """From now on every call for ``chat_id`` fails with 403, as when a patient blocks the bot."""
        self.blocked_chats.add(chat_id)

    def calls_to(self, method: str) -> list[Call]:
        """The recorded calls to one Bot API method, oldest first."""
        return [call for call in self.calls if call.method.lower() == method.lower()]

    def message(self, chat_id: int | str, message_id: int) -> JSON:
        """The current state (after edits) of a message the bot sent."""
        return self._messages[(chat_id, message_id)]

    def messages(self, chat_id: int | str) -> list[JSON]:
        """The messages the bot sent to ``chat_id``, in order, as currently edited."""
        return [m for (chat, _), m in self._messages.items() if chat == chat_id]

    def sent_texts(self, chat_id: int | str) -> list[str]:
        """The texts of the messages the bot sent to ``chat_id``, in order, as currently edited."""
        return [
            m.get("text", m.get("caption", ""))
            for (chat, _), m in self._messages.items()
            if chat == chat_id
        ]

    # -- driving the patient's side ----------------------------------------------------------

    def text_update(self, chat_id: int, text: str, **user: Any) -> JSON:
        """A new Update for a patient message, with fresh update and message ids."""
        return build_text_update(
            update_id=next(self._update_ids),
            chat_id=chat_id,
            message_id=next(self._message_ids[chat_id]),
            text=text,
            date=self.clock(),
            **user,
        )

    def callback_update(self, chat_id: int, message_id: int, data: str, **user: Any) -> JSON:
        """A new Update for a patient tapping a button on a message the bot sent."""
        return build_callback_update(
            update_id=next(self._update_ids),
            chat_id=chat_id,
            data=data,
            message=self.message(chat_id, message_id),
            query_id=f"{self.bot_user['id']}{next(self._query_ids):08d}",
            **user,
        )

    def queue_update(self, update: JSON) -> None:
        """Hold ``update`` for the next getUpdates call."""
        self._updates.append(update)

    def queue_raw_update(self, update_id: int, json_text: str) -> None:
        """Hold an update given as JSON text, sent as is (nested too deep, broken, escapes)."""
        self._updates.append(RawUpdate(update_id, json_text))

    # -- HTTP ----------------------------------------------------------------------------------

    async def _endpoint(self, request: Request) -> Response:
        if request.path_params["token"] != self.token:
            return _error(401, "Unauthorized")
        method = request.path_params["method"]
        handler = self._handlers.get(method.lower())
        if handler is None:
            return _error(404, "Not Found: method not found")
        params = await _read_params(request)
        chat_id = params.get("chat_id")
        fault = self.faults.take(method, None if chat_id is None else str(chat_id))
        if fault is None and chat_id in self.blocked_chats:
            fault = blocked()
        if fault is None and method.lower() == "sendmessage" and self._over_limit():
            fault = flood(1)
        if fault is None and self.limits is not None:
            retry_after_s = self.limits.check(method, str(chat_id))
            fault = None if retry_after_s is None else flood(retry_after_s)
        self.calls.append(Call(method, params, self.clock(), fault))
        if fault is not None and (response := await apply_fault(fault, _fault_response)):
            return response
        try:
            return _ok(await handler(params))
        except _ApiError as exc:
            return _error(exc.status, exc.description)

    def _over_limit(self) -> bool:
        if self.limit_per_s is None:
            return False
        now = time.monotonic()
        while self._recent_sends and now - self._recent_sends[0] >= 1.0:
            self._recent_sends.popleft()
        if len(self._recent_sends) >= self.limit_per_s:
            return True
        self._recent_sends.append(now)
        return False

    async def _get_me(self, params: JSON) -> JSON:
        return self.bot_user | {
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
        }

    async def _send_message(self, params: JSON) -> JSON:
        chat_id = _required(params, "chat_id", "Bad Request: chat_id is empty")
        text, message_id = _checked_text(params), next(self._message_ids[chat_id])
        message: JSON = {
            "message_id": message_id,
            "from": self.bot_user,
            "chat": _chat(chat_id),
            "date": int(self.clock().timestamp()),
            "text": text,
        }
        message |= _inline_markup(params)
        self._messages[(chat_id, message_id)] = message
        return message

    async def _send_photo(self, params: JSON) -> JSON:
        """An uploaded photo (multipart), kept as bytes; its caption is checked like text."""
        chat_id = _required(params, "chat_id", "Bad Request: chat_id is empty")
        photo = params.get("photo")
        if not isinstance(photo, bytes) or not photo:
            raise _ApiError(400, "Bad Request: there is no photo in the request")
        caption = str(params.get("caption", ""))
        shown = _strip_html(caption) if params.get("parse_mode") == "HTML" else caption
        if len(shown) > MAX_CAPTION_CHARS:
            raise _ApiError(400, "Bad Request: message caption is too long")
        message_id = next(self._message_ids[chat_id])
        size = {"file_id": f"photo{message_id}", "file_unique_id": f"u{message_id}",
                "width": 800, "height": 600, "file_size": len(photo)}  # fmt: skip
        message: JSON = {
            "message_id": message_id,
            "from": self.bot_user,
            "chat": _chat(chat_id),
            "date": int(self.clock().timestamp()),
            "photo": [size],
            "caption": shown,
        }
        message |= _inline_markup(params)
        self._messages[(chat_id, message_id)] = message
        self.photos[(chat_id, message_id)] = photo
        return message

    async def _edit_message_text(self, params: JSON) -> JSON | bool:
        if "inline_message_id" in params:
            return True
        key = self._message_to_edit(params)
        return self._edit(key, {"text": _checked_text(params)} | _inline_markup(params))

    async def _edit_message_reply_markup(self, params: JSON) -> JSON | bool:
        if "inline_message_id" in params:
            return True
        key = self._message_to_edit(params)
        return self._edit(key, {"text": self._messages[key]["text"]} | _inline_markup(params))

    def _message_to_edit(self, params: JSON) -> tuple[int | str, int]:
        chat_id = _required(params, "chat_id", "Bad Request: chat_id is empty")
        key = (chat_id, _required(params, "message_id", "Bad Request: message_id is empty"))
        if key not in self._messages:
            raise _ApiError(400, "Bad Request: message to edit not found")
        return key

    def _edit(self, key: tuple[int | str, int], content: JSON) -> JSON:
        message = self._messages[key]
        kept = {k: v for k, v in message.items() if k not in ("text", "reply_markup", "edit_date")}
        if content == {k: message[k] for k in ("text", "reply_markup") if k in message}:
            raise _ApiError(400, NOT_MODIFIED)
        edited = kept | content | {"edit_date": int(self.clock().timestamp())}
        self._messages[key] = edited
        return edited

    async def _answer_callback_query(self, params: JSON) -> bool:
        query_id = _required(params, "callback_query_id", "Bad Request: query ID is empty")
        self.answered_queries.append(str(query_id))
        return True

    async def _set_webhook(self, params: JSON) -> bool:
        self.webhook_url = str(params.get("url", ""))
        self.webhook_secret = params.get("secret_token")
        if params.get("drop_pending_updates"):
            self._updates.clear()
        return True

    async def _delete_webhook(self, params: JSON) -> bool:
        return await self._set_webhook({"drop_pending_updates": params.get("drop_pending_updates")})

    async def _get_webhook_info(self, params: JSON) -> JSON:
        info: JSON = {"url": self.webhook_url, "has_custom_certificate": False}
        info["pending_update_count"] = len(self._updates)
        return info | ({"max_connections": 40} if self.webhook_url else {})

    async def _get_updates(self, params: JSON) -> list[JSON]:
        if self.webhook_url:
            raise _ApiError(
                409,
                "Conflict: can't use getUpdates method while webhook is active; "
                "use deleteWebhook to delete the webhook first",
            )
        offset, limit = int(params.get("offset", 0)), int(params.get("limit", 100))
        self._confirm(offset)
        deadline = time.monotonic() + min(float(params.get("timeout", 0)), self.max_long_poll_s)
        while not self._updates and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        return self._updates[:limit]

    def _confirm(self, offset: int) -> None:
        """Forget the updates an offset confirms, as Telegram does (negative: keep the last -n)."""
        if offset < 0:
            del self._updates[: max(0, len(self._updates) + offset)]
        elif offset > 0:
            self._updates[:] = [u for u in self._updates if u["update_id"] >= offset]


class RawUpdate(dict[str, Any]):
    """A queued update whose JSON text is sent verbatim (json.dumps could not write it)."""

    def __init__(self, update_id: int, text: str) -> None:
        super().__init__(update_id=update_id)
        self.text = text


def _ok(result: Any) -> Response:
    if isinstance(result, list) and any(isinstance(u, RawUpdate) for u in result):
        items = ",".join(u.text if isinstance(u, RawUpdate) else json.dumps(u) for u in result)
        return Response('{"ok":true,"result":[' + items + "]}", media_type="application/json")
    return JSONResponse({"ok": True, "result": result})


class _ApiError(Exception):
    def __init__(self, status: int, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.description = description


def _error(status: int, description: str, retry_after_s: int | None = None) -> JSONResponse:
    body: JSON = {"ok": False, "error_code": status, "description": description}
    if retry_after_s is not None:
        body["parameters"] = {"retry_after": retry_after_s}
    return JSONResponse(body, status_code=status)


def _fault_response(fault: Fault) -> Response:
    assert fault.status is not None
    description = fault.message or f"Error {fault.status}"
    return _error(fault.status, description, fault.retry_after_s)


async def _read_params(request: Request) -> JSON:
    """Query string plus form or JSON body, with typed values, as the Bot API reads them."""
    raw: JSON = dict(request.query_params)
    if request.headers.get("content-type", "").startswith("application/json"):
        raw |= await request.json()
    elif request.method == "POST":
        async with request.form() as form:
            for name, value in form.items():  # text fields, and uploaded files as bytes
                raw[name] = value if isinstance(value, str) else await value.read()
    return {name: _typed(name, value) for name, value in raw.items()}


def _typed(name: str, value: Any) -> Any:
    if not isinstance(value, str):
        return value
    if name in _JSON_FIELDS:
        return json.loads(value)
    if name in _INT_FIELDS or (name == "chat_id" and value.lstrip("-").isdigit()):
        return int(value)
    if name in _BOOL_FIELDS:
        return value.lower() == "true"
    return value


def _required(params: JSON, name: str, description: str) -> Any:
    value = params.get(name)
    if value in (None, ""):
        raise _ApiError(400, description)
    return value


def _checked_text(params: JSON) -> str:
    text = str(params.get("text", ""))
    if params.get("parse_mode") == "HTML":
        if (broken := _BROKEN_ENTITY.search(text)) is not None:
            raise _ApiError(
                400, f"Bad Request: can't parse entities: unclosed entity at {broken.start()}"
            )
        text = _strip_html(text)
    if not text.strip():
        raise _ApiError(400, "Bad Request: message text is empty")
    if len(text) > MAX_TEXT_CHARS:
        raise _ApiError(400, "Bad Request: message is too long")
    return text


def _inline_markup(params: JSON) -> JSON:
    """Telegram echoes inline keyboards only; other keyboards do not appear on the Message."""
    markup = params.get("reply_markup")
    return (
        {"reply_markup": markup} if isinstance(markup, dict) and "inline_keyboard" in markup else {}
    )


def _chat(chat_id: int | str) -> JSON:
    if isinstance(chat_id, str):
        return {"id": -1001, "type": "channel", "title": chat_id, "username": chat_id.lstrip("@")}
    if chat_id < 0:
        return {"id": chat_id, "type": "group", "title": f"Group {chat_id}"}
    return {"id": chat_id, "type": "private", "first_name": "Pat"}


# an "&" that does not begin an entity: Telegram's HTML wants "&amp;" for it, and refuses
# the message otherwise (a cut through "&amp;" leaves "&am")
_BROKEN_ENTITY = re.compile(r"&(?!(?:[A-Za-z]+|#\d+|#x[0-9A-Fa-f]+);)")


class _TextOnly(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def _strip_html(text: str) -> str:
    """The text Telegram shows for an HTML message: tags removed, entities decoded."""
    parser = _TextOnly()
    parser.feed(text)
    parser.close()
    return "".join(parser.parts)

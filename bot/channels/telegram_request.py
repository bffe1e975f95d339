"""python-telegram-bot's requests sent with aiohttp instead of httpx.

The library's networking is a documented extension point (`telegram.request.BaseRequest`):
it builds each request's parameters, and reads each answer and turns its errors into
`TelegramError`s, around one method, `do_request`, which only moves bytes. Measured on this
machine against a local Bot API stand-in, one request at a time: 0.73-0.87 ms of CPU per
request through httpx, 0.24-0.25 ms through aiohttp. A patient's turn makes two (the
answered question's edit, then the next question), so this is about a millisecond a turn.

Timeouts keep the library's meaning, read off each call or else the defaults given here:
``read`` is the longest wait for the next bytes of the answer (aiohttp ``sock_read``),
``connect`` the longest wait to open a connection, and ``pool`` the longest wait for a
free one (aiohttp counts both as ``connect``, so it gets their sum). aiohttp has no write
timeout: a request body is a few kilobytes, written to the socket's buffer at once (a
photo is larger, and its upload ends with the read timeout if the provider stops reading).
A timeout raises `TimedOut`, any other failure to get an answer `NetworkError`, named by
the aiohttp exception's class only: its text can hold the request's URL, which holds the
bot token.

`form` builds a request's parameters from strings already encoded as the Bot API reads
them, for callers that post to a method themselves and read only its answer's JSON (the
channel's sendMessage and editMessageText: see `bot.channels.telegram`).
"""

from __future__ import annotations

from collections.abc import Mapping

import aiohttp
from aiohttp.payload import BytesPayload
from telegram._utils.defaultvalue import DefaultValue
from telegram._utils.types import ODVInput
from telegram.error import NetworkError, TimedOut
from telegram.request import BaseRequest, RequestData

# The library's own parameter type: private, and the only way to fill a RequestData (whose
# constructor takes a list of them). A string value goes out as it is (`json_value`).
from telegram.request._requestparameter import RequestParameter

_URLENCODED = "application/x-www-form-urlencoded"  # (aiohttp's FormData: no charset for UTF-8)
# `urllib.parse.quote_plus` as one table: each byte of a value's UTF-8 kept if always safe,
# a space as "+", any other "%XX" (tests/test_telegram_send.py compares it with aiohttp's)
_SAFE = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~"
_QUOTE_PLUS = {b: chr(b) if b in _SAFE else "+" if b == 0x20 else f"%{b:02X}" for b in range(256)}


class AiohttpRequest(BaseRequest):
    """A pool of up to `connection_pool_size` connections, opened by `initialize()`."""

    def __init__(
        self,
        *,
        connection_pool_size: int = 32,
        read_timeout: float | None = 5.0,
        connect_timeout: float | None = 5.0,
        pool_timeout: float | None = 1.0,
    ) -> None:
        self._pool_size = connection_pool_size
        self._read = read_timeout
        self._connect = connect_timeout
        self._pool = pool_timeout
        self._session: aiohttp.ClientSession | None = None

    @property
    def read_timeout(self) -> float | None:
        return self._read

    async def initialize(self) -> None:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._pool_size),
                headers={"User-Agent": self.USER_AGENT},
                # the library reads each answer's status and body itself, errors included
                raise_for_status=False,
            )

    async def shutdown(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        write_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        connect_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        pool_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
    ) -> tuple[int, bytes]:
        if self._session is None or self._session.closed:
            raise RuntimeError("this AiohttpRequest is not initialized")
        read = self._read if isinstance(read_timeout, DefaultValue) else read_timeout
        connect = self._connect if isinstance(connect_timeout, DefaultValue) else connect_timeout
        pool = self._pool if isinstance(pool_timeout, DefaultValue) else pool_timeout
        waiting = None if connect is None or pool is None else connect + pool
        timeout = aiohttp.ClientTimeout(
            total=None, connect=waiting, sock_connect=connect, sock_read=read
        )
        try:
            async with self._session.request(
                method, url, data=_body(request_data), timeout=timeout
            ) as response:
                return response.status, await response.read()
        except TimeoutError as exc:  # (aiohttp's ServerTimeoutError is one)
            raise TimedOut(f"aiohttp.{type(exc).__name__}") from exc
        except aiohttp.ClientError as exc:
            raise NetworkError(f"aiohttp.{type(exc).__name__}") from exc


def form(fields: Mapping[str, str]) -> RequestData:
    """Parameters for `BaseRequest.post`, each value already as the form carries it (a number
    written out, an object as JSON): what the library's methods build, without its objects."""
    return RequestData([RequestParameter(name, value, None) for name, value in fields.items()])


def _body(request_data: RequestData | None) -> aiohttp.FormData | BytesPayload | None:
    """The parameters as a form, as the library's httpx request sends them: URL-encoded,
    or multipart when a file goes along (`sendPhoto`). A URL-encoded form is encoded here,
    the same bytes and content type as aiohttp's `FormData` of a dict of them (given the
    dict, aiohttp looks it up as a payload, fails with an exception, then builds the
    form field by field) and `urlencode`'s (which quotes a value byte by byte, a Python
    call for each: about 330 a question with its buttons)."""
    if request_data is None:
        return None
    fields = request_data.json_parameters
    files = request_data.multipart_data
    if not files:
        encoded = "&".join(f"{_quoted(k)}={_quoted(v)}" for k, v in fields.items())
        return BytesPayload(encoded.encode("ascii"), content_type=_URLENCODED)
    form = aiohttp.FormData()
    for name, value in fields.items():
        form.add_field(name, value)
    for name, (filename, content, mimetype) in files.items():
        form.add_field(name, content, filename=filename, content_type=mimetype)
    return form


def _quoted(value: str) -> str:
    """`value` as ``quote_plus`` writes it: its UTF-8 bytes, each read as one character
    (Latin-1), through `_QUOTE_PLUS`."""
    return value.encode().decode("latin-1").translate(_QUOTE_PLUS)

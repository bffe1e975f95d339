"""Twilio HTTP clients that send every request to one configured base URL.

twilio-python hard-codes a host per product (``https://api.twilio.com`` for Messages,
``https://messaging.twilio.com``, ``https://conversations.twilio.com`` and some forty more;
``edge``/``region`` only insert labels into ``*.twilio.com``). Its documented extension point
is a custom ``http_client``, so these subclasses rewrite the scheme and host of each request
URL to ``api_base_url`` and keep path and query::

    client = Client(sid, token, http_client=BaseUrlHttpClient("http://127.0.0.1:8765"))

A path in ``api_base_url`` becomes a prefix (``https://proxy.example/twilio`` sends
``/twilio/2010-04-01/...``). The original host goes along as ``X-Forwarded-Host`` so a
self-hosted proxy can route: only the ``/2010-04-01/`` paths of api.twilio.com are unique, the
other products all start with ``/v1/`` or ``/v2/``. With the default base URL nothing is
rewritten and every product keeps its own host.

twilio's ``TwilioRestException`` keeps status, code and message but drops the response headers,
so a 429's Retry-After is lost on the way up. ``last_response()`` returns the last response this
thread or asyncio task received through these clients; ``retry_after_s()`` reads the header.
"""

from __future__ import annotations

import base64
from contextvars import ContextVar
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response

DEFAULT_API_BASE_URL = "https://api.twilio.com"
DEFAULT_TIMEOUT_S = 10.0

_last_response: ContextVar[Response | None] = ContextVar("twilio_last_response", default=None)


def request_url(url: str, api_base_url: str) -> str:
    """Where a request for ``url`` goes: unchanged with the default base URL, else rebased."""
    if api_base_url.rstrip("/") == DEFAULT_API_BASE_URL:
        return url
    return rebase_url(url, api_base_url)


def rebase_url(url: str, api_base_url: str) -> str:
    """``url`` sent to ``api_base_url``: its scheme and host, its path as a prefix."""
    base, target = urlsplit(api_base_url), urlsplit(url)
    path = base.path.rstrip("/") + target.path
    return urlunsplit((base.scheme, base.netloc, path, target.query, target.fragment))


def last_response() -> Response | None:
    """The last response this thread or asyncio task received through a base-URL client."""
    return _last_response.get()


def retry_after_s(response: Response | None, *, now: datetime | None = None) -> float | None:
    """The Retry-After of ``response`` in seconds (delta or HTTP date), or None if absent."""
    value = (response.headers or {}).get("Retry-After") if response is not None else None
    if not value:
        return None
    if value.strip().isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # "-0000" in the date means UTC of unknown origin
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _checked_base_url(api_base_url: str) -> str:
    parts = urlsplit(api_base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query:
        raise ValueError(
            f"api_base_url must be an http(s) URL such as {DEFAULT_API_BASE_URL}, "
            f"got {api_base_url!r}"
        )
    return api_base_url.rstrip("/")


class _Rebasing:
    """The URL rewriting both clients share."""

    api_base_url: str

    def _target(self, url: str, headers: dict[str, str] | None) -> tuple[str, dict[str, str]]:
        headers = dict(headers or {})
        target = request_url(url, self.api_base_url)
        if target != url:
            headers.setdefault("X-Forwarded-Host", urlsplit(url).netloc)
        return target, headers


# twilio ships no type information (no py.typed), so mypy sees its classes as Any.
class BaseUrlHttpClient(_Rebasing, TwilioHttpClient):  # type: ignore[misc]
    """twilio's synchronous (requests) client, sending to ``api_base_url``, with a timeout.

    twilio mounts its retrying adapter on ``https://`` only; a plain-http base gets it too.
    Call ``close()`` (or use ``with``) to release pooled connections.
    """

    def __init__(
        self,
        api_base_url: str = DEFAULT_API_BASE_URL,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        max_retries: int | None = None,
        proxy: dict[str, str] | None = None,
        pool_connections: bool = True,
    ) -> None:
        super().__init__(
            pool_connections=pool_connections,
            timeout=timeout_s,
            proxy=proxy,
            max_retries=max_retries,
        )
        self.api_base_url = _checked_base_url(api_base_url)
        if self.session is not None:
            self.session.mount("http://", self.session.adapters["https://"])

    def request(
        self,
        method: str,
        url: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> Response:
        """Send the request to ``api_base_url``; see ``TwilioHttpClient.request``."""
        url, headers = self._target(url, headers)
        response = super().request(
            method, url, params, data, headers, auth, timeout, allow_redirects
        )
        _last_response.set(response)
        return response

    def close(self) -> None:
        """Close the pooled connections."""
        if self.session is not None:
            self.session.close()

    def __enter__(self) -> BaseUrlHttpClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class AsyncBaseUrlHttpClient(_Rebasing, AsyncTwilioHttpClient):  # type: ignore[misc]
    """twilio's asyncio (aiohttp) client, sending to ``api_base_url``, with a timeout.

    Create it inside the running event loop (aiohttp needs one) and close it with
    ``async with`` or ``await close()``. Differences from the parent, on purpose:
    the client-wide timeout applies (the parent only honours a per-request one), and
    credentials go in an Authorization header, because aiohttp 3.14 deprecates ``auth=``
    and ``BasicAuth`` (DeprecationWarning on every request). The parent never passes
    ``proxy_url`` to aiohttp; neither does this class.
    """

    def __init__(
        self,
        api_base_url: str = DEFAULT_API_BASE_URL,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        max_retries: int | None = None,
        pool_connections: bool = True,
    ) -> None:
        super().__init__(
            pool_connections=pool_connections, timeout=timeout_s, max_retries=max_retries
        )
        self.api_base_url = _checked_base_url(api_base_url)

    async def request(
        self,
        method: str,
        url: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> Response:
        """Send the request to ``api_base_url``; see ``AsyncTwilioHttpClient.request``."""
        url, headers = self._target(url, headers)
        if auth is not None:
            headers["Authorization"] = _basic_authorization(*auth)
        timeout = self.timeout if timeout is None else timeout
        response = await super().request(
            method, url, params, data, headers, None, timeout, allow_redirects
        )
        _last_response.set(response)
        return response

    async def __aenter__(self) -> AsyncBaseUrlHttpClient:
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.close()


def _basic_authorization(username: str, password: str) -> str:
    token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
    return f"Basic {token}"

"""Serve an ASGI app on loopback for tests, plus the plumbing both provider stand-ins share.

``serve(app)`` runs uvicorn inside the running event loop and yields the base URL;
``serve_in_thread(app)`` runs it on its own loop in a daemon thread, for synchronous clients.
Both bind 127.0.0.1 on a free port and shut down completely on exit, because pytest turns
leftover-task and ResourceWarning noise into errors here.

The shared stand-in pieces: ``Call`` (one recorded request), ``Fault`` (one scripted failure),
``FaultScript`` (the queue of scripted failures, matched by method and key) and ``apply_fault``.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

import uvicorn
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

LOOPBACK = "127.0.0.1"


@asynccontextmanager
async def serve(
    app: ASGIApp,
    *,
    lifespan: Literal["auto", "on", "off"] = "auto",
    graceful_shutdown_s: int = 5,
) -> AsyncIterator[str]:
    """Serve ``app`` on a free loopback port in this event loop; yield ``http://127.0.0.1:PORT``."""
    config = uvicorn.Config(
        app,
        host=LOOPBACK,
        port=0,
        http="h11",
        ws="none",
        lifespan=lifespan,
        log_config=None,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=graceful_shutdown_s,
    )
    config.load()
    server = uvicorn.Server(config)
    server.lifespan = config.lifespan_class(config)  # what Server.serve() would do, sans signals
    try:
        await server.startup()
    except SystemExit as exc:  # uvicorn exits the process when the app's lifespan fails
        raise RuntimeError("the app failed to start; see the uvicorn.error log") from exc
    await server.on_tick(0)  # sets the Date and Server headers, as uvicorn's main loop would
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://{LOOPBACK}:{port}"
    finally:
        await server.shutdown()
        leftovers = list(server.server_state.tasks)
        if leftovers:  # cancelled by the graceful timeout; let them finish unwinding
            await asyncio.wait(leftovers, timeout=graceful_shutdown_s)


@contextmanager
def serve_in_thread(app: ASGIApp, *, start_timeout_s: float = 10.0) -> Iterator[str]:
    """Serve ``app`` from a background thread with its own event loop; yield the base URL."""
    started: queue.Queue[tuple[str, asyncio.AbstractEventLoop, asyncio.Event] | BaseException]
    started = queue.Queue()

    async def main() -> None:
        stop = asyncio.Event()
        async with serve(app) as base_url:
            started.put((base_url, asyncio.get_running_loop(), stop))
            await stop.wait()

    def run() -> None:
        try:
            asyncio.run(main())
        except BaseException as exc:  # reported to the caller if startup failed
            started.put(exc)

    thread = threading.Thread(target=run, name="standin-server", daemon=True)
    thread.start()
    outcome = started.get(timeout=start_timeout_s)
    if isinstance(outcome, BaseException):
        raise outcome
    base_url, loop, stop = outcome
    try:
        yield base_url
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=start_timeout_s)


def utc_now() -> datetime:
    """The default clock of the stand-ins."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class Fault:
    """One scripted failure, applied in order: wait ``delay_s``; then drop the connection, or
    answer ``status`` with an error body in the provider's format; or, if neither is set, answer
    normally (a slow success: the provider acted, the client may already have given up).

    ``code`` is the provider's own error code (Twilio's 21610; Telegram uses the HTTP status).
    ``retry_after_s`` becomes Telegram's ``parameters.retry_after`` or Twilio's Retry-After header.
    """

    status: int | None = None
    message: str = ""
    code: int | None = None
    retry_after_s: int | None = None
    delay_s: float = 0.0
    drop: bool = False

    @classmethod
    def slow(cls, delay_s: float) -> Fault:
        """Answer normally, but only after ``delay_s`` (beyond the client's timeout)."""
        return cls(delay_s=delay_s)

    @classmethod
    def dropped(cls, *, delay_s: float = 0.0) -> Fault:
        """Close the connection mid-response (headers sent, body missing)."""
        return cls(drop=True, delay_s=delay_s)

    def after(self, delay_s: float) -> Fault:
        """This fault, answered only after ``delay_s``."""
        return replace(self, delay_s=delay_s)


@dataclass(frozen=True)
class Call:
    """One request a stand-in received: provider method, parsed params, when, what it did."""

    method: str
    params: Mapping[str, Any]
    at: datetime
    fault: Fault | None = None
    auth: tuple[str, str] | None = None


@dataclass
class _Entry:
    fault: Fault
    method: str | None
    key: str | None
    remaining: int


@dataclass
class FaultScript:
    """Scripted failures, consumed first-in first-out by the first request that matches.

    ``method=None`` or ``key=None`` match anything; ``times`` repeats the fault that many times.
    """

    _entries: list[_Entry] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, fault: Fault, *, method: str | None, key: str | None, times: int) -> None:
        """Queue ``fault`` for the next ``times`` requests matching ``method`` and ``key``."""
        if times < 1:
            raise ValueError(f"times must be at least 1, got {times}")
        with self._lock:
            self._entries.append(_Entry(fault, method, key, times))

    def take(self, method: str, key: str | None) -> Fault | None:
        """Consume and return the first fault scripted for this request, if any."""
        with self._lock:
            for entry in self._entries:
                if entry.method not in (None, method) or entry.key not in (None, key):
                    continue
                entry.remaining -= 1
                if entry.remaining == 0:
                    self._entries.remove(entry)
                return entry.fault
        return None

    def pending(self) -> int:
        """How many scripted failures are still waiting to happen."""
        with self._lock:
            return sum(entry.remaining for entry in self._entries)

    def clear(self) -> None:
        """Forget every scripted failure."""
        with self._lock:
            self._entries.clear()


class DroppedConnection(Response):
    """Send headers promising a body, then return: the server closes the connection mid-response.

    ASGI cannot reset a socket before the status line; this is the closest portable equivalent.
    The client fails while reading (httpx ``RemoteProtocolError``, requests
    ``ChunkedEncodingError``). uvicorn logs "ASGI callable returned without completing response."
    """

    def __init__(self) -> None:
        super().__init__(status_code=200, headers={"content-length": "64"})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})


async def apply_fault(fault: Fault, error: Callable[[Fault], Response]) -> Response | None:
    """Play ``fault``; return the response to send, or None to go on and answer normally."""
    if fault.delay_s > 0:
        await asyncio.sleep(fault.delay_s)
    if fault.drop:
        return DroppedConnection()
    if fault.status is not None:
        return error(fault)
    return None

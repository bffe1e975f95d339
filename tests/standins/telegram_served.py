"""The Telegram stand-in served for a bench: in a thread of the bench, or in a process of its own.

    async with in_process(Options()) as stand_in:   # or in_thread(Options())
        bot = telegram.Bot(stand_in.token, base_url=f"{stand_in.url}/bot")
        ...
        for seen in await stand_in.seen():
            print(seen.method, seen.chat_id, seen.text, seen.at)

Telegram's servers never share a CPU, let alone a GIL, with the bot. A stand-in in a thread
of the bench does: its work counts against the latency the bench measures. ``in_process``
runs it apart, as ``python -m tests.standins.telegram_served``: the child builds the
stand-in from the same ``Options`` as ``in_thread`` (so the limits it enforces are the same),
serves it on a free loopback port, prints the URL as its first line, and stops when its
standard input closes, so it never outlives the bench.

The child also serves ``GET /standin/calls?since=N``: the requests it received from the N-th
on, as JSON, one ``Seen`` each. ``Seen.at`` is the stand-in's own clock (``Call.at``, from
``datetime.now(UTC)``: CLOCK_REALTIME), which every process on the machine reads alike, so a
bench can subtract its own ``datetime.now(UTC)`` from it in either mode. The existing tests
use ``TelegramStandIn`` directly and never see this route.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route

from tests.standins.limits import ProviderLimits
from tests.standins.server import Call, serve, serve_in_thread
from tests.standins.telegram import TelegramStandIn

ROOT = Path(__file__).resolve().parent.parent.parent
CALLS_PATH = "/standin/calls"


@dataclass(frozen=True)
class Options:
    """How the stand-in is built, the same in a thread or a process.

    ``limit_per_s`` is ``TelegramStandIn.limit_per_s`` (sendMessage only); ``limits`` is
    (per_s, per_chat_burst, per_chat_rate_per_s) for ``ProviderLimits``. None: no limit.
    """

    token: str = "123456:TEST-standin-token"
    limit_per_s: float | None = None
    limits: tuple[int, int, float] | None = None

    def build(self) -> TelegramStandIn:
        stand_in = TelegramStandIn(self.token)
        stand_in.limit_per_s = self.limit_per_s
        if self.limits is not None:
            per_s, burst, per_chat = self.limits
            stand_in.limits = ProviderLimits(per_s, burst, per_chat)
        return stand_in

    def argv(self) -> list[str]:
        args = ["--token", self.token]
        if self.limit_per_s is not None:
            args += ["--limit-per-s", str(self.limit_per_s)]
        if self.limits is not None:
            args += ["--limits", *(str(value) for value in self.limits)]
        return args

    @classmethod
    def parse(cls, argv: list[str]) -> Options:
        parser = argparse.ArgumentParser(description="Serve the Telegram stand-in; print its URL.")
        parser.add_argument("--token", default=cls.token)
        parser.add_argument("--limit-per-s", type=float, default=None)
        parser.add_argument("--limits", nargs=3, metavar=("PER_S", "BURST", "PER_CHAT_PER_S"))
        args = parser.parse_args(argv)
        if args.limits is None:
            return cls(args.token, args.limit_per_s)
        per_s, burst, per_chat = args.limits
        return cls(args.token, args.limit_per_s, (int(per_s), int(burst), float(per_chat)))


@dataclass(frozen=True)
class Seen:
    """One request the stand-in received: method, chat, text, arrival, and the status of
    the fault it was answered with (a scripted one or a limit's 429), None if answered."""

    method: str
    chat_id: int | str | None
    text: str
    at: datetime
    status: int | None = None

    @classmethod
    def of(cls, call: Call) -> Seen:
        status = None if call.fault is None else call.fault.status
        text = str(call.params.get("text", ""))
        return cls(call.method, call.params.get("chat_id"), text, call.at, status)

    def to_json(self) -> dict[str, Any]:
        return {"method": self.method, "chat_id": self.chat_id, "text": self.text,
                "at": self.at.timestamp(), "status": self.status}  # fmt: skip

    @classmethod
    def from_json(cls, item: dict[str, Any]) -> Seen:
        at = datetime.fromtimestamp(item["at"], UTC)
        return cls(item["method"], item["chat_id"], item["text"], at, item["status"])


class InThread:
    """The stand-in served from a thread of this process; ``seen`` reads its calls directly."""

    def __init__(self, stand_in: TelegramStandIn, url: str) -> None:
        self.stand_in, self.url, self.token = stand_in, url, stand_in.token
        self._seen: list[Seen] = []

    async def seen(self) -> list[Seen]:
        """Every request received so far, oldest first."""
        self._seen += [Seen.of(call) for call in self.stand_in.calls[len(self._seen) :]]
        return self._seen


class InProcess:
    """The stand-in served by a child process; ``seen`` fetches its new calls over HTTP."""

    def __init__(self, url: str, token: str, client: httpx.AsyncClient) -> None:
        self.url, self.token, self._client = url, token, client
        self._seen: list[Seen] = []

    async def seen(self) -> list[Seen]:
        """Every request received so far, oldest first."""
        response = await self._client.get(CALLS_PATH, params={"since": len(self._seen)})
        response.raise_for_status()
        self._seen += [Seen.from_json(item) for item in response.json()]
        return self._seen


@asynccontextmanager
async def in_thread(options: Options) -> AsyncIterator[InThread]:
    """The stand-in in a daemon thread of this process, sharing its GIL."""
    stand_in = options.build()
    with serve_in_thread(stand_in.app) as url:
        yield InThread(stand_in, url)


@asynccontextmanager
async def in_process(options: Options, *, start_timeout_s: float = 30) -> AsyncIterator[InProcess]:
    """The stand-in in a child process; stopped by closing its standard input."""
    command = [sys.executable, "-m", "tests.standins.telegram_served", *options.argv()]
    child = subprocess.Popen(command, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True)  # fmt: skip
    assert child.stdin is not None and child.stdout is not None
    try:
        line = await asyncio.wait_for(asyncio.to_thread(child.stdout.readline), start_timeout_s)
        if not line.startswith("http://"):
            raise RuntimeError(f"the stand-in process did not start (exit {child.poll()})")
        url = line.strip()
        async with httpx.AsyncClient(base_url=url) as client:
            yield InProcess(url, options.token, client)
    finally:
        child.stdin.close()
        await _ended(child)


async def _ended(child: subprocess.Popen[str], timeout_s: float = 10) -> None:
    try:
        await asyncio.to_thread(child.wait, timeout_s)
    except subprocess.TimeoutExpired:
        child.kill()
        await asyncio.to_thread(child.wait)
    assert child.stdout is not None
    child.stdout.close()


def with_calls_route(stand_in: TelegramStandIn) -> Starlette:
    """The stand-in's app plus ``GET /standin/calls?since=N``."""

    async def calls(request: Request) -> JSONResponse:
        since = int(request.query_params.get("since", 0))
        return JSONResponse([Seen.of(call).to_json() for call in stand_in.calls[since:]])

    return Starlette(routes=[Route(CALLS_PATH, calls), Mount("", app=stand_in.app)])


async def _serve(options: Options) -> None:
    async with serve(with_calls_route(options.build())) as url:
        print(url, flush=True)
        await asyncio.to_thread(sys.stdin.read)  # until the parent closes it, or exits


if __name__ == "__main__":
    asyncio.run(_serve(Options.parse(sys.argv[1:])))

"""The real service's web app served over HTTP for a browser: bootstrap's ``build`` and
``create_app`` under uvicorn, on 127.0.0.1 at a free port, in a thread with its own event
loop (the test's loop stays free for the browser and the test's own database work).

The served App is built in that thread, on the same database URL and the same clock
object as the test's rig, so what the test writes the browser sees, and a fixed clock
makes the pages (and screenshots) the same on every run.
"""

from __future__ import annotations

import asyncio
import io
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn

from bot.app.ports import Clock
from bot.bootstrap import build
from bot.config import Settings
from bot.web.app import create_app

STARTUP_S = 20.0


class _Server(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # the test process owns its signals
        pass


def _free_socket() -> socket.socket:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    return listener


@contextmanager
def served(settings: Settings, clock: Clock) -> Iterator[str]:
    """Serve the panel of `settings`' clinic until the block ends; yields the base URL."""
    listener = _free_socket()
    ready, failure = threading.Event(), []
    holder: list[_Server] = []

    async def serve() -> None:
        app = build(settings, clock=clock, console=io.StringIO())
        config = uvicorn.Config(create_app(app), lifespan="off", log_config=None,
                                access_log=False, log_level="warning")  # fmt: skip
        server = _Server(config)
        holder.append(server)
        try:
            watcher = asyncio.create_task(_signal_when_started(server, ready))
            await server.serve(sockets=[listener])
            watcher.cancel()
        finally:
            await app.close()

    def run() -> None:
        try:
            asyncio.run(serve())
        except BaseException as exc:  # reported to the test below, not lost in the thread
            failure.append(exc)
            ready.set()

    thread = threading.Thread(target=run, name="panel-server", daemon=True)
    thread.start()
    if not ready.wait(STARTUP_S) or failure:
        raise RuntimeError(f"the panel did not start within {STARTUP_S} s: {failure}")
    port = listener.getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        holder[0].should_exit = True
        thread.join(STARTUP_S)
        listener.close()
        if failure:
            raise failure[0]


async def _signal_when_started(server: uvicorn.Server, ready: threading.Event) -> None:
    while not server.started:
        await asyncio.sleep(0.01)
    ready.set()

"""The web server of ``checkin run``: uvicorn serving the Starlette app, the scheduler, the
delivery courier and Telegram polling in one process. Imported by `run` only, so `worker`
(and every other command) never loads uvicorn, Starlette or the webhook routes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import Iterator

import uvicorn
from telegram.error import TelegramError

from bot.app.operator.keys import key_problem
from bot.app.outbox.takeover import release_dead_leases
from bot.bootstrap import App, build
from bot.channels.telegram import TelegramChannel
from bot.commands.common import fail
from bot.config import Settings
from bot.domain.errors import CheckinError
from bot.web.app import create_app
from bot.web.telegram import ALLOWED_UPDATES
from bot.web.telegram_poller import poll
from scheduler.loop import (
    courier,
    on_stop_signal,
    spool_drainer,
    start_scheduler,
    stop_scheduler,
)


async def serve(settings: Settings) -> None:
    """Serve until SIGTERM or Ctrl-C (the caller holds the scheduler lock)."""
    app = build(settings)
    problem = await key_problem(settings, app.db) or await _spool_problem(app)
    if problem is not None:
        await app.close()
        fail(problem)
    await release_dead_leases(app.db, app.clock)  # SQLite: the lock's last holder is gone
    server = _Server(
        uvicorn.Config(
            create_app(app),
            host=settings.server.host,
            port=settings.server.port,
            lifespan="off",
            log_level="info",
            log_config=None,  # uvicorn's records go through our structured, redacting handler
        )
    )
    try:
        # replies leave the moment they are committed; spooled SMS are drained at once
        async with courier(app), spool_drainer(app):
            await _serve_with(app, server)
    finally:
        await app.close()


async def _spool_problem(app: App) -> str | None:
    """The SMS spool cannot be opened: say so before /sms answers a single 503."""
    if app.services.intake is None:
        return None
    try:
        await app.services.intake.status()
    except CheckinError as exc:  # SpoolUnavailable: names the path and the OS's reason
        return str(exc)
    return None


async def _serve_with(app: App, server: _Server) -> None:
    """The scheduler, the Telegram poller (if polling) and the web server, until stopped."""
    settings = app.settings
    scheduler = start_scheduler(app)
    stop = asyncio.Event()
    poller = await _start_telegram(app, stop)
    loop = asyncio.get_running_loop()
    handler = on_stop_signal(app, server.stop)  # a second one cuts the grace short
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, handler)
    logging.getLogger("checkin").info(
        "serving on http://%s:%d; scheduler tick every %gs; Ctrl-C to stop",
        settings.server.host, settings.server.port, settings.scheduler.tick_s,
    )  # fmt: skip
    try:
        await server.serve()  # returns after SIGTERM or Ctrl-C
    finally:
        stop.set()
        if poller is not None:
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller
        stop_scheduler(app, scheduler)


async def _start_telegram(app: App, stop: asyncio.Event) -> asyncio.Task[None] | None:
    """Polling: a poller task in this process. Webhook: tell Telegram where to call."""
    channel = app.channels.get("telegram")
    if not isinstance(channel, TelegramChannel):
        return None
    settings = app.settings
    try:
        await channel.start()
        if settings.telegram.mode == "webhook":
            await channel.bot.set_webhook(
                url=settings.server.public_url.rstrip("/") + "/telegram",
                secret_token=settings.telegram.webhook_secret,
                allowed_updates=ALLOWED_UPDATES,
            )
            return None
    except TelegramError as exc:
        problem = type(exc).__name__
        fail(f"telegram: cannot start ({problem}); check [telegram] token and api_base_url")
    return asyncio.create_task(poll(app, channel, stop))


def check_port(host: str, port: int) -> None:
    """Fail before anything starts if the address is taken (uvicorn would exit mid-start)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            fail(f"cannot listen on {host}:{port} ({exc.strerror}); set [server] port")


class _Server(uvicorn.Server):
    """uvicorn, minus its own signal handling: it re-raises SIGTERM after shutting down,
    which would end the process with -15 instead of a clean 0. `run` stops it instead."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    def stop(self) -> None:
        if self.should_exit:
            self.force_exit = True  # a second Ctrl-C stops without waiting for connections
        self.should_exit = True

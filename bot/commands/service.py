"""Running the service: ``run`` (web server + scheduler; the server is in web_server.py),
``worker`` (scheduler only), ``chat`` (be a console patient)."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import signal
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy.engine import make_url

from bot import logs
from bot.app.conversations.inbox import Inbound
from bot.app.operator import database as database_admin
from bot.app.operator import patients
from bot.app.operator.refusals import Refused
from bot.app.outbox.takeover import release_dead_leases
from bot.bootstrap import App, build
from bot.commands import demo
from bot.commands.common import database_problem, fail, refuse, state
from bot.config import Settings
from bot.domain.errors import NotFound
from scheduler.loop import courier, on_stop_signal, start_scheduler, stop_scheduler, tick


def register(app: typer.Typer) -> None:
    app.command("run")(run)
    app.command("worker")(worker)
    app.command("chat")(chat)
    app.command("demo")(demo.demo)


def run(ctx: typer.Context) -> None:
    """Run the web server and the scheduler in one process, until SIGTERM or Ctrl-C."""
    settings = state(ctx).settings()
    logs.configure(logging.INFO)
    asyncio.run(_serve(settings))


def worker(ctx: typer.Context) -> None:
    """Run the scheduler only, without the web server, until SIGTERM or Ctrl-C: plan
    protocols, start due check-ins, remind, expire, escalate alerts, deliver the outbox.
    On PostgreSQL run as many workers as you like (they claim different rows); on SQLite
    one process schedules (`run` included), and a second one refuses to start."""
    settings = state(ctx).settings()
    logs.configure(logging.INFO)
    asyncio.run(_work(settings))


async def _work(settings: Settings) -> None:
    await _require_schema(settings)
    with _scheduler_lock(settings.database_url):
        app = build(settings)
        await release_dead_leases(app.db, app.clock)  # SQLite: the lock's last holder is gone
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        handler = on_stop_signal(app, stop.set)  # a second one cuts the grace short
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, handler)
        logging.getLogger("checkin").info(
            "worker ticking every %gs; Ctrl-C to stop", settings.scheduler.tick_s
        )
        try:
            async with courier(app):
                scheduler = start_scheduler(app)
                try:
                    await stop.wait()
                finally:
                    stop_scheduler(app, scheduler)
        finally:
            await app.close()


async def _require_schema(settings: Settings) -> None:
    if database_admin.missing_sqlite_file(settings.database_url):
        fail("the database file does not exist: run `checkin db upgrade` first")
    try:
        current = await database_admin.schema_is_current(settings.database_url)
    except Exception as exc:  # unreachable server, bad URL, unreadable file
        fail(database_problem(exc, settings.database_url))
    if not current:
        fail("the database schema is not up to date: run `checkin db upgrade` first")


@contextlib.contextmanager
def _scheduler_lock(url: str) -> Iterator[None]:
    """SQLite: hold ``<database>.scheduler.lock`` so a second scheduling process refuses to
    start (SQLite has no row locks to share work with). PostgreSQL: nothing to hold."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        yield
        return
    path = Path(f"{parsed.database}.scheduler.lock")
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fail(
                f"another process is already scheduling on {parsed.database}; one scheduler "
                "per SQLite file (use PostgreSQL for several workers)"
            )
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


async def _serve(settings: Settings) -> None:
    from bot.commands import web_server  # uvicorn, Starlette, the webhooks: `run` only

    web_server.check_port(settings.server.host, settings.server.port)
    await _require_schema(settings)
    with _scheduler_lock(settings.database_url):
        await web_server.serve(settings)


def chat(
    ctx: typer.Context,
    patient_id: Annotated[int, typer.Argument(help="A console patient's id.")],
) -> None:
    """Talk to the bot as a console patient: type replies, read its messages. Queued
    check-ins for this patient start at once. End with Ctrl-D."""
    settings = state(ctx).settings()
    asyncio.run(_chat(settings, patient_id))


async def _chat(settings: Settings, patient_id: int) -> None:
    app = build(settings)
    try:
        address = await _console_address(app, patient_id)
        await tick(app)
        while True:
            if sys.stdin.isatty():
                print("you> ", end="", flush=True)
            line = await asyncio.to_thread(sys.stdin.readline)
            if not line:
                break
            inbound = Inbound("console", uuid.uuid4().hex, address, line.rstrip("\n"), app.clock())
            await app.services.inbox.handle_inbound(inbound)
            await tick(app)
    finally:
        await app.close()


async def _console_address(app: App, patient_id: int) -> str:
    try:
        return await patients.console_address(app.db, patient_id)
    except (NotFound, Refused) as exc:
        refuse(exc)

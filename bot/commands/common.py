"""What every command shares: the global options, one-line errors, JSON output."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError, ProgrammingError, StatementError

from bot.bootstrap import App, build
from bot.config import Settings, load_settings
from bot.domain.errors import CheckinError
from bot.instruments import Catalog, load_catalog
from bot.storage.crypto import installed_ring
from bot.storage.database import Database
from bot.storage.keys import key_source
from bot.storage.rotation import encrypted_data_exists

T = TypeVar("T")

JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON document instead of text.")]


@dataclass
class State:
    config: Path | None = None

    def settings(self) -> Settings:
        return load_settings(self.config)

    def catalog(self) -> Catalog:
        return load_catalog(self.settings().instruments_dirs)


def state(ctx: typer.Context) -> State:
    obj = ctx.find_root().obj
    return obj if isinstance(obj, State) else State()


def fail(message: str, code: int = 2) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def emit_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def with_app(ctx: typer.Context, work: Callable[[App], Awaitable[T]]) -> T:
    """Build the application from the configuration, run `work`, close it."""
    settings = state(ctx).settings()

    async def run() -> T:
        app = build(settings)
        try:
            problem = await key_problem(settings, app.db)
            if problem is not None:
                fail(problem)
            return await work(app)
        finally:
            await app.close()

    try:
        return asyncio.run(run())
    except (OperationalError, ProgrammingError, OSError) as exc:
        fail(database_problem(exc, settings.database_url))
    except StatementError as exc:  # a value that could not be encrypted or decrypted
        if isinstance(exc.orig, CheckinError):
            fail(str(exc.orig))
        raise
    except ValueError as exc:  # an unsupported database URL
        if "database url" in str(exc):
            fail(f"{settings.source}: database.url: {exc}")
        raise


def database_problem(exc: BaseException, url: str) -> str:
    """One line saying what is wrong with the database and how to fix it."""
    message = str(getattr(exc, "orig", exc) or exc).lower()
    if "no such table" in message or ("does not exist" in message and "relation" in message):
        return "the database has no schema yet: run `checkin db upgrade` first"
    where = make_url(url).render_as_string(hide_password=True)
    return f"cannot use the database at {where} ({type(getattr(exc, 'orig', exc)).__name__})"


async def key_problem(settings: Settings, db: Database) -> str | None:
    """Why this process cannot read or write the encrypted columns (one line), or None."""
    if installed_ring() is not None:
        return None
    source = key_source(settings)
    where = f" (expected at {source.where})" if source is not None else ""
    try:
        sealed = await encrypted_data_exists(db)
    except (OperationalError, ProgrammingError, OSError):
        sealed = False  # the database problem is reported where it is used
    if sealed:
        return (
            f"the database holds encrypted data but no key is available{where}: restore the key "
            "file from your backup, or set CHECKIN_ENCRYPTION_KEY"
        )
    return (
        f"no encryption key{where}: run `checkin db upgrade` (on SQLite it creates one), or set "
        "CHECKIN_ENCRYPTION_KEY or [security] key_file"
    )

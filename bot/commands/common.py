"""What every command shares: the global options, one-line errors (a use case's refusal
included), JSON output, and running a use case against the configured application."""

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

from bot.app.operator.keys import key_problem
from bot.app.operator.refusals import Refused
from bot.bootstrap import App, build
from bot.config import Settings, load_settings
from bot.domain.errors import CheckinError, NotFound
from bot.instruments import Catalog, load_catalog

T = TypeVar("T")

JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON document instead of text.")]

# Where an operator looks up the ids of each kind of record a use case may not find.
SEE = {
    "patient": "checkin patient list",
    "clinician": "checkin clinician list",
    "check-in": "checkin checkins list",
    "alert": "checkin alerts",
    "inbound message": "checkin inbound list",
    "treatment session": "checkin treatment list",
}


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


def refuse(exc: CheckinError, where: str = "") -> NoReturn:
    """Fail with a use case's refusal, after `where` (the option it is about); a record not
    found also says where to look its id up."""
    see = SEE.get(exc.kind) if isinstance(exc, NotFound) else None
    fail(f"{where}{exc}; see `{see}`" if see else f"{where}{exc}")


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


def run_use_case(ctx: typer.Context, work: Callable[[App], Awaitable[T]]) -> T:
    """`with_app`, a record not found or a refused request failing in one line."""
    try:
        return with_app(ctx, work)
    except (NotFound, Refused) as exc:
        refuse(exc)


def database_problem(exc: BaseException, url: str) -> str:
    """One line saying what is wrong with the database and how to fix it."""
    message = str(getattr(exc, "orig", exc) or exc).lower()
    if "no such table" in message or ("does not exist" in message and "relation" in message):
        return "the database has no schema yet: run `checkin db upgrade` first"
    where = make_url(url).render_as_string(hide_password=True)
    return f"cannot use the database at {where} ({type(getattr(exc, 'orig', exc)).__name__})"

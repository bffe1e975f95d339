"""``checkin db upgrade``: create the database schema or bring it up to date."""

from __future__ import annotations

import asyncio

import typer
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from bot.app.operator import database as database_admin
from bot.commands.common import database_problem, fail, state

db_app = typer.Typer(help="Create or upgrade the database schema.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(db_app, name="db")


@db_app.command("upgrade")
def db_upgrade(ctx: typer.Context) -> None:
    """Create the schema, or bring it up to date; safe to run again."""
    settings = state(ctx).settings()
    url = settings.database_url
    try:
        upgraded = asyncio.run(database_admin.upgrade(settings))
    except ValueError as exc:
        fail(f"{settings.source}: database.url: {exc}")
    except (OperationalError, OSError) as exc:
        fail(database_problem(exc, url))
    typer.echo(f"database at revision {upgraded.revision}: {_safe_url(url)}")
    if upgraded.key_file_created is not None:
        typer.echo(
            f"created the encryption key file {upgraded.key_file_created} (mode 0600): back it "
            "up apart from the database; without it the names, numbers and messages cannot be "
            "read"
        )
    elif not upgraded.key_configured:
        typer.echo(
            "no encryption key yet: set CHECKIN_ENCRYPTION_KEY or [security] key_file before "
            "`checkin run` (make a key with `checkin keys generate`)"
        )


def _safe_url(url: str) -> str:
    """The URL without a password, fit to print."""
    return make_url(url).render_as_string(hide_password=True)

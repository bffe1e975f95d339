"""``checkin config check``: validate everything the service reads, report every problem."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from bot.app.operator import config_check
from bot.commands.common import JsonFlag, emit_json, state
from bot.rendering.renderer import TEMPLATES_DIR

config_app = typer.Typer(help="Check the configuration before starting the service.")


def register(app: typer.Typer) -> None:
    app.add_typer(config_app, name="config", no_args_is_help=True)


@config_app.command("check")
def check(
    ctx: typer.Context,
    templates: Annotated[
        Path,
        typer.Option(help="The template directory to check (e.g. an edited copy)."),
    ] = TEMPLATES_DIR,
    as_json: JsonFlag = False,
) -> None:
    """Check the configuration file, instruments, protocols, alert rules and templates
    together. Prints every problem with its file and key; exit status 1 if there is any.
    Warnings (a configuration that loads but is probably not meant) go to stderr and do
    not change the exit status. --json: {"problems": [...], "warnings": [...]}."""
    if not templates.is_dir():
        typer.echo(f"error: --templates {templates} is not a directory", err=True)
        raise typer.Exit(2)
    report = config_check.check(state(ctx).config, templates)
    if as_json:
        emit_json(
            {
                "problems": [asdict(p) for p in report.problems],
                "warnings": [asdict(w) for w in report.warnings],
            }
        )
    else:
        for problem in report.problems:
            typer.echo(problem.line())
        for warning in report.warnings:
            typer.echo(f"warning: {warning.line()}", err=True)
        for note in report.notes:
            typer.echo(f"note: {note}", err=True)
        if not report.problems:
            typer.echo(
                f"OK: configuration, {report.instruments} instruments, "
                f"{report.protocols} protocols, {report.templates} templates"
            )
        else:
            count = len(report.problems)
            typer.echo(f"{count} problem{'' if count == 1 else 's'}", err=True)
    if report.problems:
        raise typer.Exit(1)

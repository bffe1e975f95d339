"""``checkin patient import FILE.csv``: enrol many patients at once, every row checked
first (bot/app/operator/imports.py has the columns and the rules)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from bot.app.operator import imports
from bot.app.operator.refusals import Refused
from bot.bootstrap import App
from bot.commands.common import JsonFlag, emit_json, fail, refuse, state, with_app
from bot.commands.patients import patient_app
from bot.commands.views import echo_invitation, invitation_json
from bot.domain.errors import NotFound

PROGRESS_FROM = 50  # rows: a shorter file is done before a counter would help


def register(app: typer.Typer) -> None:
    patient_app.command("import")(patient_import)


def patient_import(
    ctx: typer.Context,
    file: Annotated[
        Path,
        typer.Argument(
            help="CSV with a header: name, channel (required); timezone, language, clinician, "
            "protocol, phone, address, external_id (optional).",
            exists=True,
            dir_okay=False,
            readable=True,
        ),
    ],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Check every row and report; enrol no one.")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Enrol the patients of a CSV file. Every row is checked first: any problem is listed
    by line number and nothing is enrolled. A row whose external_id was imported before is
    left alone, so importing a file again enrols no one twice. Progress goes to stderr."""
    try:
        with file.open(newline="", encoding="utf-8-sig") as fh:
            rows = imports.read_rows(fh)
    except UnicodeDecodeError:
        fail(f"{file}: not UTF-8 text; save the sheet as CSV UTF-8")
    except imports.ImportRefused as exc:
        _refused(exc, as_json)
    settings = state(ctx).settings()
    enabled = {"console": True, "telegram": settings.telegram.enabled,
               "sms": settings.sms.enabled, "whatsapp": settings.whatsapp.enabled}  # fmt: skip
    rules = imports.ImportRules(
        frozenset(settings.protocols), frozenset(c for c, on in enabled.items() if on),
        lambda number: _e164(number, settings.sms.default_region),
    )  # fmt: skip

    async def work(app: App) -> imports.ImportResult:
        return await imports.import_patients(
            app.db, app.clock, rows, rules, app.invitations(), app.services, app.planner,
            dry_run=dry_run, progress=_progress,
        )  # fmt: skip

    try:
        result = with_app(ctx, work)
    except imports.ImportRefused as exc:
        _refused(exc, as_json)
    except (NotFound, Refused) as exc:
        refuse(exc)
    _report(result, as_json)


def _e164(number: str, region: str) -> str:
    from bot.channels.sms import e164  # twilio's phonenumbers: loaded for SMS rows only

    return e164(number, region)  # InvalidNumber is a ValueError


def _progress(done: int, total: int) -> None:
    """A counter on stderr (never stdout, which may carry --json)."""
    if total >= PROGRESS_FROM:
        typer.echo(f"\rrows {done}/{total}", err=True, nl=done >= total)


def _refused(exc: imports.ImportRefused, as_json: bool) -> NoReturn:
    if as_json:
        emit_json({"errors": [{"line": p.line, "problem": p.problem} for p in exc.problems]})
    for p in exc.problems:
        typer.echo(f"error: line {p.line}: {p.problem}", err=True)
    fail(str(exc))


def _report(result: imports.ImportResult, as_json: bool) -> None:
    rows = [_row_json(r) for r in result.rows]
    if as_json:
        emit_json({"dry_run": result.dry_run, "created": result.created,
                   "existing": result.existing, "rows": rows})  # fmt: skip
        return
    verb = "would enrol" if result.dry_run else "enrolled"
    typer.echo(f"{verb} {result.created} patient(s); {result.existing} imported before, left alone")
    for row in rows:
        if "enroll_link" in row:
            typer.echo(f"line {row['line']}: patient {row['id']}")
            echo_invitation(row)


def _row_json(row: imports.ImportedRow) -> dict[str, Any]:
    data: dict[str, Any] = {"line": row.line, "id": row.patient_id, "existing": row.existing}
    if row.external_id is not None:
        data["external_id"] = row.external_id
    if row.invited:
        data["invited"] = True
    return data | invitation_json(row.invitation)

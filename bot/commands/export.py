"""``checkin export``: the record as CSV files or a FHIR R4 Bundle."""

from __future__ import annotations

import sys
from datetime import UTC, date, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from bot.app.operator import audit_log, patients
from bot.bootstrap import App
from bot.commands.common import JsonFlag, emit_json, fail, refuse, with_app
from bot.domain.errors import NotFound
from bot.outputs import exports


class Format(StrEnum):
    csv = "csv"
    fhir = "fhir"


def register(app: typer.Typer) -> None:
    app.command("export")(export)


def export(
    ctx: typer.Context,
    format_: Annotated[
        Format,
        typer.Option("--format", help="csv: answers.csv and scores.csv; fhir: one R4 Bundle."),
    ],
    out: Annotated[
        Path,
        typer.Option(help="csv: a directory (created if missing); fhir: the JSON file to write."),
    ],
    patient: Annotated[
        int | None, typer.Option("--patient", help="Only this patient's records.")
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            help="Only records from this UTC date or time on (2026-05-01 or 2026-05-01T09:00)."
        ),
    ] = None,
    include_identifiers: Annotated[
        bool,
        typer.Option(
            "--include-identifiers",
            help="fhir: add Patient resources with name and phone/chat (default: pseudonymous).",
        ),
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Export answers and scores for analysis or another health record. Files are written
    owner-readable only (0600); progress goes to stderr."""
    selection = exports.Selection(patient_id=patient, since=_since(since))
    if include_identifiers and format_ is Format.csv:
        fail("--include-identifiers is for --format fhir; the CSV files carry patient ids only")
    if format_ is Format.fhir and out.is_dir():
        fail(f"--out {out} is a directory; --format fhir writes one file, e.g. --out export.json")
    if format_ is Format.fhir and not out.parent.is_dir():
        fail(f"--out {out}: the directory {out.parent} does not exist")
    if format_ is Format.csv and out.exists() and not out.is_dir():
        fail(f"--out {out} is a file; --format csv writes answers.csv and scores.csv into a dir")

    async def work(app: App) -> exports.Counts:
        if patient is not None:
            try:
                await patients.find(app.db, patient)
            except NotFound as exc:
                refuse(exc)
        if format_ is Format.csv:
            counts = await exports.export_csv(
                app.db, app.catalog, out, selection, progress=_progress
            )
        else:
            counts = await exports.export_fhir(
                app.db, app.catalog, out, selection,
                include_identifiers=include_identifiers, now=app.clock(), progress=_progress,
            )  # fmt: skip
        await audit_log.record_export(
            app.db, app.clock, patient_id=patient, format_=format_.value,
            identifiers=include_identifiers,
        )  # fmt: skip
        return counts

    counts = with_app(ctx, work)
    _report(format_, out, counts, as_json)


def _since(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        fail(f"--since {text!r} is not a date or time like 2026-05-01 or 2026-05-01T09:00")
    if len(text) == 10:  # a plain date: from its midnight, UTC
        moment = datetime.combine(date.fromisoformat(text), datetime.min.time())
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _progress(what: str, done: int, total: int) -> None:
    """A counter on stderr (never stdout, which may carry --json)."""
    if total <= exports.PAGE_SIZE:
        return
    end = "\n" if done >= total else "\r"
    print(f"{what}: {done}/{total}", end=end, file=sys.stderr, flush=True)


def _report(format_: Format, out: Path, counts: exports.Counts, as_json: bool) -> None:
    data: dict[str, Any] = {"format": format_.value, "out": str(out)}
    if format_ is Format.csv:
        data |= {"answers": counts.answers, "scores": counts.scores}
    else:
        data |= {
            "questionnaire_responses": counts.questionnaire_responses,
            "observations": counts.observations,
            "patients": counts.patients,
        }
    if as_json:
        emit_json(data)
        return
    if format_ is Format.csv:
        typer.echo(f"{counts.answers} answers and {counts.scores} scores written to {out}")
    else:
        typer.echo(
            f"{counts.questionnaire_responses} questionnaire responses and "
            f"{counts.observations} observations written to {out}"
        )

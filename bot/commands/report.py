"""`checkin report`: a patient's series report as one self-contained HTML file."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from bot.bootstrap import App
from bot.commands.common import JsonFlag, emit_json, fail, with_app
from bot.domain.errors import NotFound

if TYPE_CHECKING:
    from bot.outputs.report import Report


def register(app: typer.Typer) -> None:
    app.command("report")(report)


def report(
    ctx: typer.Context,
    patient_id: Annotated[int, typer.Argument(help="Patient id.")],
    out: Annotated[Path, typer.Option("--out", help="The file to write, e.g. p17.html.")],
    format_: Annotated[
        str,
        typer.Option(
            "--format",
            help="Only html is supported: one self-contained page (chart inline) that prints "
            "well; use the browser's Print to PDF for a PDF.",
        ),
    ] = "html",
    as_json: JsonFlag = False,
) -> None:
    """Write a patient's series report: baseline, the scores around each treatment session,
    response / remission / non-response / reliable change, side-effect flags, alerts and the
    trend chart. The file is readable by its owner only (mode 0600); the writing is audited."""
    from bot.outputs import (
        report as series,  # matplotlib: loaded by this command only, not by `run`
    )

    if format_ not in series.FORMATS:
        fail(f"--format {format_!r} is not supported; use --format html (print it to PDF)")
    if out.is_dir():
        fail(f"--out {out} is a directory; give a file name, e.g. --out {out / 'report.html'}")
    if not out.parent.is_dir():
        fail(f"--out {out}: the directory {out.parent} does not exist")

    async def work(app: App) -> Report:
        try:
            return await series.write_report(
                app.db, app.catalog, patient_id, out, app.clock(), actor="operator"
            )
        except NotFound as exc:
            fail(f"{exc}; see `checkin patient list`")

    written = with_app(ctx, work)
    data: dict[str, Any] = {
        "id": patient_id,
        "out": str(out),
        "format": format_,
        "sessions": len(written.sessions),
        "instruments": [o.instrument for o in written.outcomes],
        "alerts": len(written.alerts),
        "chart": written.chart_png is not None,
        "scores": sum(o.count for o in written.outcomes),
    }
    if as_json:
        emit_json(data)
    else:
        typer.echo(f"report for patient {patient_id} written to {out}")
        if not data["scores"]:
            typer.echo(
                f"note: patient {patient_id} has no valid scores yet: the report shows no "
                "outcomes and no trend",
                err=True,
            )

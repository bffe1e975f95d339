"""The audit trail: list events, and verify that the hash chain is unbroken."""

from __future__ import annotations

import re
from typing import Annotated, Any

import typer

from bot.app.operator import audit_log
from bot.app.operator.audit_log import AuditEntry, ChainReport
from bot.bootstrap import App
from bot.commands.common import JsonFlag, emit_json, fail, with_app

audit_app = typer.Typer(
    help="Read and verify the tamper-evident audit trail.", no_args_is_help=True
)
_SUBJECT = re.compile(r"^[a-z_]+:\S+$")


def register(app: typer.Typer) -> None:
    app.add_typer(audit_app, name="audit")


@audit_app.command("verify")
def audit_verify(
    ctx: typer.Context,
    page_size: Annotated[int, typer.Option(min=1, help="Events read per transaction.")] = 1000,
    as_json: JsonFlag = False,
) -> None:
    """Walk the whole chain in order; exit 1 and name the first broken event if any.

    Keep the printed head (id and hash) somewhere else: a later walk that ends before it
    means the newest events were removed."""

    def progress(checked: int) -> None:
        typer.echo(f"checked {checked} events...", err=True)

    async def work(app: App) -> ChainReport:
        return await audit_log.verify(app.db, page_size=page_size, progress=progress)

    report = with_app(ctx, work)
    if as_json:
        emit_json(_report_json(report))
    elif report.ok:
        head = f"head event {report.head_id} {report.head_hash}" if report.head_id else "empty"
        typer.echo(f"audit trail intact: {report.checked} events; {head}")
    else:
        typer.echo(
            f"audit trail BROKEN at event {report.broken_id}: {report.problem}; "
            f"the {report.checked} events before it are intact"
        )
    if not report.ok:
        raise typer.Exit(1)


def _report_json(report: ChainReport) -> dict[str, Any]:
    return {
        "ok": report.ok,
        "checked": report.checked,
        "head_id": report.head_id,
        "head_hash": report.head_hash,
        "broken_id": report.broken_id,
        "problem": report.problem or None,
    }


@audit_app.command("list")
def audit_list(
    ctx: typer.Context,
    subject: Annotated[
        str | None, typer.Option(help="Only events about this, e.g. patient:12 or clinician:3.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="How many of the newest events.")] = 50,
    as_json: JsonFlag = False,
) -> None:
    """List the newest audit events, oldest first (the listing is itself audited)."""
    if subject is not None and not _SUBJECT.match(subject):
        fail(f"--subject {subject!r} must look like patient:12 or clinician:3")

    async def work(app: App) -> list[AuditEntry]:
        return await audit_log.newest(app.db, app.clock, subject=subject, limit=limit)

    rows = with_app(ctx, work)
    if as_json:
        emit_json([_event_json(row) for row in rows])
        return
    for row in rows:
        detail = " ".join(f"{k}={v}" for k, v in sorted(row.detail.items()))
        at = row.at.isoformat(timespec="seconds")
        typer.echo(f"{row.id:>6}  {at}  {row.actor:<9} {row.action:<20} {row.subject}  {detail}")


def _event_json(row: AuditEntry) -> dict[str, Any]:
    return {
        "id": row.id,
        "at": row.at.isoformat(),
        "actor": row.actor,
        "action": row.action,
        "subject": row.subject,
        "detail": row.detail,
        "hash": row.hash,
    }

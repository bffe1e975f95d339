"""``checkin schedule protocols|assign|preview``: what a patient is asked when. The
protocols come from the configuration; assigning one re-plans the patient's check-ins not
sent yet, at once (reported as bot/commands/treatments.py reports a session's change)."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Annotated, Any

import typer

from bot.app.operator import schedules as schedule_admin
from bot.app.operator.refusals import NoProtocol
from bot.app.operator.treatments import Replanned
from bot.bootstrap import App
from bot.commands.common import JsonFlag, emit_json, fail, state
from bot.commands.treatments import PatientId, report, run_or_fail
from bot.commands.views import warn_no_wording
from bot.domain.schedule import (
    Calendar,
    EnrollmentRelative,
    Protocol,
    SessionRelative,
    format_duration,
)

schedule_app = typer.Typer(
    help="Protocols: list them, assign one to a patient, preview what it plans.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    app.add_typer(schedule_app, name="schedule")


@schedule_app.command("protocols")
def schedule_protocols(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """List the configured protocols and their rules."""
    protocols = state(ctx).settings().protocols
    data = [_protocol_json(p) for p in protocols.values()]
    if as_json:
        emit_json(data)
        return
    for p in data:
        typer.echo(f"{p['name']}: {p['description']}")
        for r in p["rules"]:
            typer.echo(f"  {r['name']:<16} {r['when']:<34} {', '.join(r['instruments'])}")


@schedule_app.command("assign")
def schedule_assign(
    ctx: typer.Context,
    patient_id: PatientId,
    protocol: Annotated[
        str, typer.Argument(help="Protocol name (see `schedule protocols`), or 'none'.")
    ],
    as_json: JsonFlag = False,
) -> None:
    """Give a patient a protocol (or 'none'); check-ins not yet sent are planned again."""
    name = None if protocol == "none" else protocol

    async def work(app: App) -> Replanned:
        return await schedule_admin.assign(app.planner, patient_id, name)

    change = run_or_fail(ctx, work)
    warn_no_wording(patient_id, None, change.no_wording)
    report(change, f"now on {protocol}", as_json)


@schedule_app.command("preview")
def schedule_preview(
    ctx: typer.Context,
    patient_id: PatientId,
    from_: Annotated[
        str | None,
        typer.Option("--from", help="First day, YYYY-MM-DD, from local midnight (default: today)."),
    ] = None,
    days: Annotated[int, typer.Option(min=1, max=366, help="How many days to show.")] = 14,
    protocol: Annotated[
        str | None, typer.Option(help="Preview this protocol instead of the patient's own.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """List the check-ins the patient's protocol plans, with local and UTC times, rule and
    instruments. Check-ins sharing a bundle are asked as one conversation. Those that will
    not be sent say why ([COMPLETED], [SATISFIED], ...), and a note says why a time moved
    (quiet hours, a moved session)."""
    start_day = _day(from_) if from_ is not None else None

    async def work(app: App) -> list[dict[str, Any]]:
        bundle_window = timedelta(minutes=app.settings.scheduler.bundle_window_min)
        try:
            return await schedule_admin.preview_plan(
                app.db, app.clock, app.planner, patient_id,
                clinic=app.settings.clinic, bundle_window=bundle_window,
                protocol=protocol, start_day=start_day, days=days,
            )  # fmt: skip
        except NoProtocol as exc:
            fail(
                f"{exc}; give one with `checkin schedule assign {patient_id} NAME` or preview "
                "with --protocol"
            )

    rows = run_or_fail(ctx, work, see=True)
    if as_json:
        emit_json(rows)
        return
    if not rows:
        typer.echo("nothing planned in those days")
    _print_rows(rows)
    for r in rows:  # after the list, so the list reads as before
        for text in r["recall_notes"]:
            typer.echo(f"note: {r['due_at_local'][:16].replace('T', ' ')}: {text}", err=True)


def _print_rows(rows: list[dict[str, Any]]) -> None:
    for r in rows:
        together = "" if r["bundle"] == r["key"] else f"  (with {r['bundle']})"
        unasked = (
            f"  [NOT ASKED, no wording: {', '.join(r['no_wording'])}]" if r["no_wording"] else ""
        )
        status = "" if r["status"] == "planned" else f"  [{r['status'].upper()}]"
        note = f"\n{'':>37}{r['note']}" if r["note"] else ""
        local, utc = (r[k][:16].replace("T", " ") for k in ("due_at_local", "due_at_utc"))
        typer.echo(
            f"{local}  {utc}Z  {r['rule']:<16} {'+'.join(r['instruments'])}{together}{unasked}"
            f"{status}{note}"
        )


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        fail(f"--from {text!r} is not a date like 2026-03-09")


def _protocol_json(protocol: Protocol) -> dict[str, Any]:
    rules = []
    for rule in protocol.rules:
        timing = rule.timing
        if isinstance(timing, EnrollmentRelative):
            when = f"enrollment {format_duration(timing.offset)}"
        elif isinstance(timing, SessionRelative):
            when = f"each session {format_duration(timing.offset)}"
            if timing.max_session is not None:
                when += f" (1-{timing.max_session})"
        else:
            assert isinstance(timing, Calendar)
            days = ",".join(
                ("mon", "tue", "wed", "thu", "fri", "sat", "sun")[d]
                for d in sorted(timing.weekdays)
            )
            when = f"{days} {timing.at_local:%H:%M} local"
        rules.append(
            {
                "name": rule.name,
                "when": when,
                "instruments": list(rule.instruments),
                "reminder_after": format_duration(rule.reminder_after)
                if rule.reminder_after
                else None,
                "max_reminders": rule.max_reminders,
                "expires_after": format_duration(rule.expires_after),
                "quiet_hours": rule.quiet_policy,
            }
        )
    return {"name": protocol.name, "description": protocol.description, "rules": rules}

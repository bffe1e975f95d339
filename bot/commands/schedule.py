"""Treatment sessions and schedules: what an operator records, and what the protocol plans.

``checkin treatment add|move|cancel|list`` record the series; every change re-plans the
patient's check-ins that have not been sent yet, at once. ``checkin schedule protocols``,
``assign`` and ``preview`` show and set what a patient is asked when.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import typer

from bot.app.planning import Change, preview, sessions_of
from bot.bootstrap import App
from bot.commands.common import JsonFlag, emit_json, fail, state, with_app
from bot.domain.errors import CheckinError
from bot.domain.schedule import (
    Calendar,
    EnrollmentRelative,
    Protocol,
    SessionRelative,
    format_duration,
)
from bot.storage.repository import Repository
from bot.storage.tables import Checkin, TreatmentSession

treatment_app = typer.Typer(
    help="Record a patient's treatment sessions (infusions, doses); check-ins follow them.",
    no_args_is_help=True,
)
schedule_app = typer.Typer(
    help="Protocols: list them, assign one to a patient, preview what it plans.",
    no_args_is_help=True,
)

PatientId = Annotated[int, typer.Argument(help="Patient id (see `checkin patient list`).")]
SessionId = Annotated[int, typer.Argument(help="Treatment session id (see `treatment list`).")]
At = Annotated[
    str,
    typer.Option(
        "--at",
        help="When: ISO 8601, e.g. 2026-03-09T10:00 (the patient's local time) or "
        "2026-03-09T15:00Z / +01:00 (that instant).",
    ),
]


def register(app: typer.Typer) -> None:
    app.add_typer(treatment_app, name="treatment")
    app.add_typer(schedule_app, name="schedule")


# ---- treatment ----------------------------------------------------------------------------


@treatment_app.command("add")
def treatment_add(
    ctx: typer.Context,
    patient_id: PatientId,
    at: At,
    kind: Annotated[
        str, typer.Option(help="What is given, e.g. ketamine-iv, esketamine-nasal.")
    ] = "treatment",
    as_json: JsonFlag = False,
) -> None:
    """Record a treatment session. Sessions are numbered 1, 2, ... in time order; the
    protocol's check-ins before and after each session are planned at once."""

    async def work(app: App) -> Change:
        zone = await _zone_of(app, patient_id)
        return await app.planner.add_session(patient_id, _instant(at, zone), kind)

    _report(ctx, work, "added", as_json)


@treatment_app.command("move")
def treatment_move(
    ctx: typer.Context, session_id: SessionId, at: At, as_json: JsonFlag = False
) -> None:
    """Move a session to a new time; its check-ins move with it (those already sent stay)."""

    async def work(app: App) -> Change:
        async with app.db.transaction() as session:
            row = await session.get(TreatmentSession, session_id)
        if row is None:
            fail(f"no treatment session with id {session_id}; see `checkin treatment list`")
        zone = await _zone_of(app, row.patient_id)
        return await app.planner.move_session(session_id, _instant(at, zone))

    _report(ctx, work, "moved", as_json)


@treatment_app.command("cancel")
def treatment_cancel(ctx: typer.Context, session_id: SessionId, as_json: JsonFlag = False) -> None:
    """Cancel a session that will not happen; its check-ins not yet sent are cancelled and
    later sessions are renumbered. (To reschedule, use `move`.)"""

    async def work(app: App) -> Change:
        return await app.planner.cancel_session(session_id)

    _report(ctx, work, "cancelled", as_json)


@treatment_app.command("list")
def treatment_list(ctx: typer.Context, patient_id: PatientId, as_json: JsonFlag = False) -> None:
    """List a patient's treatment sessions (cancelled ones too), in time order."""

    async def work(app: App) -> list[dict[str, Any]]:
        zone = await _zone_of(app, patient_id)
        async with app.db.transaction() as session:
            rows = await sessions_of(session, patient_id)
            await Repository(session).audit(
                app.clock(), "operator", "treatment_listed", f"patient:{patient_id}"
            )
        return [_session_json(r, zone) for r in rows]

    rows = _run(ctx, work)
    if as_json:
        emit_json(rows)
        return
    if not rows:
        typer.echo("no treatment sessions recorded")
    for r in rows:
        number = "cancelled" if r["cancelled_at"] else f"#{r['number']}"
        typer.echo(f"{r['id']:>5}  {number:<10} {r['at_local'][:16]}  {r['kind']}")


# ---- schedule -----------------------------------------------------------------------------


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

    async def work(app: App) -> Change:
        return await app.planner.assign(patient_id, name)

    _report(ctx, work, f"now on {protocol}", as_json)


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
    instruments. Check-ins sharing a bundle are asked as one conversation."""
    start_day = _day(from_) if from_ is not None else None

    async def work(app: App) -> list[dict[str, Any]]:
        async with app.db.transaction() as session:
            repo = Repository(session)
            patient = await repo.get_patient(patient_id)
            if patient is None:
                fail(f"no patient with id {patient_id}; see `checkin patient list`")
            name = protocol or patient.protocol
            if name is None:
                fail(
                    f"patient {patient_id} has no protocol; give one with "
                    f"`checkin schedule assign {patient_id} NAME` or preview with --protocol"
                )
            chosen = app.planner.protocol(name)
            sessions = await sessions_of(session, patient_id)
            await repo.audit(app.clock(), "operator", "schedule_previewed", f"patient:{patient_id}")
        day = start_day or app.clock().astimezone(ZoneInfo(patient.timezone)).date()
        return preview(
            chosen,
            patient,
            sessions,
            start_day=day,
            days=days,
            clinic=app.settings.clinic,
            bundle_window=timedelta(minutes=app.settings.scheduler.bundle_window_min),
        )

    rows = _run(ctx, work)
    if as_json:
        emit_json(rows)
        return
    if not rows:
        typer.echo("nothing planned in those days")
    for r in rows:
        together = "" if r["bundle"] == r["key"] else f"  (with {r['bundle']})"
        typer.echo(
            f"{r['due_at_local'][:16].replace('T', ' ')}  {r['due_at_utc'][11:16]}Z  "
            f"{r['rule']:<16} {'+'.join(r['instruments'])}{together}"
        )


# ---- helpers ------------------------------------------------------------------------------


def _run(ctx: typer.Context, work: Any) -> Any:
    try:
        return with_app(ctx, work)
    except CheckinError as exc:
        fail(str(exc))


def _report(ctx: typer.Context, work: Any, verb: str, as_json: bool) -> None:
    change: Change = _run(ctx, work)
    data: dict[str, Any] = {
        "cancelled_checkins": change.cancelled,
        "planned_checkins": [_planned_json(c) for c in change.planned],
    }
    if change.session is not None:
        data["session"] = _session_json(change.session, None)
    if as_json:
        emit_json(data)
        return
    what = (
        f"session {change.session.id} (#{change.session.number})"
        if change.session is not None
        else "patient"
    )
    typer.echo(
        f"{what} {verb}: {change.cancelled} planned check-in(s) cancelled, "
        f"{len(change.planned)} planned"
    )
    for c in data["planned_checkins"]:
        typer.echo(f"  check-in {c['id']}: {'+'.join(c['instruments'])} due {c['due_at']}")


async def _zone_of(app: App, patient_id: int) -> ZoneInfo:
    async with app.db.transaction() as session:
        patient = await Repository(session).get_patient(patient_id)
    if patient is None:
        fail(f"no patient with id {patient_id}; see `checkin patient list`")
    return ZoneInfo(patient.timezone)


def _instant(text: str, zone: ZoneInfo) -> datetime:
    """An ISO 8601 time; without an offset it is the patient's local time."""
    try:
        parsed = datetime.fromisoformat(text.strip().replace("z", "Z"))
    except ValueError:
        fail(f"--at {text!r} is not an ISO 8601 time like 2026-03-09T10:00 or 2026-03-09T15:00Z")
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=zone)
    return parsed


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        fail(f"--from {text!r} is not a date like 2026-03-09")


def _session_json(row: TreatmentSession, zone: ZoneInfo | None) -> dict[str, Any]:
    return {
        "id": row.id,
        "patient_id": row.patient_id,
        "number": row.number,
        "kind": row.kind,
        "at": row.at.isoformat(),
        "at_local": row.at.astimezone(zone).isoformat() if zone else row.at.isoformat(),
        "cancelled_at": row.cancelled_at.isoformat() if row.cancelled_at else None,
    }


def _planned_json(checkin: Checkin) -> dict[str, Any]:
    return {
        "id": checkin.id,
        "instruments": checkin.instruments,
        "due_at": checkin.due_at.isoformat(),
        "expires_at": checkin.expires_at.isoformat(),
    }


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
            }
        )
    return {"name": protocol.name, "description": protocol.description, "rules": rules}

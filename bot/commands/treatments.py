"""``checkin treatment add|move|cancel|list``: a patient's treatment sessions. Every change
re-plans the patient's check-ins that have not been sent yet, at once; the change is
reported the same way by ``checkin schedule assign``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import typer

from bot.app.operator import treatments
from bot.app.operator.treatments import PlannedView, Replanned, SessionView, UnreadableTime
from bot.bootstrap import App
from bot.commands.common import JsonFlag, emit_json, fail, refuse, with_app
from bot.domain.dosing import BadDose, Dose, read_dose
from bot.domain.errors import CheckinError, NotFound

T = TypeVar("T")

treatment_app = typer.Typer(
    help="Record a patient's treatment sessions (infusions, doses); check-ins follow them.",
    no_args_is_help=True,
)

PatientId = Annotated[int, typer.Argument(help="Patient id (see `checkin patient list`).")]
SessionId = Annotated[int, typer.Argument(help="Treatment session id (see `treatment list`).")]
At = Annotated[
    str,
    typer.Option(
        "--at",
        help="When: ISO 8601, e.g. 2026-03-09T10:00 (the patient's local time) or "
        "2026-03-09T15:00Z / +01:00 (that instant). A local time the clock skips becomes "
        "the moment the gap ends; one it shows twice, its first showing.",
    ),
]
ROUTE_HELP = (
    "What was given: ketamine-iv, ketamine-im (dose in mg/kg), esketamine-in "
    "(56 or 84 mg; 28 where the label allows), other (any unit with --unit)."
)
Route = Annotated[str | None, typer.Option("--route", help=ROUTE_HELP)]
DoseAmount = Annotated[
    str | None, typer.Option("--dose", help="The dose in the route's unit, e.g. 0.5 or 84.")
]
Unit = Annotated[
    str | None,
    typer.Option("--unit", help="The dose's unit, for --route other: mg, mg/kg, mcg, mcg/kg, ml."),
]


def register(app: typer.Typer) -> None:
    app.add_typer(treatment_app, name="treatment")


@treatment_app.command("add")
def treatment_add(
    ctx: typer.Context,
    patient_id: PatientId,
    at: At,
    kind: Annotated[
        str, typer.Option(help="What is given, e.g. ketamine-iv, esketamine-nasal.")
    ] = "treatment",
    route: Route = None,
    dose: DoseAmount = None,
    unit: Unit = None,
    as_json: JsonFlag = False,
) -> None:
    """Record a treatment session, with its route and dose when known (or later with
    `treatment dose`). Sessions are numbered 1, 2, ... in time order; the protocol's
    check-ins before and after each session are planned at once."""
    given = _dose(route, dose, unit)

    async def work(app: App) -> Replanned:
        return await treatments.add_session(app.db, app.planner, patient_id, at, kind, given)

    report(run_or_fail(ctx, work, see=True), "added", as_json)


@treatment_app.command("dose")
def treatment_dose(
    ctx: typer.Context,
    session_id: SessionId,
    route: Annotated[str, typer.Option("--route", help=ROUTE_HELP)],
    dose: DoseAmount = None,
    unit: Unit = None,
    as_json: JsonFlag = False,
) -> None:
    """Record or correct what a session gave: its route and dose (audited)."""
    given = _dose(route, dose, unit)
    assert given is not None

    async def work(app: App) -> SessionView:
        return await treatments.set_dose(app.db, app.clock, session_id, given, "operator")

    row = session_json(run_or_fail(ctx, work, see=True))
    if as_json:
        emit_json(row)
        return
    typer.echo(
        f"session {row['id']} (#{row['number']}): {row['route']} {row['dose_text']}".rstrip()
    )


def _dose(route: str | None, amount: str | None, unit: str | None) -> Dose | None:
    """The options as a checked dose; a bad one is a one-line error naming the option."""
    if route is None:
        if amount is not None or unit is not None:
            fail("--dose and --unit need --route (ketamine-iv, ketamine-im, esketamine-in, other)")
        return None
    try:
        return read_dose(route, amount, unit)
    except BadDose as exc:
        fail(f"--route/--dose: {exc}")


@treatment_app.command("move")
def treatment_move(
    ctx: typer.Context, session_id: SessionId, at: At, as_json: JsonFlag = False
) -> None:
    """Move a session to a new time; its check-ins move with it (those already sent stay)."""

    async def work(app: App) -> Replanned:
        return await treatments.move_session(app.db, app.planner, session_id, at)

    report(run_or_fail(ctx, work, see=True), "moved", as_json)


@treatment_app.command("cancel")
def treatment_cancel(ctx: typer.Context, session_id: SessionId, as_json: JsonFlag = False) -> None:
    """Cancel a session that will not happen; its check-ins not yet sent are cancelled and
    later sessions are renumbered. (To reschedule, use `move`.)"""

    async def work(app: App) -> Replanned:
        return await treatments.cancel_session(app.planner, session_id)

    report(run_or_fail(ctx, work), "cancelled", as_json)


@treatment_app.command("list")
def treatment_list(ctx: typer.Context, patient_id: PatientId, as_json: JsonFlag = False) -> None:
    """List a patient's treatment sessions (cancelled ones too), in time order."""

    async def work(app: App) -> list[SessionView]:
        return await treatments.list_sessions(app.db, app.clock, patient_id)

    rows = [session_json(s) for s in run_or_fail(ctx, work, see=True)]
    if as_json:
        emit_json(rows)
        return
    if not rows:
        typer.echo("no treatment sessions recorded")
    for r in rows:
        number = "cancelled" if r["cancelled_at"] else f"#{r['number']}"
        given = f"  {r['dose_text']}" if r["dose_text"] else ""
        typer.echo(f"{r['id']:>5}  {number:<10} {r['at_local'][:16]}  {r['kind']}{given}")


def run_or_fail(ctx: typer.Context, work: Callable[[App], Awaitable[T]], see: bool = False) -> T:
    """`with_app`, any refusal a one-line error; with `see`, a record not found says where
    to look its id up."""
    try:
        return with_app(ctx, work)
    except UnreadableTime as exc:
        fail(
            f"--at {exc.text!r} is not an ISO 8601 time like 2026-03-09T10:00 or 2026-03-09T15:00Z"
        )
    except NotFound as exc:
        if see:
            refuse(exc)
        fail(str(exc))
    except CheckinError as exc:
        fail(str(exc))


def report(change: Replanned, verb: str, as_json: bool) -> None:
    """What a change did to the plan: the session, check-ins cancelled and planned."""
    if change.at_note is not None:
        typer.echo(f"note: {change.at_note}", err=True)
    data: dict[str, Any] = {
        "cancelled_checkins": change.cancelled,
        "planned_checkins": [_planned_json(c) for c in change.planned],
    }
    if change.session is not None:
        data["session"] = session_json(change.session)
        data["at_note"] = change.at_note  # what a skipped or repeated local --at became
    else:  # a protocol given: which of its instruments the patient cannot be asked
        data["no_wording"] = list(change.no_wording)
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


def session_json(row: SessionView) -> dict[str, Any]:
    return {
        "id": row.id,
        "patient_id": row.patient_id,
        "number": row.number,
        "kind": row.kind,
        "at": row.at.isoformat(),
        "at_local": row.at_local.isoformat(),
        "cancelled_at": row.cancelled_at.isoformat() if row.cancelled_at else None,
        "route": row.route,
        "dose": row.dose,
        "dose_unit": row.dose_unit,
        "dose_text": row.dose_text,
    }


def _planned_json(checkin: PlannedView) -> dict[str, Any]:
    return {
        "id": checkin.id,
        "instruments": list(checkin.instruments),
        "due_at": checkin.due_at.isoformat(),
        "expires_at": checkin.expires_at.isoformat(),
    }

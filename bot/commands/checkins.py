"""``checkin ask`` queues a check-in by hand; ``checkin checkins`` looks through check-ins
and cancels one that should not go ahead."""

from __future__ import annotations

from typing import Annotated

import typer

from bot.app.operator import checkins as checkin_admin
from bot.app.operator.views import CHECKIN_STATUSES, CheckinView
from bot.bootstrap import App
from bot.commands.common import JsonFlag, emit_json, fail, refuse, run_use_case, with_app
from bot.commands.views import checkin_json
from bot.domain.errors import CheckinError, NotFound

checkins_app = typer.Typer(
    help="List check-ins and cancel planned or open ones.", no_args_is_help=True
)


def register(app: typer.Typer) -> None:
    app.add_typer(checkins_app, name="checkins")


def ask(
    ctx: typer.Context,
    patient_id: Annotated[int, typer.Argument(help="Patient id.")],
    instruments: Annotated[
        list[str], typer.Argument(help="One or more instrument keys, asked in this order.")
    ],
    now: Annotated[
        bool, typer.Option("--now", help="Send even during the patient's quiet hours.")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Queue a check-in for now; the running service sends it within one tick (after the
    patient's quiet hours end, unless --now)."""

    async def work(app: App) -> checkin_admin.Queued:
        try:
            return await checkin_admin.queue(
                app.db, app.clock, app.services, patient_id, instruments, ignore_quiet_hours=now
            )
        except CheckinError as exc:
            fail(str(exc))

    queued = with_app(ctx, work)
    if queued.patient_status != "active":
        typer.echo(
            f"note: patient {patient_id} is {queued.patient_status}; the check-in waits until "
            "they are active",
            err=True,
        )
    if as_json:
        emit_json(checkin_json(queued.checkin))
    else:
        typer.echo(f"check-in {queued.checkin.id} queued: {' + '.join(instruments)}")


@checkins_app.command("list")
def checkins_list(
    ctx: typer.Context,
    patient: Annotated[int | None, typer.Option(help="Only this patient's check-ins.")] = None,
    status: Annotated[
        str | None,
        typer.Option(help=f"Only check-ins in this status: {', '.join(CHECKIN_STATUSES)}."),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many, latest due first.")] = 100,
    as_json: JsonFlag = False,
) -> None:
    """List check-ins (id, patient, instruments, status, when due), latest due first."""
    if status is not None and status not in CHECKIN_STATUSES:
        fail(f"--status {status!r} is not one of {', '.join(CHECKIN_STATUSES)}")

    async def work(app: App) -> list[CheckinView]:
        return await checkin_admin.list_checkins(
            app.db, patient_id=patient, status=status, limit=limit
        )

    try:
        rows = with_app(ctx, work)
    except NotFound as exc:
        refuse(exc, "--patient: ")
    if as_json:
        emit_json([{"patient_id": c.patient_id} | checkin_json(c) for c in rows])
        return
    for c in rows:
        typer.echo(
            f"{c.id:>6}  patient {c.patient_id:<5} {'+'.join(c.instruments):<22} "
            f"{c.status:<11} due {c.due_at.isoformat()[:16]}"
        )


@checkins_app.command("cancel")
def checkins_cancel(
    ctx: typer.Context,
    checkin_id: Annotated[int, typer.Argument(help="Check-in id (see `checkin checkins list`).")],
    as_json: JsonFlag = False,
) -> None:
    """Cancel a check-in that is planned or under way. The patient is told nothing: a planned
    one is simply never sent; in an open one no further question or reminder comes, the
    answers given so far are kept, and a later reply is treated like any message outside a
    check-in."""

    async def work(app: App) -> str:
        return await checkin_admin.cancel(app.db, app.clock, checkin_id)

    was = run_use_case(ctx, work)
    if as_json:
        emit_json({"id": checkin_id, "status": "cancelled", "was": was})
    else:
        typer.echo(f"check-in {checkin_id} cancelled (it was {was})")

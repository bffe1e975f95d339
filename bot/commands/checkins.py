"""`checkin checkins`: look through check-ins and cancel one that should not go ahead."""

from __future__ import annotations

from typing import Annotated

import typer
from sqlmodel import col, select

from bot.bootstrap import App
from bot.commands.common import JsonFlag, emit_json, fail, with_app
from bot.commands.records import _checkin_json
from bot.storage import checkins as q
from bot.storage.repository import Repository
from bot.storage.tables import CHECKIN_STATUSES, Checkin

checkins_app = typer.Typer(
    help="List check-ins and cancel planned or open ones.", no_args_is_help=True
)
CANCELLABLE = ("pending", "sent", "in_progress", "paused")  # not yet finished


def register(app: typer.Typer) -> None:
    app.add_typer(checkins_app, name="checkins")


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

    async def work(app: App) -> list[Checkin]:
        statement = select(Checkin).order_by(col(Checkin.due_at).desc(), col(Checkin.id).desc())
        if patient is not None:
            statement = statement.where(Checkin.patient_id == patient)
        if status is not None:
            statement = statement.where(Checkin.status == status)
        async with app.db.transaction() as session:
            if patient is not None and await Repository(session).get_patient(patient) is None:
                fail(f"--patient: no patient with id {patient}; see `checkin patient list`")
            return list((await session.exec(statement.limit(limit))).all())

    rows = with_app(ctx, work)
    if as_json:
        emit_json([{"patient_id": c.patient_id} | _checkin_json(c) for c in rows])
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
        async with app.db.transaction() as session:
            repo = Repository(session)
            found = await repo.get_checkin(checkin_id)
            if found is None:
                fail(f"no check-in with id {checkin_id}; see `checkin checkins list`")
            await repo.lock_patient(found.patient_id)  # as the services do: one writer each
            await session.refresh(found)
            was = found.status
            if was not in CANCELLABLE:
                fail(f"check-in {checkin_id} is {was}; only {', '.join(CANCELLABLE)} ones cancel")
            found.status, found.next_reminder_at, found.lease_until = "cancelled", None, None
            await repo.add(found)
            await q.release_held(session, found.patient_id)
            subject = f"patient:{found.patient_id}"
            await repo.audit(
                app.clock(), "operator", "checkin_cancelled", subject, checkin=checkin_id, was=was
            )
            return was

    was = with_app(ctx, work)
    if as_json:
        emit_json({"id": checkin_id, "status": "cancelled", "was": was})
    else:
        typer.echo(f"check-in {checkin_id} cancelled (it was {was})")

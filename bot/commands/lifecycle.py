"""The course of care: pause and resume a patient, discharge one, erase one, and run the
retention policy."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from bot.app.operator import patients, retention
from bot.bootstrap import App
from bot.commands.common import JsonFlag, emit_json, fail, run_use_case, state, with_app
from bot.commands.patients import patient_app
from bot.domain.errors import CheckinError

retention_app = typer.Typer(
    help="Erase patients discharged longer ago than retention.delete_after_days.",
    no_args_is_help=True,
)
PatientId = Annotated[int, typer.Argument(help="Patient id.")]


def register(app: typer.Typer) -> None:
    patient_app.command("pause")(patient_pause)
    patient_app.command("resume")(patient_resume)
    patient_app.command("discharge")(patient_discharge)
    patient_app.command("delete")(patient_delete)
    app.add_typer(retention_app, name="retention")


def patient_pause(ctx: typer.Context, patient_id: PatientId, as_json: JsonFlag = False) -> None:
    """Pause an active patient's check-ins (e.g. a hospital stay): nothing is sent or planned
    while paused. Check-ins already planned are kept and wait; one the patient is answering
    right now may still be finished. Undo with `checkin patient resume`."""
    _change_status(ctx, patient_id, "paused", as_json)


def patient_resume(ctx: typer.Context, patient_id: PatientId, as_json: JsonFlag = False) -> None:
    """Resume a paused patient: their protocol is planned again from now, and check-ins that
    waited go out at the next tick (those that expired meanwhile are not sent)."""
    _change_status(ctx, patient_id, "active", as_json)


def _change_status(ctx: typer.Context, patient_id: int, to: str, as_json: bool) -> None:
    change = patients.pause if to == "paused" else patients.resume

    async def work(app: App) -> None:
        await change(app.db, app.clock, patient_id)

    run_use_case(ctx, work)
    if as_json:
        emit_json({"id": patient_id, "status": to})
    else:
        typer.echo(f"patient {patient_id} {to if to == 'paused' else 'resumed'}")


def patient_discharge(ctx: typer.Context, patient_id: PatientId, as_json: JsonFlag = False) -> None:
    """End a patient's care: no more check-ins (those not finished are cancelled); their
    records are erased retention.delete_after_days later."""

    async def work(app: App) -> int:
        try:
            return await retention.discharge(app.db, patient_id, app.clock(), actor="operator")
        except CheckinError as exc:
            fail(f"{exc}; see `checkin patient list`")

    cancelled = with_app(ctx, work)
    if as_json:
        emit_json({"id": patient_id, "status": "discharged", "cancelled_checkins": cancelled})
    else:
        typer.echo(f"patient {patient_id} discharged; {cancelled} check-ins cancelled")


def patient_delete(
    ctx: typer.Context,
    patient_id: PatientId,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Erase a patient now: name, number or chat id and every message to or from them.
    Their scores stay, de-identified, when retention.keep_deidentified_scores is true;
    otherwise everything about them is deleted. This cannot be undone."""
    keep = _settings_keep(ctx)
    kept = "keeping de-identified scores" if keep else "deleting their scores too"
    if not yes and not typer.confirm(f"Erase patient {patient_id} ({kept})? This cannot be undone"):
        fail("nothing erased (pass --yes to erase without this question)", code=1)

    async def work(app: App) -> retention.Erasure:
        try:
            return await retention.erase(
                app.db, patient_id, app.clock(), keep_scores=keep, actor="operator"
            )
        except CheckinError as exc:
            fail(f"{exc}; see `checkin patient list`")

    erasure = with_app(ctx, work)
    if as_json:
        emit_json(_erasure_json(erasure))
    else:
        typer.echo(
            f"patient {patient_id} erased ({kept}); {erasure.inbound_deleted} messages from "
            f"and {erasure.outbound_deleted} messages to or about them deleted"
        )


def _settings_keep(ctx: typer.Context) -> bool:
    return state(ctx).settings().retention.keep_deidentified_scores


def _erasure_json(erasure: retention.Erasure) -> dict[str, Any]:
    return {
        "id": erasure.patient_id,
        "erased": True,
        "kept_scores": erasure.kept_scores,
        "inbound_deleted": erasure.inbound_deleted,
        "outbound_deleted": erasure.outbound_deleted,
    }


@retention_app.command("run")
def retention_run(
    ctx: typer.Context,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only list who is due; erase nothing.")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Erase every patient discharged longer ago than retention.delete_after_days (the
    running service does this on its own; this runs it now)."""

    async def work(app: App) -> retention.PurgeReport:
        policy = app.settings.retention
        return await retention.purge_due(app.db, policy, app.clock, dry_run=dry_run)

    report = with_app(ctx, work)
    if as_json:
        emit_json({"dry_run": dry_run, "due": list(report.due), "erased": list(report.erased)})
        return
    ids = ", ".join(map(str, report.due)) or "none"
    verb = "due for erasure" if dry_run else "erased"
    typer.echo(f"{len(report.due)} patients {verb}: {ids}")

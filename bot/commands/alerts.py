"""`checkin alerts`: list alerts, acknowledge one, resolve one. Every step is audited; a
crisis alert (and a suicidality or red-flag alert at any level) is resolved only by a
clinician (``--by``)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import typer

from bot.app.operator import alerts as alert_admin
from bot.app.operator.alerts import AlertView, Outcome
from bot.bootstrap import App
from bot.commands.common import JsonFlag, emit_json, fail, run_use_case

alerts_app = typer.Typer(
    help="List clinician alerts; acknowledge or resolve one.", invoke_without_command=True
)

AlertId = Annotated[int, typer.Argument(help="The alert's id (see `checkin alerts`).")]
By = Annotated[
    int | None,
    typer.Option("--by", help="The clinician who did it (see `checkin clinician list`)."),
]


def register(app: typer.Typer) -> None:
    app.add_typer(alerts_app, name="alerts")


@alerts_app.callback()
def alerts_list(
    ctx: typer.Context,
    open_only: Annotated[
        bool, typer.Option("--open", help="Only unresolved alerts (open or acknowledged).")
    ] = False,
    patient: Annotated[int | None, typer.Option("--patient", help="Only this patient's.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """List alerts, newest first. UNROUTED marks an alert nobody could be told about;
    UNDELIVERED one whose notice the provider refused for good (told to the next in line)."""
    if ctx.invoked_subcommand is not None:
        return

    async def work(app: App) -> list[AlertView]:
        return await alert_admin.list_alerts(
            app.db, app.clock, open_only=open_only, patient_id=patient
        )

    data = [_alert_json(a) for a in run_use_case(ctx, work)]
    if as_json:
        emit_json(data)
        return
    if not data:
        typer.echo("no alerts")
    for a in data:
        flag = f"  UNROUTED x{a['unrouted']}" if a["unrouted"] else ""
        flag += f"  UNDELIVERED x{a['undelivered']}" if a["undelivered"] else ""
        typer.echo(
            f"{a['id']:>4}  {a['level'].upper():<8} {a['status']:<12} {a['code']}  "
            f"patient {a['patient_id']} ({a['patient']})  {a['rule']}  "
            f"{a['created_at'][:16]}{flag}"
        )


def _alert_json(alert: AlertView) -> dict[str, Any]:
    def when(value: datetime | None) -> str | None:
        return value.isoformat() if value is not None else None

    return {
        "id": alert.id,
        "patient_id": alert.patient_id,
        "patient": alert.patient,
        "rule": alert.rule,
        "level": alert.level,
        "status": alert.status,
        "code": alert.code,
        "detail": alert.detail,
        "created_at": when(alert.created_at),
        "ack_deadline": when(alert.ack_deadline),
        "acknowledged_by": alert.acknowledged_by,
        "acknowledged_at": when(alert.acknowledged_at),
        "resolved_by": alert.resolved_by,
        "resolved_at": when(alert.resolved_at),
        "escalations": alert.escalations,
        "occurrences": alert.occurrences,
        "notified": list(alert.notified),
        "unrouted": alert.unrouted,
        "undelivered": alert.undelivered,
        "clinician_only": alert.clinician_only,
    }


@alerts_app.command("ack")
def alerts_ack(ctx: typer.Context, alert_id: AlertId, by: By = None) -> None:
    """Acknowledge an alert: its reminders and escalation stop."""

    async def work(app: App) -> Outcome:
        return await alert_admin.acknowledge(app.db, app.clock, app.services, alert_id, by)

    outcome = run_use_case(ctx, work)
    if not outcome.done:
        typer.echo(f"alert {alert_id} is already {outcome.status}; nothing changed")
        return
    typer.echo(f"alert {alert_id} acknowledged ({outcome.code}); reminders for it stop")


@alerts_app.command("resolve")
def alerts_resolve(ctx: typer.Context, alert_id: AlertId, by: By = None) -> None:
    """Close an alert. Crisis, suicidality and red-flag alerts need --by CLINICIAN_ID."""

    async def work(app: App) -> Outcome:
        return await alert_admin.resolve(app.db, app.clock, app.services, alert_id, by)

    outcome = run_use_case(ctx, work)
    if not outcome.done:  # refused, and the refusal audited
        fail(
            f"alert {alert_id} is a {outcome.level} {outcome.rule} alert: only a clinician "
            "resolves it; add --by CLINICIAN_ID (see `checkin clinician list`)"
        )
    typer.echo(f"alert {alert_id} resolved ({outcome.code})")

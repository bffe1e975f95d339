"""`checkin alerts`: list alerts, acknowledge one, resolve one. Every step is audited; a
crisis alert (and a suicidality or red-flag alert at any level) is resolved only by a
clinician (``--by``)."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.bootstrap import App
from bot.commands.common import JsonFlag, emit_json, fail, with_app
from bot.domain.alerts import OPERATOR, AlertState, clinician, clinician_only
from bot.storage.alerts import UNRESOLVED, state_of, unrouted_counts
from bot.storage.repository import Repository
from bot.storage.tables import Alert, Clinician, Patient

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
    """List alerts, newest first. UNROUTED marks an alert nobody could be told about."""
    if ctx.invoked_subcommand is not None:
        return

    async def work(app: App) -> list[dict[str, Any]]:
        async with app.db.transaction() as session:
            statement = select(Alert, Patient).join(
                Patient, col(Patient.id) == col(Alert.patient_id)
            )
            if open_only:
                statement = statement.where(col(Alert.status).in_(UNRESOLVED))
            if patient is not None:
                statement = statement.where(Alert.patient_id == patient)
            order = (col(Alert.created_at).desc(), col(Alert.id).desc())
            found = (await session.exec(statement.order_by(*order))).all()
            unrouted = await unrouted_counts(session, [a.id for a, _ in found if a.id is not None])
            subject = f"patient:{patient}" if patient is not None else "alerts"
            await Repository(session).audit(app.clock(), "operator", "alerts_listed", subject)
        return [_alert_json(a, p, unrouted[a.id or 0]) for a, p in found]

    data = with_app(ctx, work)
    if as_json:
        emit_json(data)
        return
    if not data:
        typer.echo("no alerts")
    for a in data:
        flag = f"  UNROUTED x{a['unrouted']}" if a["unrouted"] else ""
        typer.echo(
            f"{a['id']:>4}  {a['level'].upper():<8} {a['status']:<12} {a['code']}  "
            f"patient {a['patient_id']} ({a['patient']})  {a['rule']}  "
            f"{a['created_at'][:16]}{flag}"
        )


def _alert_json(alert: Alert, patient: Patient, unrouted: int) -> dict[str, Any]:
    def when(value: Any) -> str | None:
        return value.isoformat() if value is not None else None

    return {
        "id": alert.id,
        "patient_id": alert.patient_id,
        "patient": patient.display_name,
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
        "escalations": alert.escalation_count,
        "occurrences": alert.occurrences,
        "notified": list(alert.recipients),
        "unrouted": unrouted,
        "clinician_only": clinician_only(state_of(alert)),
    }


@alerts_app.command("ack")
def alerts_ack(ctx: typer.Context, alert_id: AlertId, by: By = None) -> None:
    """Acknowledge an alert: its reminders and escalation stop."""

    async def work(app: App) -> tuple[bool, Alert]:
        async with app.db.transaction() as session:
            row = await _alert(session, alert_id, by)
            assert app.services.alerting is not None
            done = await app.services.alerting.acknowledge(
                Repository(session), row, by, app.clock()
            )
            return done, row

    done, row = with_app(ctx, work)
    if not done:
        typer.echo(f"alert {alert_id} is already {row.status}; nothing changed")
        return
    typer.echo(f"alert {alert_id} acknowledged ({row.code}); reminders for it stop")


@alerts_app.command("resolve")
def alerts_resolve(ctx: typer.Context, alert_id: AlertId, by: By = None) -> None:
    """Close an alert. Crisis, suicidality and red-flag alerts need --by CLINICIAN_ID."""

    async def work(app: App) -> tuple[AlertState, Alert]:
        async with app.db.transaction() as session:
            row = await _alert(session, alert_id, by)
            before = state_of(row)
            actor = clinician(by) if by is not None else OPERATOR
            assert app.services.alerting is not None
            await app.services.alerting.resolve(Repository(session), row, actor, app.clock())
            return before, row

    before, row = with_app(ctx, work)
    if row.status != "resolved":  # refused, and the refusal audited
        fail(
            f"alert {alert_id} is a {before.level} {before.rule} alert: only a clinician "
            "resolves it; add --by CLINICIAN_ID (see `checkin clinician list`)"
        )
    typer.echo(f"alert {alert_id} resolved ({row.code})")


async def _alert(session: AsyncSession, alert_id: int, by: int | None) -> Alert:
    row = await session.get(Alert, alert_id)
    if row is None:
        fail(f"no alert with id {alert_id}; see `checkin alerts`")
    if by is not None and await session.get(Clinician, by) is None:
        fail(f"no clinician with id {by}; see `checkin clinician list`")
    if row.status == "resolved":
        fail(f"alert {alert_id} is already resolved; nothing to do")
    return row

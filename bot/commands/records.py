"""Records an operator manages: the database schema, clinicians, patients, check-ins."""

from __future__ import annotations

import asyncio
import zoneinfo
from datetime import timedelta
from typing import Annotated, Any

import typer
from sqlalchemy.exc import OperationalError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from telegram.error import TelegramError

from bot.app.enrollment import enrollment_link, issue_code
from bot.bootstrap import App
from bot.channels.telegram import TelegramChannel
from bot.commands.common import JsonFlag, database_problem, emit_json, fail, state, with_app
from bot.domain.errors import CheckinError
from bot.rendering.renderer import LANGUAGES
from bot.storage import migrate
from bot.storage.keys import key_source
from bot.storage.repository import Repository
from bot.storage.tables import CHANNELS, PATIENT_STATUSES, Checkin, Clinician, Patient

db_app = typer.Typer(help="Create or upgrade the database schema.", no_args_is_help=True)
patient_app = typer.Typer(help="Enrol and look up patients.", no_args_is_help=True)
clinician_app = typer.Typer(help="Add and list clinicians.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(db_app, name="db")
    app.add_typer(patient_app, name="patient")
    app.add_typer(clinician_app, name="clinician")
    app.command("ask")(ask)


@db_app.command("upgrade")
def db_upgrade(ctx: typer.Context) -> None:
    """Create the schema, or bring it up to date; safe to run again."""
    settings = state(ctx).settings()
    url = settings.database_url
    try:
        created = asyncio.run(migrate.upgrade_with_keys(settings))
    except ValueError as exc:
        fail(f"{settings.source}: database.url: {exc}")
    except (OperationalError, OSError) as exc:
        fail(database_problem(exc, url))
    typer.echo(f"database at revision {migrate.head_revision()}: {_safe_url(url)}")
    if created is not None:
        typer.echo(
            f"created the encryption key file {created} (mode 0600): back it up apart from the "
            "database; without it the names, numbers and messages cannot be read"
        )
    elif key_source(settings) is None:
        typer.echo(
            "no encryption key yet: set CHECKIN_ENCRYPTION_KEY or [security] key_file before "
            "`checkin run` (make a key with `checkin keys generate`)"
        )


def _safe_url(url: str) -> str:
    """The URL without a password, fit to print."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


Channel = Annotated[str, typer.Option(help=f"How to reach them: {', '.join(CHANNELS)}.")]


@patient_app.command("add")
def patient_add(
    ctx: typer.Context,
    name: Annotated[str, typer.Option(help="Display name (or a pseudonym) shown to clinicians.")],
    channel: Channel,
    timezone: Annotated[str, typer.Option(help="IANA time zone, e.g. America/New_York.")] = "UTC",
    language: Annotated[str, typer.Option(help=f"Language: {', '.join(LANGUAGES)}.")] = "en",
    clinician: Annotated[int | None, typer.Option(help="Responsible clinician's id.")] = None,
    protocol: Annotated[str | None, typer.Option(help="Schedule protocol name.")] = None,
    address: Annotated[
        str | None, typer.Option(help="Console channel only: the name the patient types as.")
    ] = None,
    phone: Annotated[
        str | None, typer.Option(help="SMS: the patient's mobile number (E.164, or national).")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Enrol a patient. Console patients are active at once; Telegram patients get a
    single-use link; SMS patients get an invitation and become active when they reply YES."""
    _check_patient_options(name, channel, timezone, language)
    protocols = state(ctx).settings().protocols
    if protocol is not None and protocol not in protocols:
        known = ", ".join(sorted(protocols)) or "none configured"
        fail(
            f"--protocol: no protocol {protocol!r} (known: {known}); "
            "see `checkin schedule protocols`"
        )
    number = _phone(ctx, channel, phone)

    async def work(app: App) -> dict[str, Any]:
        async with app.db.transaction() as session:
            repo = Repository(session)
            if clinician is not None and await session.get(Clinician, clinician) is None:
                fail(f"no clinician with id {clinician}; see `checkin clinician list`")
            patient = Patient(
                display_name=name,
                timezone=timezone,
                language=language,
                channel=channel,
                clinician_id=clinician,
                protocol=protocol,
                status="active" if channel == "console" else "invited",
                address=number,
            )
            await repo.add(patient)
            if channel == "console":
                patient.address = address or f"patient-{patient.id}"
                await repo.add(patient)
            await repo.audit(app.clock(), "operator", "patient_added", f"patient:{patient.id}")
            invite = (
                await _invite(app, session, patient_id=patient.id) if channel == "telegram" else {}
            )
        if channel == "sms" and patient.id is not None:
            await app.services.consent.invite(patient.id)  # the only message before they reply YES
            invite = {"invited": True}
        return _patient_json(patient) | invite

    data = with_app(ctx, work)
    if as_json:
        emit_json(data)
        return
    typer.echo(f"patient {data['id']} added ({data['channel']}, {data['status']})")
    _echo_invite(data)


async def _invite(
    app: App,
    session: AsyncSession,
    *,
    patient_id: int | None = None,
    clinician_id: int | None = None,
) -> dict[str, Any]:
    """A single-use Telegram enrolment code and its deep link."""
    telegram = app.settings.telegram
    channel = app.channels.get("telegram")
    if not telegram.enabled or not isinstance(channel, TelegramChannel):
        fail("telegram is not configured: set [telegram] token (or CHECKIN_TELEGRAM_TOKEN)")
    username = telegram.bot_username or await _bot_username(channel)
    ttl = timedelta(minutes=telegram.enroll_ttl_min)
    code, expires_at = await issue_code(
        session, app.clock(), ttl, patient_id=patient_id, clinician_id=clinician_id
    )
    return {
        "enroll_code": code,
        "enroll_link": enrollment_link(username, code),
        "enroll_expires_at": expires_at.isoformat(),
    }


async def _bot_username(channel: TelegramChannel) -> str:
    try:
        await channel.start()
    except TelegramError as exc:
        problem = type(exc).__name__
        fail(f"telegram: cannot reach the Bot API ({problem}); set [telegram] bot_username")
    return channel.bot.username


def _echo_invite(data: dict[str, Any]) -> None:
    if "enroll_link" in data:
        typer.echo(f"enrolment link (single use, until {data['enroll_expires_at'][:16]} UTC):")
        typer.echo(f"  {data['enroll_link']}")


def _phone(ctx: typer.Context, channel: str, phone: str | None) -> str | None:
    """The E.164 number for an SMS patient or clinician (and SMS must be configured)."""
    if channel != "sms":
        if phone is not None:
            fail("--phone is for --channel sms")
        return None
    settings = state(ctx).settings()
    if not settings.sms.enabled:
        fail("sms is not configured: set [sms] account_sid, auth_token and from_number")
    if not phone:
        fail("--channel sms needs --phone NUMBER")
    from bot.channels.sms import InvalidNumber, e164  # twilio: loaded for SMS numbers only

    try:
        return e164(phone, settings.sms.default_region)
    except InvalidNumber as exc:
        fail(f"--phone {exc}")


def _check_patient_options(name: str, channel: str, timezone: str, language: str) -> None:
    if not name.strip():
        fail("--name must not be empty")
    if channel not in CHANNELS:
        fail(f"--channel {channel!r} is not one of {', '.join(CHANNELS)}")
    if language not in LANGUAGES:
        fail(f"--language {language!r} is not one of {', '.join(LANGUAGES)}")
    try:
        zoneinfo.ZoneInfo(timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        fail(f"--timezone {timezone!r} is not an IANA time zone (e.g. Europe/Madrid)")


def _patient_json(patient: Patient) -> dict[str, Any]:
    return {
        "id": patient.id,
        "name": patient.display_name,
        "channel": patient.channel,
        "status": patient.status,
        "timezone": patient.timezone,
        "language": patient.language,
        "clinician_id": patient.clinician_id,
        "protocol": patient.protocol,
    }


@patient_app.command("invite")
def patient_invite(
    ctx: typer.Context,
    patient_id: Annotated[int, typer.Argument(help="Patient id.")],
    as_json: JsonFlag = False,
) -> None:
    """Issue a new single-use enrolment link (Telegram), e.g. when the first one expired."""

    async def work(app: App) -> dict[str, Any]:
        async with app.db.transaction() as session:
            patient = await Repository(session).get_patient(patient_id)
            if patient is None:
                fail(f"no patient with id {patient_id}; see `checkin patient list`")
            if patient.channel != "telegram":
                fail(
                    f"patient {patient_id} uses {patient.channel}; enrolment links are for Telegram"
                )
            invite = await _invite(app, session, patient_id=patient_id)
            await Repository(session).audit(
                app.clock(), "operator", "enrolment_link_issued", f"patient:{patient_id}"
            )
            return {"id": patient_id} | invite

    data = with_app(ctx, work)
    if as_json:
        emit_json(data)
    else:
        _echo_invite(data)


@patient_app.command("show")
def patient_show(
    ctx: typer.Context,
    patient_id: Annotated[int, typer.Argument(help="Patient id.")],
    as_json: JsonFlag = False,
) -> None:
    """Show a patient with their check-ins, scores and alerts."""

    async def work(app: App) -> dict[str, Any]:
        async with app.db.transaction() as session:
            repo = Repository(session)
            patient = await repo.get_patient(patient_id)
            if patient is None:
                fail(f"no patient with id {patient_id}; see `checkin patient list`")
            checkins = await repo.checkins_for_patient(patient_id)
            scores = await repo.scores_for_patient(patient_id)
            alerts = await repo.alerts_for_patient(patient_id)
            await repo.audit(app.clock(), "operator", "patient_viewed", f"patient:{patient_id}")
        return _patient_json(patient) | {
            "checkins": [_checkin_json(c) for c in checkins],
            "scores": [
                {
                    "instrument": s.instrument,
                    "total": s.total,
                    "band": s.band,
                    "valid": s.valid,
                    "prorated": s.prorated,
                    "flags": s.flags,
                    "completed_at": s.completed_at.isoformat(),
                }
                for s in scores
            ],
            "alerts": [
                {"id": a.id, "rule": a.rule, "level": a.level, "status": a.status} for a in alerts
            ],
        }

    data = with_app(ctx, work)
    if as_json:
        emit_json(data)
        return
    typer.echo(f"patient {data['id']}: {data['name']} ({data['channel']}, {data['status']})")
    for c in data["checkins"]:
        typer.echo(
            f"  check-in {c['id']}: {'+'.join(c['instruments'])} {c['status']} due {c['due_at']}"
        )
    for s in data["scores"]:
        total = s["total"] if s["total"] is not None else "no total"
        typer.echo(f"  {s['completed_at'][:16]} {s['instrument']}: {total} {s['band'] or ''}")


def _checkin_json(checkin: Checkin) -> dict[str, Any]:
    return {
        "id": checkin.id,
        "instruments": checkin.instruments,
        "status": checkin.status,
        "due_at": checkin.due_at.isoformat(),
        "expires_at": checkin.expires_at.isoformat(),
        "completed_at": checkin.completed_at.isoformat() if checkin.completed_at else None,
        "partial": checkin.partial,
    }


@patient_app.command("list")
def patient_list(
    ctx: typer.Context,
    status: Annotated[
        str | None,
        typer.Option(help=f"Only patients in this status: {', '.join(PATIENT_STATUSES)}."),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """List patients (id, name, channel, status)."""
    if status is not None and status not in PATIENT_STATUSES:
        fail(f"--status {status!r} is not one of {', '.join(PATIENT_STATUSES)}")

    async def work(app: App) -> list[Patient]:
        async with app.db.transaction() as session:
            statement = select(Patient).order_by(col(Patient.id))
            if status is not None:
                statement = statement.where(Patient.status == status)
            rows = list((await session.exec(statement)).all())
            await Repository(session).audit(
                app.clock(), "operator", "patients_listed", "patient:*", count=len(rows)
            )
            return rows

    patients = with_app(ctx, work)
    if as_json:
        emit_json([_patient_json(p) for p in patients])
        return
    for p in patients:
        typer.echo(f"{p.id:>5}  {p.display_name:<24} {p.channel:<9} {p.status}")


@clinician_app.command("add")
def clinician_add(
    ctx: typer.Context,
    name: Annotated[str, typer.Option(help="Name shown in alerts and audit records.")],
    channel: Channel,
    address: Annotated[
        str | None, typer.Option(help="Console channel only: where alerts are shown.")
    ] = None,
    phone: Annotated[str | None, typer.Option(help="SMS: the clinician's mobile number.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Add a clinician who receives alerts (staff: SMS clinicians need no invitation)."""
    if not name.strip():
        fail("--name must not be empty")
    if channel not in CHANNELS:
        fail(f"--channel {channel!r} is not one of {', '.join(CHANNELS)}")
    number = _phone(ctx, channel, phone)

    async def work(app: App) -> Clinician:
        async with app.db.transaction() as session:
            repo = Repository(session)
            clinician = Clinician(display_name=name, channel=channel, address=number)
            await repo.add(clinician)
            if channel == "console":
                clinician.address = address or f"clinician-{clinician.id}"
                await repo.add(clinician)
            await repo.audit(
                app.clock(), "operator", "clinician_added", f"clinician:{clinician.id}"
            )
            return clinician

    clinician = with_app(ctx, work)
    data = {"id": clinician.id, "name": clinician.display_name, "channel": clinician.channel}
    if as_json:
        emit_json(data)
    else:
        typer.echo(f"clinician {clinician.id} added ({clinician.channel})")


@clinician_app.command("list")
def clinician_list(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """List clinicians (id, name, channel, whether active, backup)."""

    async def work(app: App) -> list[Clinician]:
        async with app.db.transaction() as session:
            return list((await session.exec(select(Clinician).order_by(col(Clinician.id)))).all())

    rows = with_app(ctx, work)
    if as_json:
        emit_json([_clinician_json(c) for c in rows])
        return
    for c in rows:
        backup = f"  backup {c.backup_clinician_id}" if c.backup_clinician_id else ""
        inactive = "" if c.active else " inactive"
        typer.echo(f"{c.id:>5}  {c.display_name:<24} {c.channel:<9}{inactive}{backup}")


def _clinician_json(clinician: Clinician) -> dict[str, Any]:
    return {
        "id": clinician.id,
        "name": clinician.display_name,
        "channel": clinician.channel,
        "active": clinician.active,
        "backup_clinician_id": clinician.backup_clinician_id,
    }


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

    async def work(app: App) -> tuple[Checkin, str]:
        try:
            checkin = await app.services.asking.ask(patient_id, instruments, ignore_quiet_hours=now)
        except CheckinError as exc:
            fail(str(exc))
        async with app.db.transaction() as session:
            repo = Repository(session)
            patient = await repo.get_patient(patient_id)
            await repo.audit(
                app.clock(), "operator", "checkin_queued", f"patient:{patient_id}",
                checkin=checkin.id, instruments=list(instruments),
            )  # fmt: skip
        return checkin, patient.status if patient else "unknown"

    checkin, status = with_app(ctx, work)
    if status != "active":
        typer.echo(
            f"note: patient {patient_id} is {status}; the check-in waits until they are active",
            err=True,
        )
    if as_json:
        emit_json(_checkin_json(checkin))
    else:
        typer.echo(f"check-in {checkin.id} queued: {' + '.join(instruments)}")

"""``checkin clinician``: add and list clinicians, who covers for whom, the language they are
told in, a new Telegram link, leaving the clinic."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from bot.app.operator import clinicians
from bot.app.operator.refusals import Deactivated, Refused, StillResponsible
from bot.app.operator.views import CHANNELS, ClinicianView
from bot.bootstrap import App
from bot.commands import panel_accounts
from bot.commands.common import JsonFlag, emit_json, fail, refuse, run_use_case, state, with_app
from bot.commands.patients import Channel, phone_number
from bot.commands.views import echo_invitation, invitation_json
from bot.domain.errors import NotFound
from bot.domain.languages import LANGUAGES

clinician_app = typer.Typer(help="Add and list clinicians.", no_args_is_help=True)
ClinicianId = Annotated[int, typer.Argument(help="Clinician id.")]
_LANGUAGE_HELP = f"Language of their alerts, digests and answers: {', '.join(LANGUAGES)}."


def register(app: typer.Typer) -> None:
    app.add_typer(clinician_app, name="clinician")
    panel_accounts.register(clinician_app)


@clinician_app.command("add")
def clinician_add(
    ctx: typer.Context,
    name: Annotated[str, typer.Option(help="Name shown in alerts and audit records.")],
    channel: Channel,
    address: Annotated[
        str | None, typer.Option(help="Console channel only: where alerts are shown.")
    ] = None,
    phone: Annotated[str | None, typer.Option(help="SMS: the clinician's mobile number.")] = None,
    email: Annotated[str | None, typer.Option(help="Web panel sign-in e-mail.")] = None,
    role: Annotated[str, typer.Option(help="Web panel role: clinician or admin.")] = "clinician",
    language: Annotated[str, typer.Option(help=_LANGUAGE_HELP)] = "en",
    as_json: JsonFlag = False,
) -> None:
    """Add a clinician who receives alerts (staff: SMS clinicians need no invitation).
    With --email they may sign in to the web panel once `clinician password` (and
    `clinician totp`) have run."""
    if not name.strip():
        fail("--name must not be empty")
    if channel not in CHANNELS:
        fail(f"--channel {channel!r} is not one of {', '.join(CHANNELS)}")
    _check_language(language, "--language ")
    number = phone_number(ctx, channel, phone)
    if email is not None:
        panel_accounts.check_new_account(ctx, email, role)
    if channel == "telegram" and not state(ctx).settings().telegram.enabled:
        fail("telegram is not configured: set [telegram] token (or CHECKIN_TELEGRAM_TOKEN)")

    async def work(app: App) -> ClinicianView:
        return await clinicians.add(app.db, app.clock, name, channel, address=address,
                                    phone=number, language=language)  # fmt: skip

    clinician = with_app(ctx, work)
    data = {"id": clinician.id, "name": clinician.name, "channel": clinician.channel,
            "language": clinician.language}  # fmt: skip
    if email is not None:
        panel_accounts.add_account(ctx, clinician.id, email, role)
        data |= {"email": email.strip().lower(), "role": role}
    if channel == "telegram":  # the link that connects their account, as `patient add` prints
        data |= _first_link(ctx, clinician.id)
    if as_json:
        emit_json(data)
    else:
        typer.echo(f"clinician {clinician.id} added ({clinician.channel}, {clinician.language})")
        echo_invitation(data)


def _first_link(ctx: typer.Context, clinician_id: int) -> dict[str, Any]:
    async def work(app: App) -> dict[str, Any]:
        return invitation_json(
            await clinicians.link(app.db, app.clock, app.invitations(), clinician_id)
        )

    try:
        return with_app(ctx, work)
    except Refused as exc:  # Telegram unreachable: the clinician is there, the link is not
        fail(f"clinician {clinician_id} added without a link ({exc}); then `clinician link`")


@clinician_app.command("list")
def clinician_list(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """List clinicians (id, name, channel, language, whether active, backup)."""

    async def work(app: App) -> list[ClinicianView]:
        return await clinicians.list_clinicians(app.db)

    rows = with_app(ctx, work)
    if as_json:
        emit_json([_clinician_json(c) for c in rows])
        return
    for c in rows:
        backup = f"  backup {c.backup_clinician_id}" if c.backup_clinician_id else ""
        inactive = "" if c.active else " inactive"
        typer.echo(f"{c.id:>5}  {c.name:<24} {c.channel:<9} {c.language}{inactive}{backup}")


def _clinician_json(clinician: ClinicianView) -> dict[str, Any]:
    return {
        "id": clinician.id,
        "name": clinician.name,
        "channel": clinician.channel,
        "language": clinician.language,
        "active": clinician.active,
        "backup_clinician_id": clinician.backup_clinician_id,
    }


@clinician_app.command("backup")
def clinician_backup(
    ctx: typer.Context,
    clinician_id: ClinicianId,
    backup: Annotated[
        int | None,
        typer.Option(help="The clinician told when this one does not acknowledge an alert."),
    ] = None,
    clear: Annotated[bool, typer.Option("--clear", help="Remove the backup.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Set (--backup OTHER_ID) or remove (--clear) the clinician's backup: alerts this
    clinician does not acknowledge in time go to the backup."""
    if (backup is None) == (not clear):
        fail("give either --backup OTHER_ID or --clear")
    if backup == clinician_id:
        fail(f"--backup {backup}: a clinician cannot be their own backup; choose another id")

    async def work(app: App) -> None:
        await clinicians.set_backup(app.db, app.clock, clinician_id, backup)

    try:
        with_app(ctx, work)
    except Deactivated as exc:
        fail(f"--backup {backup}: {exc}; choose another")
    except NotFound as exc:
        refuse(exc, "--backup: " if exc.ident == backup else "")
    if as_json:
        emit_json({"id": clinician_id, "backup_clinician_id": backup})
    elif backup is None:
        typer.echo(f"clinician {clinician_id} has no backup now")
    else:
        typer.echo(f"clinician {clinician_id}'s backup is clinician {backup}")


@clinician_app.command("language")
def clinician_language(
    ctx: typer.Context,
    clinician_id: ClinicianId,
    language: Annotated[str, typer.Argument(help=_LANGUAGE_HELP)],
    as_json: JsonFlag = False,
) -> None:
    """Word this clinician's alerts, digests and command answers in LANGUAGE from now on
    (messages already queued keep theirs). Their commands (ACK CODE, ALERTS, /patients)
    stay the same in every language."""
    _check_language(language)

    async def work(app: App) -> None:
        await clinicians.set_language(app.db, app.clock, clinician_id, language)

    run_use_case(ctx, work)
    if as_json:
        emit_json({"id": clinician_id, "language": language})
    else:
        typer.echo(f"clinician {clinician_id} is told in {language} now")


def _check_language(language: str, named: str = "LANGUAGE ") -> None:
    if language not in LANGUAGES:
        fail(f"{named}{language!r} is not one of {', '.join(LANGUAGES)}")


@clinician_app.command("link")
def clinician_link(
    ctx: typer.Context, clinician_id: ClinicianId, as_json: JsonFlag = False
) -> None:
    """Issue a single-use Telegram link that connects this clinician's Telegram account (for
    alerts); links issued before and not used stop working."""

    async def work(app: App) -> dict[str, Any]:
        invitation = await clinicians.link(app.db, app.clock, app.invitations(), clinician_id)
        return {"id": clinician_id} | invitation_json(invitation)

    data = run_use_case(ctx, work)
    if as_json:
        emit_json(data)
    else:
        echo_invitation(data)


@clinician_app.command("deactivate")
def clinician_deactivate(
    ctx: typer.Context,
    clinician_id: ClinicianId,
    reassign_to: Annotated[
        int | None,
        typer.Option(help="Clinician who takes over their patients and backup duties."),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Deactivate a clinician who left: they get no more alerts. A clinician still
    responsible for patients, or someone's backup, needs --reassign-to OTHER_ID."""
    if reassign_to == clinician_id:
        fail(f"--reassign-to {reassign_to}: choose a clinician other than the one leaving")

    async def work(app: App) -> clinicians.Departure:
        return await clinicians.deactivate(app.db, app.clock, clinician_id, reassign_to)

    try:
        departure = with_app(ctx, work)
    except StillResponsible as exc:
        fail(f"{exc}; add --reassign-to OTHER_ID")
    except Deactivated as exc:
        fail(f"--reassign-to {reassign_to}: {exc}")
    except NotFound as exc:
        refuse(exc, "--reassign-to: " if exc.ident == reassign_to else "")
    data = {"id": clinician_id, "active": False, "reassigned_to": reassign_to,
            "patients_moved": departure.patients_moved,
            "backups_moved": departure.backups_moved}  # fmt: skip
    if as_json:
        emit_json(data)
        return
    moved = f"; {data['patients_moved']} patients and {data['backups_moved']} backup duties moved"
    typer.echo(f"clinician {clinician_id} deactivated{moved if reassign_to else ''}")

"""Clinicians over time: who covers for whom, a new Telegram link, leaving the clinic."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from sqlalchemy import update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.bootstrap import App
from bot.commands.common import JsonFlag, emit_json, fail, with_app
from bot.commands.records import _echo_invite, _invite, clinician_app
from bot.storage.repository import Repository
from bot.storage.tables import Clinician, EnrollmentCode, Patient

ClinicianId = Annotated[int, typer.Argument(help="Clinician id.")]
ENDED = ("discharged",)  # patients whose care is over need no responsible clinician


def register(app: typer.Typer) -> None:
    del app  # these join the `clinician` group of bot/commands/records.py
    clinician_app.command("backup")(clinician_backup)
    clinician_app.command("link")(clinician_link)
    clinician_app.command("deactivate")(clinician_deactivate)


async def _clinician(session: AsyncSession, clinician_id: int, what: str = "") -> Clinician:
    clinician = await session.get(Clinician, clinician_id)
    if clinician is None:
        fail(f"{what}no clinician with id {clinician_id}; see `checkin clinician list`")
    return clinician


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
        async with app.db.transaction() as session:
            clinician = await _clinician(session, clinician_id)
            if backup is not None:
                other = await _clinician(session, backup, "--backup: ")
                if not other.active:
                    fail(f"--backup {backup}: clinician {backup} is deactivated; choose another")
            clinician.backup_clinician_id = backup
            repo = Repository(session)
            await repo.add(clinician)
            await repo.audit(app.clock(), "operator", "clinician_backup_set",
                             f"clinician:{clinician_id}", backup=backup)  # fmt: skip

    with_app(ctx, work)
    if as_json:
        emit_json({"id": clinician_id, "backup_clinician_id": backup})
    elif backup is None:
        typer.echo(f"clinician {clinician_id} has no backup now")
    else:
        typer.echo(f"clinician {clinician_id}'s backup is clinician {backup}")


def clinician_link(
    ctx: typer.Context, clinician_id: ClinicianId, as_json: JsonFlag = False
) -> None:
    """Issue a single-use Telegram link that connects this clinician's Telegram account (for
    alerts); links issued before and not used stop working."""

    async def work(app: App) -> dict[str, Any]:
        async with app.db.transaction() as session:
            clinician = await _clinician(session, clinician_id)
            if clinician.channel != "telegram":
                fail(f"clinician {clinician_id} uses {clinician.channel}; links are for Telegram")
            if not clinician.active:
                fail(f"clinician {clinician_id} is deactivated; links are for active clinicians")
            now = app.clock()
            await session.exec(
                update(EnrollmentCode)
                .where(
                    col(EnrollmentCode.clinician_id) == clinician_id,
                    col(EnrollmentCode.used_at).is_(None),
                    col(EnrollmentCode.expires_at) > now,
                )
                .values(expires_at=now)
            )
            invite = await _invite(app, session, clinician_id=clinician_id)
            await Repository(session).audit(
                now, "operator", "enrolment_link_issued", f"clinician:{clinician_id}"
            )
            return {"id": clinician_id} | invite

    data = with_app(ctx, work)
    if as_json:
        emit_json(data)
    else:
        _echo_invite(data)


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

    async def work(app: App) -> dict[str, Any]:
        async with app.db.transaction() as session:
            clinician = await _clinician(session, clinician_id)
            patients, backing = await _duties(session, clinician_id)
            if (patients or backing) and reassign_to is None:
                fail(
                    f"clinician {clinician_id} is responsible for {len(patients)} patients and "
                    f"backup for {len(backing)} clinicians; add --reassign-to OTHER_ID"
                )
            if reassign_to is not None:
                other = await _clinician(session, reassign_to, "--reassign-to: ")
                if not other.active:
                    fail(f"--reassign-to {reassign_to}: clinician {reassign_to} is deactivated")
                await _reassign(session, patients, backing, reassign_to)
            clinician.active = False
            repo = Repository(session)
            await repo.add(clinician)
            await repo.audit(app.clock(), "operator", "clinician_deactivated",
                             f"clinician:{clinician_id}", reassigned_to=reassign_to,
                             patients=len(patients), backups=len(backing))  # fmt: skip
            return {"id": clinician_id, "active": False, "reassigned_to": reassign_to,
                    "patients_moved": len(patients), "backups_moved": len(backing)}  # fmt: skip

    data = with_app(ctx, work)
    if as_json:
        emit_json(data)
        return
    moved = f"; {data['patients_moved']} patients and {data['backups_moved']} backup duties moved"
    typer.echo(f"clinician {clinician_id} deactivated{moved if reassign_to else ''}")


async def _duties(session: AsyncSession, clinician_id: int) -> tuple[list[int], list[int]]:
    """Ids of the patients in care this clinician is responsible for, and of the clinicians
    they are backup for."""
    patients = select(Patient.id).where(
        Patient.clinician_id == clinician_id, col(Patient.status).not_in(ENDED)
    )
    backing = select(Clinician.id).where(
        Clinician.backup_clinician_id == clinician_id,
        Clinician.active == True,  # noqa: E712
    )
    found = [i for i in (await session.exec(patients)).all() if i is not None]
    return found, [i for i in (await session.exec(backing)).all() if i is not None]


async def _reassign(
    session: AsyncSession, patients: list[int], backing: list[int], to: int
) -> None:
    if patients:
        await session.exec(
            update(Patient).where(col(Patient.id).in_(patients)).values(clinician_id=to)
        )
    if backing:  # nobody becomes their own backup
        await session.exec(
            update(Clinician).where(col(Clinician.id).in_(backing)).values(backup_clinician_id=to)
        )
        await session.exec(
            update(Clinician)
            .where(col(Clinician.id) == to, col(Clinician.backup_clinician_id) == to)
            .values(backup_clinician_id=None)
        )  # fmt: skip

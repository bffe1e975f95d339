"""Clinicians as an operator manages them: add, list, who covers for whom (the backup told
when an alert goes unacknowledged), the language they are told in, a Telegram link for
alerts, and leaving the clinic (their patients and backup duties passed to a successor).

Each change runs in one transaction with its audit event. A clinician that is not there
raises ``NotFound``; a step their state does not allow, ``Refused`` (``Deactivated``,
``StillResponsible``).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.app.operator.invitations import Invitation, Invitations
from bot.app.operator.refusals import Deactivated, Refused, StillResponsible
from bot.app.operator.views import ClinicianView
from bot.app.ports import Clock
from bot.domain.errors import NotFound
from bot.domain.languages import LANGUAGES
from bot.storage.database import Database
from bot.storage.repository import Repository
from bot.storage.tables import Clinician, Patient

ENDED = ("discharged",)  # patients whose care is over need no responsible clinician


async def add(
    db: Database,
    clock: Clock,
    name: str,
    channel: str,
    *,
    address: str | None = None,
    phone: str | None = None,
    language: str = "en",
    actor: str = "operator",
) -> ClinicianView:
    """Add a clinician who receives alerts. `address`: console only, where alerts are
    shown (default ``clinician-<id>``); `phone`: SMS only, their number (E.164);
    `language`: what their alerts and answers are worded in (one of ``LANGUAGES``)."""
    _check_language(language)
    async with db.transaction() as session:
        repo = Repository(session)
        clinician = Clinician(display_name=name, channel=channel, address=phone, language=language)
        await repo.add(clinician)
        if channel == "console":
            clinician.address = address or f"clinician-{clinician.id}"
            await repo.add(clinician)
        await repo.audit(clock(), actor, "clinician_added", f"clinician:{clinician.id}")
        return ClinicianView.of(clinician)


async def list_clinicians(db: Database) -> list[ClinicianView]:
    async with db.transaction() as session:
        rows = (await session.exec(select(Clinician).order_by(col(Clinician.id)))).all()
        return [ClinicianView.of(c) for c in rows]


async def set_backup(
    db: Database, clock: Clock, clinician_id: int, backup: int | None, actor: str = "operator"
) -> None:
    """Make `backup` the clinician told when this one does not acknowledge an alert in
    time (None: nobody)."""
    if backup == clinician_id:
        raise Refused(f"clinician {clinician_id} cannot be their own backup")
    async with db.transaction() as session:
        clinician = await _clinician(session, clinician_id)
        if backup is not None and not (await _clinician(session, backup)).active:
            raise Deactivated(backup)
        clinician.backup_clinician_id = backup
        repo = Repository(session)
        await repo.add(clinician)
        await repo.audit(clock(), actor, "clinician_backup_set",
                         f"clinician:{clinician_id}", backup=backup)  # fmt: skip


async def set_language(
    db: Database, clock: Clock, clinician_id: int, language: str, actor: str = "operator"
) -> None:
    """Word this clinician's alerts, digests and command answers in `language` from now on
    (messages already queued keep theirs)."""
    _check_language(language)
    async with db.transaction() as session:
        clinician = await _clinician(session, clinician_id)
        clinician.language = language
        repo = Repository(session)
        await repo.add(clinician)
        await repo.audit(clock(), actor, "clinician_language_set",
                         f"clinician:{clinician_id}", language=language)  # fmt: skip


def _check_language(language: str) -> None:
    if language not in LANGUAGES:
        raise Refused(f"language {language!r} is not one of {', '.join(LANGUAGES)}")


async def link(
    db: Database,
    clock: Clock,
    invitations: Invitations,
    clinician_id: int,
    actor: str = "operator",
) -> Invitation:
    """A single-use link that connects the clinician's Telegram account (for alerts); the
    links issued before it and not used stop working."""
    async with db.transaction() as session:
        clinician = await _clinician(session, clinician_id)
        if clinician.channel != "telegram":
            raise Refused(
                f"clinician {clinician_id} uses {clinician.channel}; links are for Telegram"
            )
        if not clinician.active:
            raise Refused(
                f"clinician {clinician_id} is deactivated; links are for active clinicians"
            )
        invitation = await invitations.issue(session, clinician_id=clinician_id)  # revokes
        await Repository(session).audit(
            clock(), actor, "enrolment_link_issued", f"clinician:{clinician_id}"
        )
        return invitation


@dataclass(frozen=True)
class Departure:
    patients_moved: int
    backups_moved: int


async def deactivate(
    db: Database,
    clock: Clock,
    clinician_id: int,
    reassign_to: int | None = None,
    actor: str = "operator",
) -> Departure:
    """Deactivate a clinician who left: no more alerts for them. One still responsible for
    patients in care, or someone's backup, needs `reassign_to`, who takes both over."""
    if reassign_to == clinician_id:
        raise Refused(f"clinician {clinician_id} cannot take over from themselves")
    async with db.transaction() as session:
        clinician = await _clinician(session, clinician_id)
        patients, backing = await _duties(session, clinician_id)
        if (patients or backing) and reassign_to is None:
            raise StillResponsible(clinician_id, len(patients), len(backing))
        if reassign_to is not None:
            if not (await _clinician(session, reassign_to)).active:
                raise Deactivated(reassign_to)
            await _reassign(session, patients, backing, reassign_to)
        clinician.active = False
        repo = Repository(session)
        await repo.add(clinician)
        await repo.audit(clock(), actor, "clinician_deactivated",
                         f"clinician:{clinician_id}", reassigned_to=reassign_to,
                         patients=len(patients), backups=len(backing))  # fmt: skip
        return Departure(len(patients), len(backing))


async def _clinician(session: AsyncSession, clinician_id: int) -> Clinician:
    clinician = await session.get(Clinician, clinician_id)
    if clinician is None:
        raise NotFound("clinician", clinician_id)
    return clinician


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

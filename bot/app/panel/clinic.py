"""Setting the clinic up from the panel: an admin's Clinicians page (add a clinician with a
panel account, who covers for whom, the language they are told in, someone who left, new
sign-in details for someone who lost theirs), and every viewer's own Account page
(password, time zone).

An admin only: anyone else gets ``NotFound`` (404), as for a patient they may not see.
Each change is the operator's use case, audited with the admin as actor. A new account's
first password and TOTP secret are made here, shown once to the admin to pass on, and never
stored in clear or logged; the clinician changes the password on their Account page.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlmodel import col, func, select

from bot.app.operator import clinicians
from bot.app.operator.invitations import Invitation, Invitations
from bot.app.operator.refusals import Refused
from bot.app.panel import accounts, passwords
from bot.app.panel.signin import Viewer
from bot.app.ports import Clock
from bot.domain.errors import NotFound
from bot.domain.languages import LANGUAGES
from bot.storage.account_tables import PanelAccount
from bot.storage.database import Database
from bot.storage.repository import Repository
from bot.storage.tables import Clinician, Patient

ENDED = ("discharged",)


@dataclass(frozen=True)
class ClinicianRow:
    id: int
    name: str
    channel: str
    active: bool
    backup_id: int | None
    backup_name: str | None
    email: str | None  # None: no panel account
    role: str | None
    totp: bool
    patients: int  # in care (not discharged)
    language: str = "en"  # what their alerts and answers are worded in


@dataclass(frozen=True)
class FirstSignIn:
    """What an admin hands a clinician once: the e-mail, a first password, the TOTP URI
    (shown as a QR code), and for Telegram the link that connects their chat for alerts."""

    clinician_id: int
    name: str
    email: str
    password: str
    totp_uri: str | None
    telegram: Invitation | None = None


class Problem(Refused):
    """A form field that cannot be taken: `field` names it for the page."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(message)


def admin_only(viewer: Viewer) -> None:
    if not viewer.admin:
        raise NotFound("page", 0)


async def clinician_rows(db: Database, clock: Clock, viewer: Viewer) -> list[ClinicianRow]:
    admin_only(viewer)
    async with db.transaction() as session:
        staff = (await session.exec(select(Clinician).order_by(col(Clinician.id)))).all()
        names = {c.id: c.display_name for c in staff}
        held = {a.clinician_id: a for a in (await session.exec(select(PanelAccount))).all()}
        counted = select(Patient.clinician_id, func.count()).where(
            col(Patient.status).not_in(ENDED)
        )
        counts = dict((await session.exec(counted.group_by(col(Patient.clinician_id)))).all())
        await Repository(session).audit(clock(), viewer.actor, "panel_clinicians_viewed",
                                        "clinic", count=len(staff))  # fmt: skip
    rows = []
    for c in staff:
        account = held.get(c.id or 0)
        backup = c.backup_clinician_id
        rows.append(ClinicianRow(
            c.id or 0, c.display_name, c.channel, c.active, backup,
            names.get(backup) if backup else None,
            account.email if account else None, account.role if account else None,
            bool(account and account.totp_secret), int(counts.get(c.id, 0)), c.language,
        ))  # fmt: skip
    return rows


async def add_clinician(
    db: Database,
    clock: Clock,
    viewer: Viewer,
    invitations: Invitations,
    *,
    name: str,
    channel: str,
    phone: str | None,
    email: str,
    role: str,
    issuer: str,
    totp: bool,
    language: str = "en",
) -> FirstSignIn:
    """A clinician with a panel account (and for Telegram their first link), told in
    `language`."""
    admin_only(viewer)
    if not name.strip():
        raise Problem("name", "a name is needed")
    if language not in LANGUAGES:
        raise Problem("language", f"{language!r} is not one of {', '.join(LANGUAGES)}")
    try:
        email = accounts.normal_email(email)
        role = accounts.check_role(role)
    except Refused as exc:
        raise Problem("role" if "role" in str(exc) else "email", str(exc)) from None
    if await accounts.email_taken(db, email):
        raise Problem("email", "that e-mail already belongs to an account")
    added = await clinicians.add(db, clock, name.strip(), channel, phone=phone,
                                 language=language, actor=viewer.actor)  # fmt: skip
    await accounts.add_account(db, clock, added.id, email, role, actor=viewer.actor)
    first = await _first_secrets(db, clock, viewer, added.id, issuer, totp)
    link = None
    if channel == "telegram":
        link = await clinicians.link(db, clock, invitations, added.id, actor=viewer.actor)
    return FirstSignIn(added.id, added.name, email, first[0], first[1], link)


async def new_sign_in(
    db: Database, clock: Clock, viewer: Viewer, clinician_id: int, issuer: str, totp: bool
) -> FirstSignIn:
    """New sign-in details for someone who lost theirs: a first password and a new TOTP
    secret; the old ones and every session of the account stop working."""
    admin_only(viewer)
    if clinician_id == viewer.clinician_id:
        raise Refused("change your own password on your Account page")
    async with db.reading() as session:
        account = await accounts.account_of(session, clinician_id)
        clinician = await session.get(Clinician, clinician_id)
        email, name = account.email, clinician.display_name if clinician else ""
    password, uri = await _first_secrets(db, clock, viewer, clinician_id, issuer, totp)
    return FirstSignIn(clinician_id, name, email, password, uri)


async def _first_secrets(
    db: Database, clock: Clock, viewer: Viewer, clinician_id: int, issuer: str, totp: bool
) -> tuple[str, str | None]:
    password = secrets.token_urlsafe(15)  # 20 characters, 90 bits: never a common one
    await accounts.set_password(db, clock, clinician_id, password, actor=viewer.actor)
    if not totp:
        return password, None
    issued = await accounts.issue_totp(db, clock, clinician_id, issuer, actor=viewer.actor)
    return password, issued.uri


async def set_backup(
    db: Database, clock: Clock, viewer: Viewer, clinician_id: int, backup: int | None
) -> None:
    admin_only(viewer)
    await clinicians.set_backup(db, clock, clinician_id, backup, actor=viewer.actor)


async def set_language(
    db: Database, clock: Clock, viewer: Viewer, clinician_id: int, language: str
) -> None:
    """Word the clinician's alerts, digests and answers in `language` from now on: the
    operator's use case (`checkin clinician language`), audited with the admin as actor."""
    admin_only(viewer)
    await clinicians.set_language(db, clock, clinician_id, language, actor=viewer.actor)


async def deactivate(
    db: Database, clock: Clock, viewer: Viewer, clinician_id: int, reassign_to: int | None
) -> clinicians.Departure:
    admin_only(viewer)
    if clinician_id == viewer.clinician_id:
        raise Refused("you cannot deactivate yourself; another admin can")
    return await clinicians.deactivate(db, clock, clinician_id, reassign_to, actor=viewer.actor)


# ---- the viewer's own account -------------------------------------------------------


@dataclass(frozen=True)
class AccountView:
    email: str
    role: str
    timezone: str | None  # None: the panel's default


async def own_account(db: Database, viewer: Viewer) -> AccountView:
    async with db.reading() as session:
        account = await accounts.account_of(session, viewer.clinician_id)
        return AccountView(account.email, account.role, account.timezone)


async def change_password(
    db: Database, clock: Clock, viewer: Viewer, current: str, new: str, again: str
) -> None:
    """The viewer's new password (their sessions end: they sign in again with it)."""
    async with db.reading() as session:
        account = await accounts.account_of(session, viewer.clinician_id)
        stored = account.password_hash
    if not passwords.password_matches(stored, current):
        raise Problem("current", "that is not your current password")
    if new != again:
        raise Problem("again", "the two new passwords differ")
    weak = passwords.weakness(new)
    if weak is not None:
        raise Problem("new", weak)
    await accounts.set_password(db, clock, viewer.clinician_id, new, actor=viewer.actor)


async def set_timezone(db: Database, clock: Clock, viewer: Viewer, zone: str) -> None:
    """The zone the viewer's pages show times in (empty: the panel's default)."""
    name = zone.strip() or None
    if name is not None:
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise Problem("timezone", f"{name!r} is not a time zone name") from None
    async with db.transaction() as session:
        account = await accounts.account_of(session, viewer.clinician_id)
        account.timezone = name
        repo = Repository(session)
        await repo.add(account)
        await repo.audit(clock(), viewer.actor, "panel_timezone_set",
                         f"clinician:{viewer.clinician_id}", timezone=name)  # fmt: skip

"""Panel accounts as an operator manages them (``checkin clinician``): an e-mail and a role
for a clinician, a password, a TOTP secret (re)issued, the sessions signed in and their
revocation. Each change runs in one transaction with its audit event; the password and
the secret never reach the audit trail or a log.

Setting a password or a new secret ends every session of the account: whoever signed in
with the old one signs in again.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.app.operator.refusals import Refused
from bot.app.panel import passwords
from bot.app.ports import Clock
from bot.domain.errors import NotFound
from bot.storage.account_tables import ROLES, PanelAccount, PanelSession
from bot.storage.crypto import lookup_hash, lookup_hashes
from bot.storage.database import Database
from bot.storage.repository import Repository
from bot.storage.tables import Clinician

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def normal_email(email: str) -> str:
    """The e-mail as stored and looked up (trimmed, lower case); refused if not one."""
    email = email.strip().lower()
    if not _EMAIL.match(email):
        raise Refused(f"{email!r} is not an e-mail address")
    return email


def check_role(role: str) -> str:
    if role not in ROLES:
        raise Refused(f"role {role!r} is not one of {', '.join(ROLES)}")
    return role


async def email_taken(db: Database, email: str) -> bool:
    async with db.reading() as session:
        return await find_by_email(session, normal_email(email)) is not None


async def find_by_email(session: AsyncSession, email: str) -> PanelAccount | None:
    hashes = lookup_hashes(email)
    statement = select(PanelAccount).where(col(PanelAccount.email_hash).in_(hashes))
    return (await session.exec(statement)).first()


async def add_account(
    db: Database,
    clock: Clock,
    clinician_id: int,
    email: str,
    role: str = "clinician",
    actor: str = "operator",
) -> None:
    """Let the clinician sign in to the panel as `email` (a password and, unless
    [panel] require_totp is false, a TOTP secret come next)."""
    email, role = normal_email(email), check_role(role)
    async with db.transaction() as session:
        if await session.get(Clinician, clinician_id) is None:
            raise NotFound("clinician", clinician_id)
        if await find_by_email(session, email) is not None:
            raise Refused("that e-mail already belongs to an account")
        repo = Repository(session)
        hashed = lookup_hash(email) or ""
        await repo.add(PanelAccount(clinician_id=clinician_id, email=email, email_hash=hashed,
                                    role=role, created_at=clock()))  # fmt: skip
        await repo.audit(clock(), actor, "panel_account_added",
                         f"clinician:{clinician_id}", role=role)  # fmt: skip


async def set_password(
    db: Database, clock: Clock, clinician_id: int, password: str, actor: str = "operator"
) -> None:
    """Set the account's password (weak ones refused); its sessions end."""
    hashed = passwords.hash_password(password)
    async with db.transaction() as session:
        account = await account_of(session, clinician_id)
        account.password_hash = hashed
        await _close_sessions(session, account, clock())
        repo = Repository(session)
        await repo.add(account)
        await repo.audit(clock(), actor, "panel_password_set", f"clinician:{clinician_id}")


@dataclass(frozen=True)
class TotpIssue:
    secret: str
    uri: str  # otpauth://totp/...: what an authenticator app reads from the QR code


async def issue_totp(
    db: Database, clock: Clock, clinician_id: int, issuer: str, actor: str = "operator"
) -> TotpIssue:
    """A new TOTP secret for the account (the old one stops working); its sessions end."""
    secret = passwords.new_totp_secret()
    async with db.transaction() as session:
        account = await account_of(session, clinician_id)
        account.totp_secret, account.totp_last_step = secret, None
        await _close_sessions(session, account, clock())
        repo = Repository(session)
        await repo.add(account)
        await repo.audit(clock(), actor, "panel_totp_issued", f"clinician:{clinician_id}")
        return TotpIssue(secret, passwords.provisioning_uri(secret, account.email, issuer))


@dataclass(frozen=True)
class SessionView:
    id: int
    created_at: datetime
    last_seen_at: datetime
    revoked_at: datetime | None


async def sessions(db: Database, clinician_id: int) -> list[SessionView]:
    """The account's sessions, newest first (revoked and expired ones included)."""
    async with db.reading() as session:
        account = await account_of(session, clinician_id)
        statement = (
            select(PanelSession)
            .where(PanelSession.account_id == account.id)
            .order_by(col(PanelSession.id).desc())
        )
        rows = (await session.exec(statement)).all()
        return [SessionView(r.id or 0, r.created_at, r.last_seen_at, r.revoked_at) for r in rows]


async def revoke_sessions(db: Database, clock: Clock, clinician_id: int) -> int:
    """End every session of the account; how many were still open."""
    async with db.transaction() as session:
        account = await account_of(session, clinician_id)
        ended = await _close_sessions(session, account, clock())
        await Repository(session).audit(clock(), "operator", "panel_sessions_revoked",
                                        f"clinician:{clinician_id}", sessions=ended)  # fmt: skip
        return ended


async def account_of(session: AsyncSession, clinician_id: int) -> PanelAccount:
    if await session.get(Clinician, clinician_id) is None:
        raise NotFound("clinician", clinician_id)
    statement = select(PanelAccount).where(PanelAccount.clinician_id == clinician_id)
    account = (await session.exec(statement)).first()
    if account is None:
        raise Refused(f"clinician {clinician_id} has no panel account (no sign-in e-mail)")
    return account


async def _close_sessions(session: AsyncSession, account: PanelAccount, now: datetime) -> int:
    statement = (
        update(PanelSession)
        .where(col(PanelSession.account_id) == account.id, col(PanelSession.revoked_at).is_(None))
        .values(revoked_at=now)
    )
    result = await session.exec(statement)
    return int(result.rowcount or 0)

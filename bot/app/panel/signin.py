"""Signing in to the panel, and the server-side sessions that follow.

Invariants:

* A failed attempt says nothing about which of e-mail, password or code was wrong
  (:class:`NotRecognised`, one message), and an unknown e-mail costs the same argon2
  verification as a known one.
* 5 failures of an account within 15 minutes lock it for 15 minutes: while locked, even
  the right password and code are refused. The lock is audited.
* An address (the client's IP, kept only as a keyed hash) that failed 3 times within 15
  minutes must wait before its next attempt: 1 s after the 3rd failure, doubling each
  failure, at most 60 s (:class:`SlowDown`). Nothing is checked meanwhile.
* A session is a row holding the SHA-256 of a random 256-bit token; the token lives only
  in the browser's cookie. It ends at sign-out, on revocation, after ``idle_timeout_min``
  without a request, and ``absolute_timeout_h`` after sign-in, whichever comes first.
  ``last_seen_at`` is written at most every 30 s, so reading a page is rarely a write.
* Failed attempts older than a day count for nothing; each successful sign-in deletes them.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import delete, func, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.app.operator.refusals import Refused
from bot.app.panel import passwords
from bot.app.panel.accounts import find_by_email
from bot.app.ports import Clock
from bot.config import Panel
from bot.storage.account_tables import PanelAccount, PanelLoginFailure, PanelSession
from bot.storage.crypto import lookup_hash
from bot.storage.database import Database
from bot.storage.repository import Repository
from bot.storage.tables import Clinician

LOCK_AFTER = 5
WINDOW = timedelta(minutes=15)  # failures counted over, and the lock's length
BACKOFF_AFTER = 3
BACKOFF_MAX_S = 60.0
SEEN_EVERY = timedelta(seconds=30)
KEEP_FAILURES = timedelta(days=1)  # older failures count for nothing; a sign-in drops them


class NotRecognised(Refused):
    def __init__(self) -> None:
        super().__init__("e-mail, password or code not recognised")


class SlowDown(NotRecognised):
    """Too many failures from this address just now: nothing was checked."""


@dataclass(frozen=True)
class Viewer:
    """Who is signed in: their clinician id, role, name, time zone, and session token."""

    account_id: int
    clinician_id: int
    role: str
    name: str
    zone: ZoneInfo
    token: str

    @property
    def admin(self) -> bool:
        return self.role == "admin"

    @property
    def actor(self) -> str:
        return f"clinician:{self.clinician_id}"

    @property
    def csrf_token(self) -> str:
        """The token every form of this session carries (derived: nothing stored)."""
        return csrf_for(self.token)


def csrf_for(secret: str) -> str:
    return hmac.new(secret.encode(), b"csrf", hashlib.sha256).hexdigest()


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class SignIn:
    """The sign-in use case over the database, the clock and the [panel] settings."""

    def __init__(self, db: Database, clock: Clock, settings: Panel) -> None:
        self.db, self.clock, self.settings = db, clock, settings
        self.idle = timedelta(minutes=settings.idle_timeout_min)
        self.absolute = timedelta(hours=settings.absolute_timeout_h)

    async def sign_in(self, email: str, password: str, code: str, address: str) -> str:
        """A new session's token; raises :class:`NotRecognised` (or :class:`SlowDown`)."""
        now, where = self.clock(), lookup_hash(address) or ""
        async with self.db.transaction() as session:
            await self._check_backoff(session, where, now)
            account = await find_by_email(session, email.strip().lower())
            if await self._accepts(session, account, password, code, now):
                assert account is not None and account.id is not None
                return await self._open(session, account, now)
            await self._failed(session, account, where, now)
        raise NotRecognised()

    async def viewer(self, token: str | None) -> Viewer | None:
        """Who holds this session token, if the session is still open; keeps it alive."""
        if not token:
            return None
        now = self.clock()
        async with self.db.transaction() as session:
            statement = select(PanelSession).where(PanelSession.token_hash == token_hash(token))
            row = (await session.exec(statement)).first()
            if row is None or not self._open_at(row, now):
                return None
            account = await session.get(PanelAccount, row.account_id)
            clinician = await session.get(Clinician, account.clinician_id) if account else None
            if account is None or clinician is None or not clinician.active:
                return None
            if now - row.last_seen_at >= SEEN_EVERY:
                row.last_seen_at = now
                session.add(row)
            zone = ZoneInfo(account.timezone or self.settings.timezone)
            return Viewer(account.id or 0, account.clinician_id, account.role,
                          clinician.display_name, zone, token)  # fmt: skip

    async def sign_out(self, viewer: Viewer) -> None:
        now = self.clock()
        async with self.db.transaction() as session:
            await session.exec(
                update(PanelSession)
                .where(col(PanelSession.token_hash) == token_hash(viewer.token))
                .values(revoked_at=now)
            )  # fmt: skip
            await Repository(session).audit(now, viewer.actor, "panel_signed_out",
                                            f"clinician:{viewer.clinician_id}")  # fmt: skip

    def _open_at(self, row: PanelSession, now: datetime) -> bool:
        return (
            row.revoked_at is None
            and now - row.last_seen_at < self.idle
            and now - row.created_at < self.absolute
        )

    async def _accepts(
        self,
        session: AsyncSession,
        account: PanelAccount | None,
        password: str,
        code: str,
        now: datetime,
    ) -> bool:
        stored = account.password_hash if account is not None else None
        if not passwords.password_matches(stored, password) or account is None:
            return False
        if account.locked_until is not None and now < account.locked_until:
            return False
        if account.totp_secret is None:
            return not self.settings.require_totp
        step = passwords.totp_step(account.totp_secret, code, now, account.totp_last_step)
        if step is None:
            return False
        account.totp_last_step = step
        return True

    async def _open(self, session: AsyncSession, account: PanelAccount, now: datetime) -> str:
        token = secrets.token_urlsafe(32)
        account.failures_since, account.locked_until = now, None
        stale = col(PanelLoginFailure.at) < now - KEEP_FAILURES
        await session.exec(delete(PanelLoginFailure).where(stale))
        repo = Repository(session)
        await repo.add(account)
        await repo.add(PanelSession(account_id=account.id or 0, token_hash=token_hash(token),
                                    created_at=now, last_seen_at=now))  # fmt: skip
        actor = f"clinician:{account.clinician_id}"
        await repo.audit(now, actor, "panel_signed_in", actor)
        return token

    async def _failed(
        self, session: AsyncSession, account: PanelAccount | None, where: str, now: datetime
    ) -> None:
        account_id = account.id if account is not None else None
        session.add(PanelLoginFailure(account_id=account_id, address_hash=where, at=now))
        await session.flush()
        if account is None or (account.locked_until is not None and now < account.locked_until):
            return
        since = max(now - WINDOW, account.failures_since or now - WINDOW)
        if await _count(session, PanelLoginFailure.account_id == account.id, since) < LOCK_AFTER:
            return
        account.locked_until = account.failures_since = now + WINDOW
        repo = Repository(session)
        await repo.add(account)
        subject, minutes = f"clinician:{account.clinician_id}", int(WINDOW.total_seconds()) // 60
        await repo.audit(now, "system", "panel_account_locked", subject,
                         failures=LOCK_AFTER, minutes=minutes)  # fmt: skip

    async def _check_backoff(self, session: AsyncSession, where: str, now: datetime) -> None:
        recent = PanelLoginFailure.address_hash == where
        failures = await _count(session, recent, now - WINDOW)
        if failures < BACKOFF_AFTER:
            return
        last = select(func.max(PanelLoginFailure.at)).where(recent)
        latest = (await session.exec(last)).one()
        wait = min(2.0 ** (failures - BACKOFF_AFTER), BACKOFF_MAX_S)
        if latest is not None and now < _aware(latest) + timedelta(seconds=wait):
            raise SlowDown()


async def _count(session: AsyncSession, where: object, since: datetime) -> int:
    statement = (
        select(func.count())
        .select_from(PanelLoginFailure)
        .where(where, col(PanelLoginFailure.at) > since)  # type: ignore[arg-type]
    )
    return int((await session.exec(statement)).one())


def _aware(at: datetime) -> datetime:
    """func.max comes back without the column's type on SQLite: text or naive."""
    if isinstance(at, str):
        at = datetime.fromisoformat(at)
    return at if at.tzinfo is not None else at.replace(tzinfo=ZoneInfo("UTC"))

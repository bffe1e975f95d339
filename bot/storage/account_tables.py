"""SQLModel tables of the web panel's sign-in: accounts, sessions, failed attempts.

* ``panel_account``: one per clinician who may sign in (``role`` clinician or admin). The
  e-mail is ``EncryptedText`` with a keyed lookup hash beside it (unique), the password an
  argon2id hash (a hash already: not encrypted again), the TOTP secret ``EncryptedText``.
  ``totp_last_step`` is the 30-second step of the last code accepted, so a code is used
  once. ``locked_until``: set when 5 attempts failed within 15 minutes (audited).
* ``panel_session``: a signed-in browser. Only the SHA-256 of the random token in the
  cookie is kept, so a copy of the database opens no session. ``revoked_at`` set by
  sign-out and by ``checkin clinician sessions ID --revoke``.
* ``panel_login_failure``: one row per failed attempt, for the account's lockout and the
  address's backoff; the address is kept only as its keyed hash.
"""

from datetime import datetime

from sqlalchemy import Index
from sqlmodel import Field, SQLModel

import bot.storage.naming  # noqa: F401  (constraint names: set before any table is defined)
from bot.storage.crypto import EncryptedText

ROLES = ("clinician", "admin")


class PanelAccount(SQLModel, table=True):
    __tablename__ = "panel_account"

    id: int | None = Field(default=None, primary_key=True)
    clinician_id: int = Field(foreign_key="clinician.id", ondelete="CASCADE", unique=True)
    email: str = Field(sa_type=EncryptedText("panel_account.email"))
    email_hash: str = Field(unique=True)
    role: str = "clinician"
    password_hash: str | None = None
    totp_secret: str | None = Field(
        default=None, sa_type=EncryptedText("panel_account.totp_secret")
    )
    totp_last_step: int | None = None
    timezone: str | None = None  # the viewer's zone; None: [panel] timezone
    locked_until: datetime | None = None
    failures_since: datetime | None = None  # failures before this (a success) do not count
    created_at: datetime


class PanelSession(SQLModel, table=True):
    __tablename__ = "panel_session"

    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(foreign_key="panel_account.id", ondelete="CASCADE", index=True)
    token_hash: str = Field(unique=True)
    created_at: datetime
    last_seen_at: datetime
    revoked_at: datetime | None = None


class PanelLoginFailure(SQLModel, table=True):
    __tablename__ = "panel_login_failure"
    __table_args__ = (
        Index("ix_panel_login_failure_account_at", "account_id", "at"),
        Index("ix_panel_login_failure_address_at", "address_hash", "at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    account_id: int | None = Field(default=None, foreign_key="panel_account.id", ondelete="CASCADE")
    address_hash: str
    at: datetime

"""the web panel's sign-in: accounts on clinicians, server-side sessions, failed attempts

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05 13:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

from bot.storage.crypto import EncryptedText

revision: str = "0013"
down_revision: str | Sequence[str] | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TEXT = sqlmodel.sql.sqltypes.AutoString
_WHEN = sqlmodel.sql.sqltypes.UTCDateTime()


def upgrade() -> None:
    op.create_table(
        "panel_account",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("clinician_id", sa.Integer(), nullable=False),
        sa.Column("email", EncryptedText("panel_account.email"), nullable=False),
        sa.Column("email_hash", _TEXT(), nullable=False),
        sa.Column("role", _TEXT(), nullable=False),
        sa.Column("password_hash", _TEXT(), nullable=True),
        sa.Column("totp_secret", EncryptedText("panel_account.totp_secret"), nullable=True),
        sa.Column("totp_last_step", sa.Integer(), nullable=True),
        sa.Column("timezone", _TEXT(), nullable=True),
        sa.Column("locked_until", _WHEN, nullable=True),
        sa.Column("failures_since", _WHEN, nullable=True),
        sa.Column("created_at", _WHEN, nullable=False),
        sa.ForeignKeyConstraint(
            ["clinician_id"], ["clinician.id"],
            name=op.f("fk_panel_account_clinician_id_clinician"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_panel_account")),
        sa.UniqueConstraint("clinician_id", name=op.f("uq_panel_account_clinician_id")),
        sa.UniqueConstraint("email_hash", name=op.f("uq_panel_account_email_hash")),
    )
    op.create_table(
        "panel_session",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("token_hash", _TEXT(), nullable=False),
        sa.Column("created_at", _WHEN, nullable=False),
        sa.Column("last_seen_at", _WHEN, nullable=False),
        sa.Column("revoked_at", _WHEN, nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"], ["panel_account.id"],
            name=op.f("fk_panel_session_account_id_panel_account"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_panel_session")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_panel_session_token_hash")),
    )
    op.create_index(op.f("ix_panel_session_account_id"), "panel_session", ["account_id"])
    op.create_table(
        "panel_login_failure",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=True),
        sa.Column("address_hash", _TEXT(), nullable=False),
        sa.Column("at", _WHEN, nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["panel_account.id"],
            name=op.f("fk_panel_login_failure_account_id_panel_account"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_panel_login_failure")),
    )
    op.create_index(
        "ix_panel_login_failure_account_at", "panel_login_failure", ["account_id", "at"]
    )
    op.create_index(
        "ix_panel_login_failure_address_at", "panel_login_failure", ["address_hash", "at"]
    )


def downgrade() -> None:
    op.drop_index("ix_panel_login_failure_address_at", table_name="panel_login_failure")
    op.drop_index("ix_panel_login_failure_account_at", table_name="panel_login_failure")
    op.drop_table("panel_login_failure")
    op.drop_index(op.f("ix_panel_session_account_id"), table_name="panel_session")
    op.drop_table("panel_session")
    op.drop_table("panel_account")

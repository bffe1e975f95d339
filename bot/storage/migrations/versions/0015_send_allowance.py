"""send limits shared by every worker: places in the provider's window, chats' allowances

Used on PostgreSQL only (bot/storage/send_allowance.py); created on SQLite too, empty,
so both databases have one schema.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-05 13:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision: str = "0015"
down_revision: str | Sequence[str] | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "send_slot",
        sa.Column("channel", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.Column("frees_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("channel", "n", name=op.f("pk_send_slot")),
    )
    op.create_table(
        "send_chat",
        sa.Column("channel", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("chat", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("due", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("channel", "chat", name=op.f("pk_send_chat")),
    )


def downgrade() -> None:
    op.drop_table("send_chat")
    op.drop_table("send_slot")

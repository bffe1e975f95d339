"""the roll of the workers sending on one database: a worker alone paces itself

Used on PostgreSQL only (bot/storage/send_roll.py); created on SQLite too, empty, so both
databases have one schema.

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-07 18:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision: str = "0021"
down_revision: str | Sequence[str] | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "send_worker",
        sa.Column("worker", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("seen_at", sa.Float(), nullable=False),
        sa.Column("alone_until", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("worker", name=op.f("pk_send_worker")),
    )


def downgrade() -> None:
    op.drop_table("send_worker")

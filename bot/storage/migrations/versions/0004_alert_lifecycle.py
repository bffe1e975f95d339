"""alert lifecycle: optional deadline (info alerts), notification and resolution records

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 17:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("alert", schema=None) as batch_op:
        batch_op.alter_column(
            "ack_deadline", existing_type=sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True
        )
        batch_op.add_column(sa.Column("last_notified_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column("last_triggered_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column("occurrences", sa.Integer(), server_default="1", nullable=False))
        batch_op.add_column(sa.Column("recipients", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("resolved_by", sqlmodel.sql.sqltypes.AutoString(), nullable=True))
        batch_op.add_column(sa.Column("resolved_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
    op.execute("UPDATE alert SET recipients = '[]' WHERE recipients IS NULL")
    with op.batch_alter_table("alert", schema=None) as batch_op:
        batch_op.alter_column("recipients", existing_type=sa.JSON(), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("alert", schema=None) as batch_op:
        for column in ("resolved_at", "resolved_by", "recipients", "occurrences", "last_triggered_at", "last_notified_at"):
            batch_op.drop_column(column)
        batch_op.alter_column(
            "ack_deadline", existing_type=sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False
        )

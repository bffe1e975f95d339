"""inbound attempts: a message that keeps failing is set aside, not retried forever;
an index of the messages waiting to be processed

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 15:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("inbound_message", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("attempts", sa.SmallInteger(), server_default="0", nullable=False)
        )
        batch_op.create_index(
            "ix_inbound_message_unprocessed",
            ["id"],
            sqlite_where=sa.text("processed_at IS NULL"),
            postgresql_where=sa.text("processed_at IS NULL"),
        )


def downgrade() -> None:
    with op.batch_alter_table("inbound_message", schema=None) as batch_op:
        batch_op.drop_index("ix_inbound_message_unprocessed")
        batch_op.drop_column("attempts")

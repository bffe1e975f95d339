"""a check-in's clock runs from the delivery of its first message

Adds ``checkin.delivered_at`` (when the provider accepted its first message),
``checkin.expire_after_s`` (the expiry window, counted from that moment) and
``checkin.closes_at`` (a pre-session check-in's session start, which caps it). Check-ins
already started count as delivered when they were started (``sent_at``), as they were
timed before; their expiry stays as stored (no window).

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-05 13:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision: str = "0016"
down_revision: str | Sequence[str] | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("checkin", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("delivered_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True)
        )
        batch_op.add_column(sa.Column("expire_after_s", sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column("closes_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True)
        )
    op.execute("UPDATE checkin SET delivered_at = sent_at WHERE sent_at IS NOT NULL")


def downgrade() -> None:
    with op.batch_alter_table("checkin", schema=None) as batch_op:
        batch_op.drop_column("closes_at")
        batch_op.drop_column("expire_after_s")
        batch_op.drop_column("delivered_at")

"""audit events hash-chained; patients' discharge and erasure times (retention)

Existing audit events are chained here, in id order, exactly as the service chains new
ones (bot/storage/audit.py), so `checkin audit verify` passes on an upgraded database.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

from bot.storage.audit import GENESIS, event_hash
from bot.storage.tables import AuditEvent

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_events = sa.table(
    "audit_event",
    sa.column("id", sa.Integer()),
    sa.column("at", sqlmodel.sql.sqltypes.UTCDateTime()),
    sa.column("actor", sa.String()),
    sa.column("action", sa.String()),
    sa.column("subject", sa.String()),
    sa.column("detail", sa.JSON()),
    sa.column("prev_hash", sa.String()),
    sa.column("hash", sa.String()),
)


def upgrade() -> None:
    with op.batch_alter_table("patient", schema=None) as batch_op:
        batch_op.add_column(sa.Column("discharged_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column("erased_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
    with op.batch_alter_table("audit_event", schema=None) as batch_op:
        batch_op.add_column(sa.Column("prev_hash", sqlmodel.sql.sqltypes.AutoString(), nullable=True))
        batch_op.add_column(sa.Column("hash", sqlmodel.sql.sqltypes.AutoString(), nullable=True))
    _chain_existing(op.get_bind())
    with op.batch_alter_table("audit_event", schema=None) as batch_op:
        batch_op.alter_column("prev_hash", existing_type=sqlmodel.sql.sqltypes.AutoString(), nullable=False)
        batch_op.alter_column("hash", existing_type=sqlmodel.sql.sqltypes.AutoString(), nullable=False)


def _chain_existing(connection: sa.Connection) -> None:
    prev_hash = GENESIS
    rows = connection.execute(sa.select(_events).order_by(_events.c.id)).mappings().all()
    for row in rows:
        event = AuditEvent(**{k: row[k] for k in ("id", "at", "actor", "action", "subject", "detail")})
        digest = event_hash(prev_hash, event)
        connection.execute(
            _events.update().where(_events.c.id == row["id"]).values(prev_hash=prev_hash, hash=digest)
        )
        prev_hash = digest


def downgrade() -> None:
    with op.batch_alter_table("audit_event", schema=None) as batch_op:
        batch_op.drop_column("hash")
        batch_op.drop_column("prev_hash")
    with op.batch_alter_table("patient", schema=None) as batch_op:
        batch_op.drop_column("erased_at")
        batch_op.drop_column("discharged_at")

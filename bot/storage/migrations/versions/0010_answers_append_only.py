"""answers append-only: a changed answer is a new row; the one it replaces is marked
superseded (by which row, when); one current answer per check-in item

Existing rows are kept as they are: each is the current answer to its item (an overwrite
before this revision left no trace to recover).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04 20:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CURRENT = sa.text("superseded_at IS NULL")


def upgrade() -> None:
    with op.batch_alter_table("answer", schema=None) as batch_op:
        batch_op.add_column(sa.Column("superseded_by", sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column("superseded_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True)
        )
        batch_op.create_foreign_key(
            "fk_answer_superseded_by_answer",
            "answer",
            ["superseded_by"],
            ["id"],
            ondelete="SET NULL",
        )
        batch_op.drop_constraint("uq_answer_checkin_id_item_key", type_="unique")
        batch_op.create_index("ix_answer_checkin_item", ["checkin_id", "item_key"])
        batch_op.create_index(
            "uq_answer_current",
            ["checkin_id", "item_key"],
            unique=True,
            sqlite_where=CURRENT,
            postgresql_where=CURRENT,
        )


def downgrade() -> None:
    # only the current answers fit the old one-row-per-item shape
    op.execute("DELETE FROM answer WHERE superseded_at IS NOT NULL")
    with op.batch_alter_table("answer", schema=None) as batch_op:
        batch_op.drop_index("uq_answer_current")
        batch_op.drop_index("ix_answer_checkin_item")
        batch_op.create_unique_constraint(
            "uq_answer_checkin_id_item_key", ["checkin_id", "item_key"]
        )
        batch_op.drop_constraint("fk_answer_superseded_by_answer", type_="foreignkey")
        batch_op.drop_column("superseded_at")
        batch_op.drop_column("superseded_by")

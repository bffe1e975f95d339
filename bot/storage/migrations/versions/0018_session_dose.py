"""a treatment session's route and dose

Adds ``treatment_session.route`` (ketamine-iv, ketamine-im, esketamine-in, other),
``dose`` and ``dose_unit`` (mg/kg for ketamine, mg for esketamine). Sessions recorded
before have none: their dose was never told to the service.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-05 21:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | Sequence[str] | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("treatment_session", schema=None) as batch_op:
        batch_op.add_column(sa.Column("route", sa.String(), nullable=True))
        batch_op.add_column(sa.Column("dose", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("dose_unit", sa.String(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("treatment_session", schema=None) as batch_op:
        batch_op.drop_column("dose_unit")
        batch_op.drop_column("dose")
        batch_op.drop_column("route")

"""the language a clinician is told in: English for every clinician already stored

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-07 22:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision: str = "0022"
down_revision: str | Sequence[str] | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("clinician", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "language", sqlmodel.sql.sqltypes.AutoString(), server_default="en", nullable=False
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("clinician", schema=None) as batch_op:
        batch_op.drop_column("language")

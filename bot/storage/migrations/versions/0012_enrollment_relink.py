"""enrolment codes that may move an active patient to another chat (`--relink`)

Existing codes are not relink codes: an active patient they name stays where they are.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05 06:15:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("enrollment_code", schema=None) as batch_op:
        batch_op.add_column(sa.Column("relink", sa.Boolean(), server_default="0", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("enrollment_code", schema=None) as batch_op:
        batch_op.drop_column("relink")

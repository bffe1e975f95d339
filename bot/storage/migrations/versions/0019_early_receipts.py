"""delivery receipts kept until their message's provider id is recorded

Adds ``early_receipt``: a status callback (delivered, failed) for a provider id no
outbound message carried yet, taken by the transaction that records the send
(bot/storage/early_receipts.py). Starts empty.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-06 04:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision: str = "0019"
down_revision: str | Sequence[str] | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "early_receipt",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("channel", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("provider_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("outcome", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("error_code", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("opted_out", sa.Boolean(), nullable=False),
        sa.Column("received_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.CheckConstraint("channel IN ('sms', 'whatsapp')", name=op.f("ck_early_receipt_channel")),
        sa.CheckConstraint(
            "outcome IN ('delivered', 'failed')", name=op.f("ck_early_receipt_outcome")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_early_receipt")),
    )
    with op.batch_alter_table("early_receipt", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_early_receipt_provider_id"), ["provider_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_early_receipt_received_at"), ["received_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("early_receipt", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_early_receipt_received_at"))
        batch_op.drop_index(batch_op.f("ix_early_receipt_provider_id"))
    op.drop_table("early_receipt")

"""early receipts also keep WhatsApp's read and 63016 (held)

``early_receipt.outcome`` may also be "read" (WhatsApp's read callback) and "held" (error
63016: the 24-hour window was shut), so that neither is lost when it arrives before its
send is recorded (bot/app/outbox/receipts.py). Rows are unchanged.

Downgrading deletes the kept read and held receipts first (the old constraint refuses
them); they are a day old at most and would be lost to the old code anyway.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-07 03:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020"
down_revision: str | Sequence[str] | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BEFORE = "outcome IN ('delivered', 'failed')"
_AFTER = "outcome IN ('delivered', 'failed', 'read', 'held')"


def _outcomes(condition: str) -> None:
    with op.batch_alter_table("early_receipt", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_early_receipt_outcome"), type_="check")
        batch_op.create_check_constraint("outcome", condition)


def upgrade() -> None:
    _outcomes(_AFTER)


def downgrade() -> None:
    op.execute(sa.text("DELETE FROM early_receipt WHERE outcome IN ('read', 'held')"))
    _outcomes(_BEFORE)

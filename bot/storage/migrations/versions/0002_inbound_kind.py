"""inbound message kind; outbound messages to strangers

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 17:00:00

Telegram delivers typed text, button taps and block / unblock notices; the kind says which.
A reply to a chat or number no patient has (a refusal that reveals nothing) is addressed to
a "stranger".
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("inbound_message", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "kind",
                sqlmodel.sql.sqltypes.AutoString(),
                server_default="text",
                nullable=False,
            )
        )
        batch_op.create_check_constraint(
            "kind", "kind IN ('text', 'button', 'member')"
        )
    with op.batch_alter_table("outbound_message", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_outbound_message_recipient_kind"), type_="check")
        batch_op.create_check_constraint(
            "recipient_kind", "recipient_kind IN ('patient', 'clinician', 'stranger')"
        )


def downgrade() -> None:
    with op.batch_alter_table("outbound_message", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_outbound_message_recipient_kind"), type_="check")
        batch_op.create_check_constraint(
            "recipient_kind", "recipient_kind IN ('patient', 'clinician')"
        )
    with op.batch_alter_table("inbound_message", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_inbound_message_kind"), type_="check")
        batch_op.drop_column("kind")

"""WhatsApp: a fourth channel value; the time a WhatsApp message was read

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-05 13:30:00

Patients, clinicians, inbound and outbound messages may be on "whatsapp". Twilio's
"read" status callback is kept on the outbound message (it tells a clinician the patient
saw the question).
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision: str = "0017"
down_revision: str | Sequence[str] | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TABLES = ("clinician", "patient", "inbound_message", "outbound_message")
_BEFORE = "channel IN ('telegram', 'sms', 'console')"
_AFTER = "channel IN ('telegram', 'sms', 'console', 'whatsapp')"


def _channels(condition: str) -> None:
    for table in _TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_constraint(op.f(f"ck_{table}_channel"), type_="check")
            batch_op.create_check_constraint("channel", condition)


def upgrade() -> None:
    _channels(_AFTER)
    with op.batch_alter_table("outbound_message", schema=None) as batch_op:
        batch_op.add_column(sa.Column("read_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("outbound_message", schema=None) as batch_op:
        batch_op.drop_column("read_at")
    _channels(_BEFORE)

"""scheduling: planned occurrences, planning horizon per patient, reminders and start leases

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25 19:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "planned_occurrence",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.Integer(), nullable=False),
        sa.Column("key", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("rule", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("session_number", sa.Integer(), nullable=True),
        sa.Column("due_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("checkin_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["checkin_id"], ["checkin.id"], name=op.f("fk_planned_occurrence_checkin_id_checkin"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["patient_id"], ["patient.id"], name=op.f("fk_planned_occurrence_patient_id_patient"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_planned_occurrence")),
        sa.UniqueConstraint("patient_id", "key", name=op.f("uq_planned_occurrence_patient_id_key")),
    )
    op.create_index(op.f("ix_planned_occurrence_checkin_id"), "planned_occurrence", ["checkin_id"], unique=False)
    with op.batch_alter_table("patient", schema=None) as batch_op:
        batch_op.add_column(sa.Column("planned_until", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column("plan_lease_until", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
        batch_op.create_index(batch_op.f("ix_patient_planned_until"), ["planned_until"], unique=False)
    with op.batch_alter_table("checkin", schema=None) as batch_op:
        batch_op.add_column(sa.Column("reminder_after_s", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("max_reminders", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("next_reminder_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column("lease_until", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column("origin", sqlmodel.sql.sqltypes.AutoString(), server_default="operator", nullable=False))
        batch_op.create_check_constraint("origin", "origin IN ('operator', 'plan')")
        batch_op.create_index("ix_checkin_next_reminder", ["next_reminder_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("checkin", schema=None) as batch_op:
        batch_op.drop_index("ix_checkin_next_reminder")
        batch_op.drop_constraint("ck_checkin_origin", type_="check")
        for column in ("origin", "lease_until", "next_reminder_at", "max_reminders", "reminder_after_s"):
            batch_op.drop_column(column)
    with op.batch_alter_table("patient", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_patient_planned_until"))
        batch_op.drop_column("plan_lease_until")
        batch_op.drop_column("planned_until")
    op.drop_index(op.f("ix_planned_occurrence_checkin_id"), table_name="planned_occurrence")
    op.drop_table("planned_occurrence")

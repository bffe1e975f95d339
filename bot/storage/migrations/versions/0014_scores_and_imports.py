"""scores by session (session_number, hours_since_session), clinician-rated measures
(a score without a check-in: rated_by, time_point, components), patients imported by an
external id (kept as a keyed hash)

Existing scores get their place in the series from the treatment sessions stored now (the
held ones, started before the score: ``bot.domain.sessions``), a chunk of patients at a
time, in this one transaction.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-05 13:10:00
"""

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

from bot.domain.sessions import session_position

revision: str = "0014"
down_revision: str | Sequence[str] | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CHUNK = 500  # patients per backfill step
_AT = sqlmodel.sql.sqltypes.UTCDateTime()
_SCORE = sa.table(
    "score",
    sa.column("id"),
    sa.column("patient_id"),
    sa.column("completed_at", _AT),
    sa.column("session_number"),
    sa.column("hours_since_session"),
)
_SESSION = sa.table(
    "treatment_session",
    sa.column("patient_id"),
    sa.column("at", _AT),
    sa.column("cancelled_at", _AT),
)


def upgrade() -> None:
    with op.batch_alter_table("score", schema=None) as batch_op:
        batch_op.add_column(sa.Column("session_number", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("hours_since_session", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("rated_by", sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column("time_point", sqlmodel.sql.sqltypes.AutoString(), nullable=True)
        )
        batch_op.add_column(sa.Column("components", sa.JSON(), nullable=True))
        batch_op.alter_column("checkin_id", existing_type=sa.Integer(), nullable=True)
        batch_op.create_foreign_key(
            "fk_score_rated_by_clinician", "clinician", ["rated_by"], ["id"], ondelete="SET NULL"
        )
    op.create_table(
        "patient_external_id",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.Integer(), nullable=False),
        sa.Column("external_id_hash", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("created_at", _AT, nullable=False),
        sa.ForeignKeyConstraint(
            ["patient_id"],
            ["patient.id"],
            name="fk_patient_external_id_patient_id_patient",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_patient_external_id"),
        sa.UniqueConstraint("external_id_hash", name="uq_patient_external_id_external_id_hash"),
        sa.UniqueConstraint("patient_id", name="uq_patient_external_id_patient_id"),
    )
    _backfill()


def downgrade() -> None:
    op.execute("DELETE FROM score WHERE checkin_id IS NULL")  # measures had no place before
    op.drop_table("patient_external_id")
    with op.batch_alter_table("score", schema=None) as batch_op:
        batch_op.drop_constraint("fk_score_rated_by_clinician", type_="foreignkey")
        batch_op.alter_column("checkin_id", existing_type=sa.Integer(), nullable=False)
        for column in ("components", "time_point", "rated_by", "hours_since_session"):
            batch_op.drop_column(column)
        batch_op.drop_column("session_number")


def _backfill() -> None:
    connection = op.get_bind()
    after = 0
    while True:
        patients = connection.execute(
            sa.select(_SCORE.c.patient_id)
            .distinct()
            .where(_SCORE.c.patient_id > after)
            .order_by(_SCORE.c.patient_id)
            .limit(CHUNK)
        ).scalars().all()  # fmt: skip
        if not patients:
            return
        starts = _session_starts(connection, patients)
        scores = connection.execute(
            sa.select(_SCORE.c.id, _SCORE.c.patient_id, _SCORE.c.completed_at).where(
                _SCORE.c.patient_id.in_(patients)
            )
        ).all()
        for score_id, patient_id, completed_at in scores:
            place = session_position(starts[patient_id], completed_at)
            connection.execute(
                sa.update(_SCORE)
                .where(_SCORE.c.id == score_id)
                .values(
                    session_number=place.session_number,
                    hours_since_session=place.hours_since_session,
                )
            )
        after = patients[-1]


def _session_starts(connection: sa.Connection, patients: Sequence[int]) -> dict[int, list[datetime]]:
    rows = connection.execute(
        sa.select(_SESSION.c.patient_id, _SESSION.c.at).where(
            _SESSION.c.patient_id.in_(patients), _SESSION.c.cancelled_at.is_(None)
        )
    ).all()
    starts: dict[int, list[datetime]] = defaultdict(list)
    for patient_id, at in rows:
        starts[patient_id].append(at)
    return starts

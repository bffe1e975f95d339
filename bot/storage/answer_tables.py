"""SQLModel tables of what patients answered and how it scored: ``answer`` and ``score``.

Answers are append-only. A reply is stored once as given; when the patient goes BACK and
answers an item again, the new answer is a new row and the earlier one is marked with
``superseded_by`` (the new row's id) and ``superseded_at`` (when it was replaced), never
changed otherwise nor deleted. So a check-in item has any number of rows, of which exactly
one is *current* (``superseded_at IS NULL``): scoring uses it, and a partial unique index
keeps it single, which is also what makes storing an answer idempotent (``INSERT ... ON
CONFLICT DO NOTHING`` on that index). Exports and ``patient show`` list every row.

A score is a check-in's (``checkin_id`` set) or a clinician-rated measure entered by an
operator (``checkin_id`` NULL, ``rated_by`` the rating clinician if named; a blood-pressure
reading keeps its ``time_point`` and its ``components``). Every score carries its place in
the treatment series, ``session_number`` and ``hours_since_session``
(``bot.domain.sessions``), fixed when it is made.
"""

from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index, UniqueConstraint, text
from sqlmodel import Field, SQLModel

import bot.storage.naming  # noqa: F401  (constraint names: set before any table is defined)
from bot.storage.crypto import EncryptedText

CURRENT = text("superseded_at IS NULL")  # the one answer to an item that stands


class Answer(SQLModel, table=True):
    __table_args__ = (
        Index(
            "uq_answer_current",
            "checkin_id",
            "item_key",
            unique=True,
            sqlite_where=CURRENT,
            postgresql_where=CURRENT,
        ),
        Index("ix_answer_checkin_item", "checkin_id", "item_key"),
    )

    id: int | None = Field(default=None, primary_key=True)
    checkin_id: int = Field(foreign_key="checkin.id", ondelete="CASCADE")
    item_key: str
    instrument: str
    value_int: int | None = None
    value_text: str | None = Field(default=None, sa_type=EncryptedText("answer.value_text"))
    raw_text: str = Field(sa_type=EncryptedText("answer.raw_text"))
    inbound_message_id: int | None = Field(
        default=None, foreign_key="inbound_message.id", ondelete="SET NULL"
    )
    answered_at: datetime
    # set once, when a later answer to the same item replaces this one (BACK)
    superseded_by: int | None = Field(default=None, foreign_key="answer.id", ondelete="SET NULL")
    superseded_at: datetime | None = None


class Score(SQLModel, table=True):
    __table_args__ = (
        UniqueConstraint("checkin_id", "instrument"),
        Index("ix_score_patient_instrument_completed", "patient_id", "instrument", "completed_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    checkin_id: int | None = Field(default=None, foreign_key="checkin.id", ondelete="CASCADE")
    patient_id: int = Field(foreign_key="patient.id", ondelete="CASCADE")
    instrument: str
    total: int | None = None
    band: str | None = None
    valid: bool
    prorated: bool = False
    flags: list[str] = Field(default_factory=list, sa_type=JSON)
    completed_at: datetime
    session_number: int | None = None  # None: no treatment session data when it was made
    hours_since_session: float | None = None  # None: before the first session
    rated_by: int | None = Field(default=None, foreign_key="clinician.id", ondelete="SET NULL")
    time_point: str | None = None  # blood pressure: "pre", "40min", "2h"
    components: dict[str, Any] | None = Field(default=None, sa_type=JSON)


@dataclass(slots=True, kw_only=True)
class NewAnswer:
    """An answer to insert, as a plain object: what a turn stores.

    Building an `Answer` (a SQLModel table row) took about 250 Python calls, a thirtieth
    of a Telegram turn, for a row never added to a session: `Repository.save_answer`
    inserts column values with Core. This one gives the same values
    (tests/storage/test_answers.py compares the two column by column, so a column added
    to the table must be added here)."""

    checkin_id: int
    item_key: str
    instrument: str
    value_int: int | None = None
    value_text: str | None = None
    raw_text: str
    inbound_message_id: int | None = None
    answered_at: datetime
    superseded_by: int | None = None
    superseded_at: datetime | None = None

    def values(self) -> dict[str, Any]:
        """The column values of its INSERT (the database assigns the id)."""
        return {name: getattr(self, name) for name in _NEW_ANSWER_COLUMNS}


_NEW_ANSWER_COLUMNS = tuple(f.name for f in fields(NewAnswer))

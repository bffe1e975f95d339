"""The ``patient_external_id`` table: the id a clinic's own records give a patient, named
in the ``external_id`` column of ``checkin patient import``, so importing the same file
again finds the patients it enrolled before instead of enrolling them twice.

Only a keyed hash of the id is stored (``bot.storage.crypto.lookup_hash`` of
:func:`external_text`): a medical record number is an identifier, and a lookup needs no
more. A lookup compares with the hash under every key of the ring, so a re-import after a
key rotation still finds the patient.
"""

from datetime import UTC, datetime

from sqlmodel import Field, SQLModel

import bot.storage.naming  # noqa: F401  (constraint names: set before any table is defined)


def external_text(external_id: str) -> str:
    """What is hashed: the prefix keeps these apart from hashes of numbers and chat ids."""
    return f"patient-external:{external_id}"


def _now() -> datetime:
    return datetime.now(UTC)


class PatientExternalId(SQLModel, table=True):
    __tablename__ = "patient_external_id"

    id: int | None = Field(default=None, primary_key=True)
    patient_id: int = Field(foreign_key="patient.id", ondelete="CASCADE", unique=True)
    external_id_hash: str = Field(unique=True)
    created_at: datetime = Field(default_factory=_now)

"""Plain, frozen copies of stored rows, as the operator use cases return them to the entry
points (the CLI; later the web panel). No ORM object, session or lazy load leaves
``bot.app`` through them. Times stay aware datetimes: printing them is the entry point's
business.

``CHANNELS``, ``PATIENT_STATUSES`` and ``CHECKIN_STATUSES`` are the values a view's
``channel`` and ``status`` take, for entry points that check what an operator typed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from bot.storage.tables import CHANNELS as CHANNELS
from bot.storage.tables import CHECKIN_STATUSES as CHECKIN_STATUSES
from bot.storage.tables import PATIENT_STATUSES as PATIENT_STATUSES
from bot.storage.tables import Alert, Answer, Checkin, Clinician, Patient, Score


def _id(row_id: int | None) -> int:
    assert row_id is not None, "a stored row has an id"
    return row_id


@dataclass(frozen=True)
class PatientView:
    id: int
    name: str
    channel: str
    status: str
    timezone: str
    language: str
    clinician_id: int | None
    protocol: str | None

    @classmethod
    def of(cls, row: Patient) -> PatientView:
        return cls(
            _id(row.id),
            row.display_name,
            row.channel,
            row.status,
            row.timezone,
            row.language,
            row.clinician_id,
            row.protocol,
        )


@dataclass(frozen=True)
class ClinicianView:
    id: int
    name: str
    channel: str
    active: bool
    backup_clinician_id: int | None
    language: str = "en"

    @classmethod
    def of(cls, row: Clinician) -> ClinicianView:
        return cls(_id(row.id), row.display_name, row.channel, row.active,
                   row.backup_clinician_id, row.language)  # fmt: skip


@dataclass(frozen=True)
class CheckinView:
    id: int
    patient_id: int
    instruments: tuple[str, ...]
    status: str
    due_at: datetime
    expires_at: datetime
    completed_at: datetime | None
    partial: bool

    @classmethod
    def of(cls, row: Checkin) -> CheckinView:
        return cls(
            _id(row.id),
            row.patient_id,
            tuple(row.instruments),
            row.status,
            row.due_at,
            row.expires_at,
            row.completed_at,
            row.partial,
        )


@dataclass(frozen=True)
class ScoreView:
    """A score: a check-in's (`checkin_id`) or a clinician-rated measure (`checkin_id`
    None; `rated_by`, and for blood pressure `time_point` and `components`), with its
    place in the treatment series as fixed when it was made."""

    checkin_id: int | None
    instrument: str
    total: int | None
    band: str | None
    valid: bool
    prorated: bool
    flags: tuple[str, ...]
    completed_at: datetime
    session_number: int | None = None
    hours_since_session: float | None = None
    id: int | None = None
    rated_by: int | None = None
    time_point: str | None = None
    components: tuple[tuple[str, int], ...] = ()

    @classmethod
    def of(cls, row: Score) -> ScoreView:
        return cls(
            row.checkin_id,
            row.instrument,
            row.total,
            row.band,
            row.valid,
            row.prorated,
            tuple(row.flags),
            row.completed_at,
            row.session_number,
            row.hours_since_session,
            row.id,
            row.rated_by,
            row.time_point,
            tuple((row.components or {}).items()),
        )


@dataclass(frozen=True)
class AnswerView:
    """One answer as given (the stored value, never the patient's words); one the patient
    replaced by going BACK names the answer that replaced it and when."""

    id: int
    checkin_id: int
    item_key: str
    value: int | str | None
    answered_at: datetime
    superseded_by: int | None
    superseded_at: datetime | None

    @classmethod
    def of(cls, row: Answer) -> AnswerView:
        value = row.value_int if row.value_int is not None else row.value_text
        return cls(
            _id(row.id),
            row.checkin_id,
            row.item_key,
            value,
            row.answered_at,
            row.superseded_by,
            row.superseded_at,
        )


@dataclass(frozen=True)
class AlertBrief:
    """An alert in a patient's record: what fired, how urgent, where it stands."""

    id: int
    rule: str
    level: str
    status: str
    code: str

    @classmethod
    def of(cls, row: Alert) -> AlertBrief:
        return cls(_id(row.id), row.rule, row.level, row.status, row.code)

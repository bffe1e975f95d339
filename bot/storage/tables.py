"""SQLModel tables: the database shape of patients, check-ins, answers, alerts and messages.

Every ``datetime`` field is stored as an aware UTC timestamp (sqlmodel's ``UTCDateTime``);
naive values are refused when written. Names, numbers, chat ids and free text are
``EncryptedText`` (``bot.storage.crypto``), a check-in's conversation state is
``EncryptedJSON`` and a provider's message id is kept only as a keyed hash; a number or
chat id is found by its lookup hash column, kept in step with it on every write
(``set_lookup_hash``). Closed sets of
values (channels, statuses) are plain text columns guarded by CHECK constraints, so adding
a value is a small migration on both SQLite and PostgreSQL. Constraint names follow
``NAMING_CONVENTION`` (``bot.storage.naming``) so later migrations (SQLite batch mode
included) can refer to them. Answers and scores are in ``bot.storage.answer_tables``,
the web panel's accounts and sessions in ``bot.storage.account_tables`` (re-exported here).
"""

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    CheckConstraint,
    Column,
    Index,
    Integer,
    SmallInteger,
    Text,
    UniqueConstraint,
    event,
    text,
)
from sqlalchemy import inspect as sa_inspect
from sqlmodel import Field, SQLModel

from bot.storage.account_tables import PanelAccount as PanelAccount
from bot.storage.account_tables import PanelLoginFailure as PanelLoginFailure
from bot.storage.account_tables import PanelSession as PanelSession
from bot.storage.answer_tables import Answer as Answer
from bot.storage.answer_tables import Score as Score
from bot.storage.crypto import EncryptedJSON, EncryptedText, lookup_hash
from bot.storage.early_receipts import EarlyReceipt as EarlyReceipt
from bot.storage.import_tables import PatientExternalId as PatientExternalId
from bot.storage.naming import NAMING_CONVENTION as NAMING_CONVENTION
from bot.storage.send_allowance import SendChat as SendChat
from bot.storage.send_allowance import SendSlot as SendSlot
from bot.storage.send_roll import SendWorker as SendWorker

CHANNELS = ("telegram", "sms", "console", "whatsapp")
PATIENT_STATUSES = ("invited", "active", "paused", "opted_out", "blocked", "discharged")
CHECKIN_ORIGINS = ("operator", "plan")  # asked by hand, or planned from the protocol
CHECKIN_STATUSES = (
    "pending",
    "sent",
    "in_progress",
    "paused",
    "completed",
    "expired",
    "cancelled",
)
ALERT_STATUSES = ("open", "acknowledged", "resolved")
RECIPIENT_KINDS = ("patient", "clinician", "stranger")  # stranger: an unlinked chat or number
INBOUND_KINDS = ("text", "button", "member")  # typed text, a tapped button, a block/unblock
OUTBOX_STATUSES = ("queued", "sending", "sent", "delivered", "failed", "dead")


def utcnow() -> datetime:
    """The current time, aware, in UTC (for bookkeeping columns only)."""
    return datetime.now(UTC)


def one_of(column: str, values: tuple[str, ...]) -> CheckConstraint:
    """A CHECK constraint that keeps `column` inside a closed set of text values."""
    allowed = ", ".join(f"'{value}'" for value in values)
    return CheckConstraint(f"{column} IN ({allowed})", name=column)


class Clinician(SQLModel, table=True):
    __table_args__ = (one_of("channel", CHANNELS),)

    id: int | None = Field(default=None, primary_key=True)
    display_name: str = Field(sa_type=EncryptedText("clinician.display_name"))
    channel: str
    address: str | None = Field(default=None, sa_type=EncryptedText("clinician.address"))
    address_hash: str | None = Field(default=None, index=True)  # set on flush (see below)
    backup_clinician_id: int | None = Field(
        default=None, foreign_key="clinician.id", ondelete="SET NULL"
    )
    active: bool = True
    # what their alerts, digests and command answers are worded in (one of the renderer's
    # LANGUAGES): a Spanish-speaking clinic was told in English before
    language: str = Field(default="en", sa_column_kwargs={"server_default": "en"})
    created_at: datetime = Field(default_factory=utcnow)


class Patient(SQLModel, table=True):
    __table_args__ = (one_of("channel", CHANNELS), one_of("status", PATIENT_STATUSES))

    id: int | None = Field(default=None, primary_key=True)
    display_name: str = Field(sa_type=EncryptedText("patient.display_name"))
    timezone: str
    language: str = "en"
    channel: str
    address: str | None = Field(default=None, sa_type=EncryptedText("patient.address"))
    address_hash: str | None = Field(default=None, index=True)  # set on flush (see below)
    status: str = Field(default="invited", index=True)
    clinician_id: int | None = Field(default=None, foreign_key="clinician.id", index=True)
    protocol: str | None = None
    consent_at: datetime | None = None
    # Planning: check-ins of the protocol are stored as rows up to this time. None: plan
    # again from now (a new protocol, or treatment sessions changed). A worker planning
    # the patient holds the lease so others pass it by.
    planned_until: datetime | None = Field(default=None, index=True)
    plan_lease_until: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow, sa_column_kwargs={"onupdate": utcnow})
    discharged_at: datetime | None = None  # the retention period counts from here
    erased_at: datetime | None = None  # identifying data wiped (bot/retention.py)


class EnrollmentCode(SQLModel, table=True):
    __tablename__ = "enrollment_code"
    __table_args__ = (
        CheckConstraint("(patient_id IS NULL) <> (clinician_id IS NULL)", name="one_subject"),
    )

    id: int | None = Field(default=None, primary_key=True)
    code_hash: str = Field(unique=True)
    patient_id: int | None = Field(
        default=None, foreign_key="patient.id", ondelete="CASCADE", index=True
    )
    clinician_id: int | None = Field(
        default=None, foreign_key="clinician.id", ondelete="CASCADE", index=True
    )
    expires_at: datetime
    used_at: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)
    # the operator's --relink: this code may move an active patient to another chat
    relink: bool = Field(default=False, sa_column_kwargs={"server_default": "0"})


class TreatmentSession(SQLModel, table=True):
    __tablename__ = "treatment_session"
    __table_args__ = (Index("ix_treatment_session_patient_at", "patient_id", "at"),)

    id: int | None = Field(default=None, primary_key=True)
    patient_id: int = Field(foreign_key="patient.id", ondelete="CASCADE")
    number: int
    kind: str
    at: datetime
    cancelled_at: datetime | None = None
    # what was given (bot.domain.dosing): route, and the dose in its unit when recorded
    route: str | None = None
    dose: float | None = None
    dose_unit: str | None = None


_CHECKIN_VERSION: Column[int] = Column("version", Integer, nullable=False)


class Checkin(SQLModel, table=True):
    """One planned administration of one or more instruments.

    `version` is SQLAlchemy's version counter: every ORM flush of a changed check-in runs
    ``UPDATE ... WHERE id = :id AND version = :seen`` and bumps it, so a stale copy raises
    ``sqlalchemy.orm.exc.StaleDataError`` instead of overwriting a newer state.
    """

    __mapper_args__ = {"version_id_col": _CHECKIN_VERSION}
    __table_args__ = (
        one_of("status", CHECKIN_STATUSES),
        one_of("origin", CHECKIN_ORIGINS),
        Index("ix_checkin_patient_due", "patient_id", "due_at"),
        Index("ix_checkin_status_due", "status", "due_at"),
        Index("ix_checkin_next_reminder", "next_reminder_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    patient_id: int = Field(foreign_key="patient.id", ondelete="CASCADE")
    idempotency_key: str = Field(unique=True)
    instruments: list[str] = Field(default_factory=list, sa_type=JSON)
    status: str = "pending"
    due_at: datetime
    sent_at: datetime | None = None
    completed_at: datetime | None = None
    expires_at: datetime
    # The clock runs from delivery (bot/domain/deadlines.py): `delivered_at` is when the
    # provider accepted its first message; reminders and expiry wait for it; the expiry
    # is then `expire_after_s` after it, capped at `closes_at` (a session's start).
    delivered_at: datetime | None = None
    expire_after_s: int | None = None
    closes_at: datetime | None = None
    reminders_sent: int = 0
    # Reminders: at most `max_reminders`, each `reminder_after_s` after the latest message
    # or answer; `next_reminder_at` is when the next one is due (None: no more).
    reminder_after_s: int | None = None
    max_reminders: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    next_reminder_at: datetime | None = None
    # Starting it: a worker holds the lease while it sends the first question; a check-in
    # held back (quiet hours, another one open) waits until the lease ends.
    lease_until: datetime | None = None
    origin: str = Field(default="operator", sa_column_kwargs={"server_default": "operator"})
    partial: bool = False
    # Sent even in the patient's quiet hours (an operator's explicit `checkin ask --now`).
    ignore_quiet_hours: bool = Field(default=False, sa_column_kwargs={"server_default": "0"})
    # the conversation (answers so far included), sealed: bot.storage.crypto.EncryptedJSON
    state: dict[str, Any] = Field(default_factory=dict, sa_type=EncryptedJSON("checkin.state"))
    version: int = Field(default=1, sa_column=_CHECKIN_VERSION)
    created_at: datetime = Field(default_factory=utcnow)


class PlannedOccurrence(SQLModel, table=True):
    """One occurrence of a protocol rule, planned once: ``(patient, key)`` is unique, so
    however often and by however many workers a patient is planned, each intended
    check-in ("before_session:3", "weekly:2026-03-09") becomes at most one check-in row.
    Several occurrences due close together share one check-in (a bundle)."""

    __tablename__ = "planned_occurrence"
    __table_args__ = (UniqueConstraint("patient_id", "key"),)

    id: int | None = Field(default=None, primary_key=True)
    patient_id: int = Field(foreign_key="patient.id", ondelete="CASCADE")
    key: str
    rule: str
    session_number: int | None = None
    due_at: datetime
    checkin_id: int | None = Field(
        default=None, foreign_key="checkin.id", ondelete="CASCADE", index=True
    )
    created_at: datetime = Field(default_factory=utcnow)


class Alert(SQLModel, table=True):
    __table_args__ = (
        one_of("status", ALERT_STATUSES),
        Index("ix_alert_patient_created", "patient_id", "created_at"),
        Index("ix_alert_status_deadline", "status", "ack_deadline"),
        Index(
            "uq_alert_open_code",
            "code",
            unique=True,
            sqlite_where=text("status = 'open'"),
            postgresql_where=text("status = 'open'"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    patient_id: int = Field(foreign_key="patient.id", ondelete="CASCADE")
    rule: str
    level: str
    status: str = "open"
    code: str
    detail: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow, sa_column_kwargs={"onupdate": utcnow})
    ack_deadline: datetime | None = None  # None: informational, no acknowledgement expected
    acknowledged_by: int | None = Field(default=None, foreign_key="clinician.id")
    acknowledged_at: datetime | None = None
    escalation_count: int = 0
    last_notified_at: datetime | None = None
    last_triggered_at: datetime | None = None
    occurrences: int = Field(default=1, sa_column_kwargs={"server_default": "1"})
    recipients: list[int] = Field(default_factory=list, sa_type=JSON)  # clinicians told so far
    resolved_by: str | None = None  # "clinician:<id>", "system", ...
    resolved_at: datetime | None = None


_UNPROCESSED = text("processed_at IS NULL")  # (the class below has a column named `text`)


class InboundMessage(SQLModel, table=True):
    __tablename__ = "inbound_message"
    __table_args__ = (
        one_of("channel", CHANNELS),
        one_of("kind", INBOUND_KINDS),
        UniqueConstraint("channel", "provider_hash"),
        # the few waiting to be processed, out of every message ever received: the
        # recovery pass looks for them every tick (a scan of 300,000 rows took 51 ms)
        Index(
            "ix_inbound_message_unprocessed",
            "id",
            sqlite_where=_UNPROCESSED,
            postgresql_where=_UNPROCESSED,
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    channel: str
    # the provider's message id (a Telegram one holds the chat id) as a keyed hash only:
    # bot.storage.crypto.provider_hashes; enough to drop a redelivered message
    provider_hash: str
    sender: str = Field(sa_type=EncryptedText("inbound_message.sender"))
    sender_hash: str | None = Field(default=None, index=True)  # set on insert (see below)
    kind: str = Field(default="text", sa_column_kwargs={"server_default": "text"})
    text: str = Field(sa_type=EncryptedText("inbound_message.text"))
    received_at: datetime
    processed_at: datetime | None = None
    error: str | None = Field(default=None, sa_type=Text)
    # failed processing attempts; at INBOUND_ATTEMPTS the message is set aside (processed_at
    # set, error "set_aside:<exception>") so it blocks neither its sender nor recovery
    attempts: int = Field(default=0, sa_type=SmallInteger, sa_column_kwargs={"server_default": "0"})


class OutboundMessage(SQLModel, table=True):
    """The outbox. A recipient's rows are delivered strictly in id order."""

    __tablename__ = "outbound_message"
    __table_args__ = (
        one_of("channel", CHANNELS),
        one_of("recipient_kind", RECIPIENT_KINDS),
        one_of("status", OUTBOX_STATUSES),
        Index("ix_outbound_message_status_next", "status", "next_attempt_at"),
        Index("ix_outbound_message_recipient", "recipient_kind", "recipient_id", "id"),
        Index("ix_outbound_message_provider", "channel", "provider_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    channel: str
    recipient_kind: str
    recipient_id: int
    address: str = Field(sa_type=EncryptedText("outbound_message.address"))
    body: str = Field(sa_type=EncryptedText("outbound_message.body"))
    payload: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    idempotency_key: str = Field(unique=True)
    # which recipients' next messages are claimed first (bot/storage/outbox.py: URGENT,
    # REPLY, ROUTINE); a recipient's own messages still go strictly in id order
    priority: int = Field(default=0, sa_type=SmallInteger, sa_column_kwargs={"server_default": "0"})
    status: str = "queued"
    attempts: int = 0
    next_attempt_at: datetime
    lease_until: datetime | None = None
    provider_id: str | None = None
    last_error: str | None = Field(default=None, sa_type=Text)
    created_at: datetime = Field(default_factory=utcnow)
    sent_at: datetime | None = None
    read_at: datetime | None = None  # WhatsApp's "read" receipt: the recipient opened it


class AuditEvent(SQLModel, table=True):
    """One append-only audit record, hash-chained to the one before it (bot/storage/audit.py).

    ``hash`` is SHA-256 over ``prev_hash`` and the canonical JSON of at, actor, action,
    subject and detail; ``prev_hash`` is the previous event's hash (id order), or
    ``GENESIS`` for the first. Write events only through ``Repository.audit``.
    """

    __tablename__ = "audit_event"
    __table_args__ = (Index("ix_audit_event_subject_at", "subject", "at"),)

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(index=True)
    actor: str
    action: str
    subject: str
    detail: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    prev_hash: str = ""
    hash: str = ""


# A lookup hash follows its plaintext column on every write: through the ORM's flush events
# for rows the session writes, through `set_lookup_hash` for single INSERT statements.
LOOKUP_HASHES: dict[type[SQLModel], tuple[str, str]] = {
    Patient: ("address", "address_hash"),
    Clinician: ("address", "address_hash"),
    InboundMessage: ("sender", "sender_hash"),
    PanelAccount: ("email", "email_hash"),
}


def set_lookup_hash(row: SQLModel) -> None:
    """Set the row's lookup hash from its plaintext number or chat id (if it has one)."""
    pair = LOOKUP_HASHES.get(type(row))
    if pair is not None:
        plain, hashed = pair
        setattr(row, hashed, lookup_hash(getattr(row, plain)))


def _before_insert(_mapper: Any, _connection: Any, row: SQLModel) -> None:
    set_lookup_hash(row)


def _before_update(_mapper: Any, _connection: Any, row: SQLModel) -> None:
    plain, _ = LOOKUP_HASHES[type(row)]
    if sa_inspect(row).attrs[plain].history.has_changes():
        set_lookup_hash(row)


for _table in LOOKUP_HASHES:
    event.listen(_table, "before_insert", _before_insert)
    event.listen(_table, "before_update", _before_update)

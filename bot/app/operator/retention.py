"""Retention: discharge a patient, then erase what identifies them.

* :func:`discharge` ends care: status ``discharged``, every check-in not yet finished
  cancelled, the time kept (the retention period counts from it).
* :func:`erase` removes the patient's name, number or chat id, time zone and clinician
  link, every message to or from them (inbound and outbound, alert notices about them
  included) and their enrolment codes. With ``keep_scores`` the patient row stays as a
  wiped pseudonym carrying their check-ins, answer values (no raw text) and scores;
  without it the row and everything hanging from it is deleted.
* :func:`purge_due` erases every patient discharged longer ago than the configured
  period; the scheduler tick and ``checkin retention run`` call it.

Each of these is audited with opaque ids and counts only. On SQLite, erased bytes are
zeroed in the file (``secure_delete``) and the write-ahead log is checkpointed and
truncated afterwards, so they do not linger there either.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, or_, update
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.app.ports import Clock
from bot.config import Retention
from bot.domain.errors import CheckinError, NotFound
from bot.storage.checkins import OPEN_STATUSES
from bot.storage.crypto import lookup_hashes
from bot.storage.database import Database
from bot.storage.repository import Repository
from bot.storage.tables import (
    Alert,
    Answer,
    Checkin,
    EnrollmentCode,
    InboundMessage,
    OutboundMessage,
    Patient,
    PatientExternalId,
)

ERASED_NAME = "(erased)"


class AlreadyErased(CheckinError):
    def __init__(self, patient_id: int) -> None:
        super().__init__(f"patient {patient_id} was erased already")


@dataclass(frozen=True)
class Erasure:
    patient_id: int
    kept_scores: bool
    inbound_deleted: int
    outbound_deleted: int


async def discharge(db: Database, patient_id: int, now: datetime, actor: str) -> int:
    """Discharge the patient; how many check-ins were cancelled."""
    async with db.transaction() as session:
        repo = Repository(session)
        patient = await _live_patient(repo, patient_id)
        cancelled = await _discharge(repo, patient, now)
        await repo.audit(now, actor, "discharged", f"patient:{patient_id}", cancelled=cancelled)
    return cancelled


async def _live_patient(repo: Repository, patient_id: int) -> Patient:
    patient = await repo.lock_patient(patient_id)
    if patient is None:
        raise NotFound("patient", patient_id)
    if patient.erased_at is not None:
        raise AlreadyErased(patient_id)
    return patient


async def _discharge(repo: Repository, patient: Patient, now: datetime) -> int:
    patient.status = "discharged"
    patient.discharged_at = patient.discharged_at or now
    await repo.add(patient)
    result = await repo.session.exec(
        update(Checkin)
        .where(
            col(Checkin.patient_id) == patient.id,
            col(Checkin.status).in_(("pending", *OPEN_STATUSES)),
        )
        .values(status="cancelled", version=col(Checkin.version) + 1)
    )
    return int(result.rowcount)


async def erase(
    db: Database, patient_id: int, now: datetime, *, keep_scores: bool, actor: str
) -> Erasure:
    """Erase the patient's identifying data (discharging them first if need be)."""
    async with db.transaction() as session:
        repo = Repository(session)
        patient = await _live_patient(repo, patient_id)
        if patient.status != "discharged":
            await _discharge(repo, patient, now)
        inbound = await _delete_inbound(session, patient)
        outbound = await _delete_outbound(session, patient)
        await session.exec(
            delete(EnrollmentCode).where(col(EnrollmentCode.patient_id) == patient_id)
        )
        await session.exec(  # the clinic's own id for them (`patient import`), hashed
            delete(PatientExternalId).where(col(PatientExternalId.patient_id) == patient_id)
        )
        if keep_scores:
            await _wipe(repo, patient, now)
        else:
            await session.exec(delete(Patient).where(col(Patient.id) == patient_id))
        erasure = Erasure(patient_id, keep_scores, inbound, outbound)
        await repo.audit(
            now, actor, "patient_erased", f"patient:{patient_id}",
            kept_scores=keep_scores, inbound_deleted=inbound, outbound_deleted=outbound,
        )  # fmt: skip
    await _forget_sqlite_history(db)
    return erasure


async def _answer_inbound_ids(session: AsyncSession, patient_id: int) -> list[int]:
    statement = (
        select(Answer.inbound_message_id)
        .join(Checkin, col(Checkin.id) == col(Answer.checkin_id))
        .where(Checkin.patient_id == patient_id, col(Answer.inbound_message_id).is_not(None))
    )
    return [i for i in (await session.exec(statement)).all() if i is not None]


async def _delete_inbound(session: AsyncSession, patient: Patient) -> int:
    """Every message they sent: from their address, or answering their check-ins."""
    assert patient.id is not None
    mine: list[ColumnElement[bool]] = [
        col(InboundMessage.id).in_(await _answer_inbound_ids(session, patient.id))
    ]
    if patient.address:  # by lookup hash: the sender column itself is encrypted
        mine.append(
            (col(InboundMessage.channel) == patient.channel)
            & col(InboundMessage.sender_hash).in_(lookup_hashes(patient.address))
        )
    result = await session.exec(delete(InboundMessage).where(or_(*mine)))
    return int(result.rowcount)


async def _delete_outbound(session: AsyncSession, patient: Patient) -> int:
    """Every message to them, to their address, and every clinician notice about them."""
    alert_ids = (await session.exec(select(Alert.id).where(Alert.patient_id == patient.id))).all()
    mine: list[ColumnElement[bool]] = [
        (col(OutboundMessage.recipient_kind) == "patient")
        & (col(OutboundMessage.recipient_id) == patient.id),
        *(col(OutboundMessage.idempotency_key).startswith(f"alert{a}:") for a in alert_ids),
    ]
    if patient.address:  # replies sent before they were linked (encrypted: compared here)
        strangers = select(OutboundMessage.id, OutboundMessage.address).where(
            OutboundMessage.channel == patient.channel,
            OutboundMessage.recipient_kind == "stranger",
        )
        found = [
            i for i, address in (await session.exec(strangers)).all() if address == patient.address
        ]
        mine.append(col(OutboundMessage.id).in_(found))
    result = await session.exec(delete(OutboundMessage).where(or_(*mine)))
    return int(result.rowcount)


async def _wipe(repo: Repository, patient: Patient, now: datetime) -> None:
    """Keep the row as a pseudonym: no name, address, zone or clinician; no raw answers."""
    checkins = select(Checkin.id).where(Checkin.patient_id == patient.id)
    await repo.session.exec(
        update(Answer).where(col(Answer.checkin_id).in_(checkins)).values(raw_text="")
    )
    await repo.session.exec(delete(Alert).where(col(Alert.patient_id) == patient.id))
    patient.display_name = ERASED_NAME
    patient.address = None
    patient.timezone = "UTC"
    patient.clinician_id = None
    patient.erased_at = now
    await repo.add(patient)


async def _forget_sqlite_history(db: Database) -> None:
    """SQLite: copy the log into the file and truncate it, so old page images go too."""
    if db.dialect != "sqlite":
        return
    async with db.maintenance() as connection:
        cursor = await connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        await cursor.close()


# ---- the retention stage ------------------------------------------------------------


@dataclass(frozen=True)
class PurgeReport:
    due: tuple[int, ...]  # patient ids past the period
    erased: tuple[int, ...]  # those erased now (empty on a dry run)


async def due_for_erasure(db: Database, retention: Retention, now: datetime) -> list[int]:
    """Patients discharged more than ``delete_after_days`` ago and not yet erased."""
    cutoff = now - timedelta(days=retention.delete_after_days)
    statement = (
        select(Patient.id)
        .where(
            Patient.status == "discharged",
            col(Patient.discharged_at) <= cutoff,
            col(Patient.erased_at).is_(None),
        )
        .order_by(col(Patient.id))
    )
    async with db.transaction() as session:
        return [i for i in (await session.exec(statement)).all() if i is not None]


async def purge_due(
    db: Database, retention: Retention, clock: Clock, *, dry_run: bool = False
) -> PurgeReport:
    """Erase every patient past the retention period (the scheduler tick calls this)."""
    due = await due_for_erasure(db, retention, clock())
    if dry_run:
        return PurgeReport(tuple(due), ())
    erased = []
    for patient_id in due:
        await erase(
            db, patient_id, clock(), keep_scores=retention.keep_deidentified_scores, actor="system"
        )
        erased.append(patient_id)
    return PurgeReport(tuple(due), tuple(erased))

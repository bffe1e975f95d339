"""Queries the conversation use cases need: who sent this, which check-in is open, what is
due or overdue. Small functions over one session, like the repository's methods."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from typing import Any, Literal

from sqlalchemy import ScalarSelect, and_, bindparam, or_, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.storage import bulk
from bot.storage.crypto import lookup_hashes
from bot.storage.repository import Repository
from bot.storage.tables import Checkin, Clinician, InboundMessage, OutboundMessage, Patient

OPEN_STATUSES = ("sent", "in_progress", "paused")
CLOSED_STATUSES = ("completed", "expired", "cancelled")
ACTIVE_PATIENT = ("active",)

# Built once, run with parameters: a turn finds its patient and open check-in with these
# (see `bot.storage.prebuilt` for what that saves).
_PATIENT_BY_HASH = (
    select(Patient)
    .where(
        Patient.channel == bindparam("b_channel"),
        col(Patient.address_hash).in_(bindparam("b_hashes", expanding=True)),
    )
    .order_by(col(Patient.id))
    .limit(1)
)
_PATIENT_BY_HASH_LOCKED = _PATIENT_BY_HASH.with_for_update().execution_options(
    populate_existing=True
)
_OPEN_CHECKIN = (
    select(Checkin)
    .where(
        Checkin.patient_id == bindparam("b_patient_id"),
        col(Checkin.status).in_(OPEN_STATUSES),
    )
    .order_by(col(Checkin.due_at), col(Checkin.id))
)
_ASKED = OutboundMessage.__table__.alias("asked")  # type: ignore[attr-defined]
_SCANNED = OutboundMessage.__table__.alias("scanned")  # type: ignore[attr-defined]


def _last_asked(patient_id: Any) -> ScalarSelect[Any]:
    """The row of the last question sent to the patient (None: none), as a subquery: a
    turn's edit of the question it answers needs its provider's id (bot/app/outbox/edits.py)
    and reads it with the patient, not in a statement of its own. Only for Telegram, the
    one channel that edits: elsewhere delivery receipts move rows on from "sent", and the
    scan back through a patient's messages would find nothing at the cost of all of them."""
    return (
        select(_SCANNED.c.id)
        .where(
            _SCANNED.c.recipient_kind == "patient",
            _SCANNED.c.recipient_id == patient_id,
            _SCANNED.c.status == "sent",
            _SCANNED.c.payload["intent"].as_string() == "Ask",
        )
        .order_by(_SCANNED.c.id.desc())
        .limit(1)
        .scalar_subquery()
    )


def _patient_and_open_checkin(asked: bool, locked: bool) -> Any:
    """The patient and, in the same trip, the check-in open now and (`asked`) the last
    question sent: a turn's first statement. SQLite: the patient with or without one.
    PostgreSQL (`locked`): only with one, both rows locked (see `patient_with_open_checkin`)."""
    on = and_(col(Checkin.patient_id) == col(Patient.id), col(Checkin.status).in_(OPEN_STATUSES))
    statement: Any = select(Patient, Checkin)
    statement = statement.join(Checkin, on) if locked else statement.outerjoin(Checkin, on)
    if asked:
        statement = statement.add_columns(_ASKED.c.provider_id, _ASKED.c.payload).outerjoin(
            _ASKED, _ASKED.c.id == _last_asked(col(Patient.id))
        )
    return (
        statement.where(
            Patient.channel == bindparam("b_channel"),
            col(Patient.address_hash).in_(bindparam("b_hashes", expanding=True)),
        )
        .order_by(col(Patient.id), col(Checkin.due_at), col(Checkin.id))
        .limit(1)
        .with_for_update(of=(Patient, Checkin) if locked else Patient)
        .execution_options(populate_existing=True)
    )


# (asked, locked): both dialects' first statements
_PATIENT_AND_OPEN_CHECKIN = {
    (asked, locked): _patient_and_open_checkin(asked, locked)
    for asked in (False, True)
    for locked in (False, True)
}
# PostgreSQL, Telegram: the check-in open now and the last question sent, once the
# patient is locked.
_OPEN_CHECKIN_ASKED = (
    select(Checkin, _ASKED.c.provider_id, _ASKED.c.payload)
    .outerjoin(_ASKED, _ASKED.c.id == _last_asked(bindparam("b_patient_id")))
    .where(Checkin.patient_id == bindparam("b_patient_id"), col(Checkin.status).in_(OPEN_STATUSES))
    .order_by(col(Checkin.due_at), col(Checkin.id))
)


@dataclass(frozen=True)
class Asked:
    """The last question sent to a patient: the provider's id of the message and its
    payload (which item; the introduction it was sent below)."""

    patient_id: int
    provider_id: str | None
    payload: dict[str, Any]


@dataclass(frozen=True)
class Found:
    """A patient found by their address and locked, with what their turn reads first."""

    patient: Patient
    checkin: Checkin | None  # the check-in open now (None: none)
    asked: Asked | None  # the last question sent to them (None: none)


def _asked(patient: Patient, provider_id: str | None = None, payload: Any = None) -> Asked | None:
    if not isinstance(payload, dict) or patient.id is None:
        return None  # (no question sent: a payload is always an object)
    return Asked(patient.id, provider_id, payload)


class Unread(Enum):
    """A check-in not read yet (distinct from None: read, and none is open)."""

    UNREAD = 0


UNREAD = Unread.UNREAD
MaybeRead = Checkin | None | Literal[Unread.UNREAD]


async def patient_by_address(
    session: AsyncSession, channel: str, address: str, *, lock: bool = False
) -> Patient | None:
    """The patient reached at `address` (found by its lookup hash; addresses are encrypted).
    With `lock`, the row is locked until the transaction ends, as `Repository.lock_patient`
    does, in the same statement."""
    params = {"b_channel": channel, "b_hashes": lookup_hashes(address)}
    statement = _PATIENT_BY_HASH_LOCKED if lock else _PATIENT_BY_HASH
    return (await session.exec(statement, params=params)).first()


async def patient_with_open_checkin(
    session: AsyncSession, channel: str, address: str
) -> Found | None:
    """The patient reached at `address`, their row locked until the transaction ends, the
    check-in they have open (as :func:`open_checkin` finds it) and the last question sent to
    them.

    On SQLite, one statement: the transaction holds the write lock from its start, so
    nothing changes between them. On PostgreSQL, one when a check-in is open (the usual
    turn): both rows locked, the patient's first (the order a turn has always locked them
    in). A statement that waited for the lock (a second message of the same patient)
    re-reads the rows it locks as they are once the lock is its own, so the step never
    saves over a stale check-in (with the patient's row alone locked, it would). The last
    question sent is read as it was before such a wait; an edit that finds it is not the
    question answered looks it up itself (bot/app/outbox/edits.py). With none open, the
    inner join finds nothing (the outer join's nullable side cannot be locked): then the
    patient is locked and the check-in read after, in two statements."""
    edits = channel == "telegram"  # (the only channel whose answers edit the question)
    params = {"b_channel": channel, "b_hashes": lookup_hashes(address)}
    if session.get_bind().dialect.name == "postgresql":
        locked = _PATIENT_AND_OPEN_CHECKIN[edits, True]
        if (row := (await session.exec(locked, params=params)).first()) is not None:
            return Found(row[0], row[1], _asked(row[0], *row[2:]))
        patient = await patient_by_address(session, channel, address, lock=True)
        if patient is None or patient.id is None:
            return None
        if not edits:
            return Found(patient, await open_checkin(session, patient.id), None)
        opened = (
            await session.exec(_OPEN_CHECKIN_ASKED, params={"b_patient_id": patient.id})
        ).first()
        if opened is None:  # (no check-in open: the edit of a question needs one)
            return Found(patient, None, None)
        return Found(patient, opened[0], _asked(patient, *opened[1:]))
    row = (await session.exec(_PATIENT_AND_OPEN_CHECKIN[edits, False], params=params)).first()
    return None if row is None else Found(row[0], row[1], _asked(row[0], *row[2:]))


async def clinician_by_address(
    session: AsyncSession, channel: str, address: str
) -> Clinician | None:
    """The clinician reached at `address` (found by its lookup hash)."""
    statement = select(Clinician).where(
        Clinician.channel == channel, col(Clinician.address_hash).in_(lookup_hashes(address))
    )
    return (await session.exec(statement.order_by(col(Clinician.id)))).first()


async def open_checkin(session: AsyncSession, patient_id: int) -> Checkin | None:
    """The check-in the patient is answering now (at most one is open at a time)."""
    return (await session.exec(_OPEN_CHECKIN, params={"b_patient_id": patient_id})).first()


async def latest_closed(session: AsyncSession, patient_id: int) -> Checkin | None:
    """The patient's check-in that closed last (completed, expired or cancelled)."""
    statement = (
        select(Checkin)
        .where(Checkin.patient_id == patient_id, col(Checkin.status).in_(CLOSED_STATUSES))
        .order_by(col(Checkin.due_at).desc(), col(Checkin.id).desc())
    )
    return (await session.exec(statement.limit(1))).first()


async def claim_due(repo: Repository, now: datetime, limit: int, lease: timedelta) -> list[int]:
    """Due pending check-ins of active patients with none open, leased to this worker.

    A check-in held back (quiet hours, another one open) carries a lease until it is worth
    looking at again, so held ones never crowd out the rest. PostgreSQL skips rows another
    worker is claiming (``FOR UPDATE SKIP LOCKED``)."""
    busy = select(Checkin.patient_id).where(col(Checkin.status).in_(OPEN_STATUSES))
    statement = (
        select(Checkin.id)
        .join(Patient, col(Patient.id) == col(Checkin.patient_id))
        .where(
            Checkin.status == "pending",
            col(Checkin.due_at) <= now,
            or_(col(Checkin.lease_until).is_(None), col(Checkin.lease_until) <= now),
            col(Patient.status).in_(ACTIVE_PATIENT),
            col(Checkin.patient_id).not_in(busy),
        )
        .order_by(col(Checkin.due_at), col(Checkin.id))
        .limit(limit)
    )
    if repo.dialect == "postgresql":
        statement = statement.with_for_update(of=Checkin, skip_locked=True)
    ids = [i for i in (await repo.session.exec(statement)).all() if i is not None]
    if ids:
        await repo.session.exec(
            update(Checkin)
            .where(bulk.among(repo.dialect, col(Checkin.id), ids))
            .values(lease_until=now + lease, version=col(Checkin.version) + 1)
        )
    return ids


async def reminders_due(session: AsyncSession, now: datetime, limit: int) -> list[int]:
    """Open check-ins whose next reminder is due, soonest first: only those known to have
    reached the patient (delivered, or answered: bot/domain/deadlines.py)."""
    statement = (
        select(Checkin.id)
        .where(
            col(Checkin.next_reminder_at) <= now,
            col(Checkin.status).in_(OPEN_STATUSES),
            or_(col(Checkin.delivered_at).is_not(None), col(Checkin.status) != "sent"),
        )
        .order_by(col(Checkin.next_reminder_at), col(Checkin.id))
        .limit(limit)
    )
    return [i for i in (await session.exec(statement)).all() if i is not None]


async def overdue(session: AsyncSession, now: datetime, limit: int) -> Sequence[Checkin]:
    """Pending or open check-ins whose expiry time has passed."""
    statement = (
        select(Checkin)
        .where(
            col(Checkin.status).in_(("pending", *OPEN_STATUSES)),
            col(Checkin.expires_at) <= now,
        )
        .order_by(col(Checkin.expires_at), col(Checkin.id))
        .limit(limit)
    )
    return (await session.exec(statement)).all()


async def cancel_pending(session: AsyncSession, patient_id: int) -> None:
    """Cancel every check-in the patient has not started (used when they opt out)."""
    await session.exec(
        update(Checkin)
        .where(col(Checkin.patient_id) == patient_id, col(Checkin.status) == "pending")
        .values(status="cancelled")
    )


async def release_held(session: AsyncSession, patient_id: int) -> None:
    """Let the patient's held check-ins be claimed again at the next tick: one of theirs
    just closed, and those held behind it (one open at a time) need not wait out their
    hold. Every hold of theirs is lifted, not only those: a check-in claimed again is
    judged afresh under the patient's lock, so one still in quiet hours or belonging to a
    paused patient is simply held again (and no clock skew between the process that set
    a hold and this one can keep one in place)."""
    await session.exec(
        update(Checkin)
        .where(
            col(Checkin.patient_id) == patient_id,
            col(Checkin.status) == "pending",
            col(Checkin.lease_until).is_not(None),
        )
        .values(lease_until=None, version=col(Checkin.version) + 1)
    )


async def unprocessed_inbound(
    session: AsyncSession, limit: int, received_before: datetime
) -> Sequence[int]:
    """Inbound messages received by `received_before` and never processed (a crash between
    recording and processing), oldest first."""
    statement = (
        select(InboundMessage.id)
        .where(
            col(InboundMessage.processed_at).is_(None),
            col(InboundMessage.received_at) <= received_before,
        )
        .order_by(col(InboundMessage.id))
        .limit(limit)
    )
    return [i for i in (await session.exec(statement)).all() if i is not None]


async def unprocessed_from(
    session: AsyncSession, channel: str, sender: str, up_to: int
) -> Sequence[InboundMessage]:
    """The sender's unprocessed messages up to and including `up_to`, oldest first."""
    statement = (
        select(InboundMessage)
        .where(
            InboundMessage.channel == channel,
            col(InboundMessage.sender_hash).in_(lookup_hashes(sender)),
            col(InboundMessage.processed_at).is_(None),
            col(InboundMessage.id) <= up_to,
        )
        .order_by(col(InboundMessage.id))
        .execution_options(populate_existing=True)
    )
    return (await session.exec(statement)).all()

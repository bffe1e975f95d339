"""Enrolment codes: how a Telegram chat (and later an SMS number) becomes a known patient or
clinician.

A code is 192 random bits (URL-safe, fits Telegram's ``start`` parameter), shown once to
the operator and stored only as a SHA-256 hash; it expires (default one hour) and works
once. A wrong, used or expired code gets the same plain refusal, so trying codes teaches
nothing. A code cannot move a patient who is active (or paused) in one chat to another
unless the operator issued it with ``--relink`` (``relink``): then the patient moves, the
move is audited (``patient_relinked``) and the chat they left is told, without details.
A sender refused ``MAX_FAILED_ATTEMPTS`` times within ``ATTEMPT_WINDOW`` gets that same
refusal without any code being checked; the count is of their refused inbound messages in
the database, so it holds across worker processes.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.storage.crypto import lookup_hashes
from bot.storage.repository import Repository
from bot.storage.tables import Clinician, EnrollmentCode, InboundMessage, Patient

CODE_BYTES = 24  # 192 bits; 32 URL-safe characters (Telegram allows 64)
MAX_FAILED_ATTEMPTS = 5
ATTEMPT_WINDOW = timedelta(hours=1)
CODE_REFUSED = "enrolment code refused"  # the note kept on the refused inbound message
ATTEMPTS_LIMITED = "enrolment attempts limited"  # not counted: the limit is a fixed rate
TELEGRAM_LINK = "https://t.me/{username}?start={code}"


def hash_code(code: str) -> str:
    return hashlib.sha256(code.encode("utf-8")).hexdigest()


def enrollment_link(username: str, code: str) -> str:
    return TELEGRAM_LINK.format(username=username.lstrip("@"), code=code)


async def issue_code(
    session: AsyncSession,
    now: datetime,
    ttl: timedelta,
    *,
    patient_id: int | None = None,
    clinician_id: int | None = None,
    relink: bool = False,
) -> tuple[str, datetime]:
    """A fresh code for one patient or clinician, and when it expires."""
    code = secrets.token_urlsafe(CODE_BYTES)
    expires_at = now + ttl
    row = EnrollmentCode(
        code_hash=hash_code(code),
        patient_id=patient_id,
        clinician_id=clinician_id,
        expires_at=expires_at,
        relink=relink,
    )
    await Repository(session).add(row)
    return code, expires_at


@dataclass(frozen=True)
class Linked:
    patient: Patient | None = None
    clinician: Clinician | None = None
    moved_from: str | None = None  # the chat a re-linked patient left (to be told)


async def redeem(
    session: AsyncSession, code: str, channel: str, address: str, now: datetime
) -> Linked | None:
    """Link `address` to the code's patient or clinician; None for a wrong, used or expired code."""
    statement = (
        select(EnrollmentCode).where(EnrollmentCode.code_hash == hash_code(code)).with_for_update()
    )
    row = (await session.exec(statement)).first()
    if row is None or row.used_at is not None or row.expires_at <= now:
        return None
    row.used_at = now
    repo = Repository(session)
    await repo.add(row)
    if row.patient_id is not None:
        patient = await repo.lock_patient(row.patient_id)
        if patient is None or patient.channel != channel:
            return None
        moved_from = _moved_from(patient, address)
        if moved_from is not None and not row.relink:
            return None  # an active patient moves only when the operator said so
        patient.address = address
        patient.status = "active" if patient.status in ("invited", "blocked") else patient.status
        patient.consent_at = patient.consent_at or now
        await repo.add(patient)
        action = "patient_relinked" if moved_from is not None else "enrolled"
        await repo.audit(now, "patient", action, f"patient:{patient.id}", channel=channel)
        return Linked(patient=patient, moved_from=moved_from)
    clinician = await session.get(Clinician, row.clinician_id)
    if clinician is None or clinician.channel != channel:
        return None
    clinician.address = address
    await repo.add(clinician)
    await repo.audit(now, "clinician", "linked", f"clinician:{clinician.id}", channel=channel)
    return Linked(clinician=clinician)


def _moved_from(patient: Patient, address: str) -> str | None:
    """The chat an active (or paused) patient would leave by linking `address`, if any."""
    if patient.status not in ("active", "paused") or patient.address in (None, address):
        return None
    return patient.address


async def too_many_attempts(
    session: AsyncSession, channel: str, sender: str, now: datetime
) -> bool:
    """Whether `sender` had MAX_FAILED_ATTEMPTS codes refused within the last ATTEMPT_WINDOW."""
    statement = select(func.count()).where(
        InboundMessage.channel == channel,
        col(InboundMessage.sender_hash).in_(lookup_hashes(sender)),
        InboundMessage.error == CODE_REFUSED,
        col(InboundMessage.received_at) > now - ATTEMPT_WINDOW,
    )
    refused: int = (await session.exec(statement)).one()
    return refused >= MAX_FAILED_ATTEMPTS


def start_parameter(text: str) -> str | None:
    """The code in ``/start CODE`` (Telegram's deep-link message), else None."""
    parts = text.strip().split()
    if len(parts) == 2 and parts[0].lower() in ("/start", "start"):
        return parts[1]
    return None

"""Patients as an operator manages them: enrol one, look one up, list them, issue a new
Telegram link, pause and resume. Discharge and erasure are :mod:`bot.app.operator.retention`.

Every step runs in one transaction and leaves an audit event with the operator as actor
(the panel's clinician, when enrolling or issuing a link there; reads included: who
looked at whom is part of the record). A patient that is not there raises ``NotFound``;
a step the patient's status or channel does not allow, ``Refused``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import update
from sqlmodel import col, select

from bot.app.operator.invitations import Invitation, Invitations
from bot.app.operator.refusals import Refused
from bot.app.operator.views import AlertBrief, AnswerView, CheckinView, PatientView, ScoreView
from bot.app.planning.planner import Planner
from bot.app.ports import Clock
from bot.app.services import Services
from bot.domain.errors import NotFound
from bot.storage.crypto import active_ring
from bot.storage.database import Database
from bot.storage.import_tables import PatientExternalId, external_text
from bot.storage.repository import Repository
from bot.storage.tables import Checkin, Clinician, Patient


@dataclass(frozen=True)
class NewPatient:
    name: str
    channel: str
    timezone: str = "UTC"
    language: str = "en"
    clinician_id: int | None = None
    protocol: str | None = None
    address: str | None = None  # console: the name the patient types as
    phone: str | None = None  # sms: their number, E.164; whatsapp: whatsapp:+E164
    external_id: str | None = None  # the clinic's own id (`patient import`), kept hashed
    consented_at: datetime | None = None  # whatsapp: the clinic's own record of opt-in


@dataclass(frozen=True)
class Enrolled:
    patient: PatientView
    invitation: Invitation | None = None  # Telegram: the link to send them
    invited: bool = False  # SMS: the invitation is queued; they become active on YES
    no_wording: tuple[str, ...] = ()  # the protocol's instruments without their language


async def enrol(
    db: Database,
    clock: Clock,
    new: NewPatient,
    invitations: Invitations,
    services: Services,
    planner: Planner | None = None,
    actor: str = "operator",
) -> Enrolled:
    """Enrol a patient. Console patients are active at once; Telegram patients get a
    single-use link; SMS patients get an invitation and become active when they reply YES.
    Given the planner, the result names the protocol's instruments the patient cannot be
    asked in their language (never dropped silently: the caller warns)."""
    missing = planner.no_wording(new.protocol, new.language) if planner and new.protocol else ()
    async with db.transaction() as session:
        repo = Repository(session)
        if new.clinician_id is not None and await session.get(Clinician, new.clinician_id) is None:
            raise NotFound("clinician", new.clinician_id)
        patient = Patient(
            display_name=new.name,
            timezone=new.timezone,
            language=new.language,
            channel=new.channel,
            clinician_id=new.clinician_id,
            protocol=new.protocol,
            status="active" if new.channel == "console" or new.consented_at else "invited",
            address=new.phone,
            consent_at=new.consented_at,
        )
        await repo.add(patient)
        if new.channel == "console":
            patient.address = new.address or f"patient-{patient.id}"
            await repo.add(patient)
        if new.external_id is not None and patient.id is not None:
            hashed = active_ring().lookup_hash(external_text(new.external_id))
            session.add(PatientExternalId(patient_id=patient.id, external_id_hash=hashed))
        await repo.audit(clock(), actor, "patient_added", f"patient:{patient.id}")
        invitation = None
        if new.channel == "telegram":
            invitation = await invitations.issue(session, patient_id=patient.id)
        enrolled = Enrolled(PatientView.of(patient), invitation, no_wording=missing)
    invited = new.channel == "sms" or (new.channel == "whatsapp" and not new.consented_at)
    if invited and patient.id is not None:
        await services.consent.invite(patient.id)  # the only message before they reply YES
        enrolled = Enrolled(enrolled.patient, invited=True, no_wording=missing)
    return enrolled


async def invite(
    db: Database,
    clock: Clock,
    invitations: Invitations,
    patient_id: int,
    relink: bool = False,
    actor: str = "operator",
) -> Invitation:
    """A new single-use enrolment link for a Telegram patient (the first one expired); the
    earlier links stop working. Only a `relink` link moves a patient already active in one
    chat to the chat that opens it (the old chat is told, without details)."""
    async with db.transaction() as session:
        repo = Repository(session)
        patient = await repo.get_patient(patient_id)
        if patient is None:
            raise NotFound("patient", patient_id)
        if patient.channel != "telegram":
            raise Refused(
                f"patient {patient_id} uses {patient.channel}; enrolment links are for Telegram"
            )
        invitation = await invitations.issue(session, patient_id=patient_id, relink=relink)
        await repo.audit(
            clock(), actor, "enrolment_link_issued", f"patient:{patient_id}", relink=relink
        )
    return invitation


@dataclass(frozen=True)
class PatientRecord:
    """A patient with their latest check-ins (with every answer given to them, superseded
    ones included), scores and alerts."""

    patient: PatientView
    checkins: tuple[CheckinView, ...]
    scores: tuple[ScoreView, ...]
    alerts: tuple[AlertBrief, ...]
    answers: tuple[AnswerView, ...]


async def show(db: Database, clock: Clock, patient_id: int) -> PatientRecord:
    async with db.transaction() as session:
        repo = Repository(session)
        patient = await repo.get_patient(patient_id)
        if patient is None:
            raise NotFound("patient", patient_id)
        checkins = await repo.checkins_for_patient(patient_id)
        scores = await repo.scores_for_patient(patient_id)
        alerts = await repo.alerts_for_patient(patient_id)
        answers = await repo.answers_for_checkins([c.id for c in checkins if c.id is not None])
        await repo.audit(clock(), "operator", "patient_viewed", f"patient:{patient_id}")
        return PatientRecord(
            PatientView.of(patient),
            tuple(map(CheckinView.of, checkins)),
            tuple(map(ScoreView.of, scores)),
            tuple(map(AlertBrief.of, alerts)),
            tuple(map(AnswerView.of, answers)),
        )


async def find(db: Database, patient_id: int) -> PatientView:
    """The patient, read without an audit event (to check an id before other work)."""
    async with db.transaction() as session:
        patient = await Repository(session).get_patient(patient_id)
        if patient is None:
            raise NotFound("patient", patient_id)
        return PatientView.of(patient)


async def list_patients(db: Database, clock: Clock, status: str | None = None) -> list[PatientView]:
    """Every patient (in one status, if given), by id."""
    async with db.transaction() as session:
        statement = select(Patient).order_by(col(Patient.id))
        if status is not None:
            statement = statement.where(Patient.status == status)
        rows = list((await session.exec(statement)).all())
        await Repository(session).audit(
            clock(), "operator", "patients_listed", "patient:*", count=len(rows)
        )
        return [PatientView.of(p) for p in rows]


async def pause(db: Database, clock: Clock, patient_id: int, actor: str = "operator") -> None:
    """Pause an active patient: nothing is sent or planned until resumed."""
    await _change_status(db, clock, patient_id, "active", "paused", actor)


async def resume(db: Database, clock: Clock, patient_id: int, actor: str = "operator") -> None:
    """Resume a paused patient: planned again from now; held check-ins go at the next tick."""
    await _change_status(db, clock, patient_id, "paused", "active", actor)


async def _change_status(
    db: Database, clock: Clock, patient_id: int, was: str, to: str, actor: str
) -> None:
    async with db.transaction() as session:
        repo = Repository(session)
        patient = await repo.lock_patient(patient_id)
        if patient is None:
            raise NotFound("patient", patient_id)
        if patient.status != was:
            verb = "pause" if to == "paused" else "resume"
            raise Refused(
                f"patient {patient_id} is {patient.status}; only {was} patients can {verb}"
            )
        patient.status, patient.planned_until = to, None  # planned afresh on resuming
        await repo.add(patient)
        if to == "active":  # held check-ins wait for no lease of the paused time
            await session.exec(
                update(Checkin)
                .where(col(Checkin.patient_id) == patient_id, col(Checkin.status) == "pending")
                .values(lease_until=None, version=col(Checkin.version) + 1)
            )
        action = "patient_paused" if to == "paused" else "patient_resumed"
        await repo.audit(clock(), actor, action, f"patient:{patient_id}")


async def console_address(db: Database, patient_id: int) -> str:
    """What a console patient types as (for ``checkin chat``)."""
    async with db.transaction() as session:
        patient = await Repository(session).get_patient(patient_id)
    if patient is None:
        raise NotFound("patient", patient_id)
    if patient.channel != "console" or patient.address is None:
        raise Refused(f"patient {patient_id} uses {patient.channel}, not the console channel")
    return patient.address

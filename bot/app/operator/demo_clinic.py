"""The records of ``checkin demo``: a demo clinician and a console patient, treatment
sessions on the demo's accelerated clock, what the clinic sees afterwards, and a one-time
admin sign-in to the web panel. The conversation itself goes through the same services
as any patient's."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime

from bot.app.operator import clinicians
from bot.app.operator.views import AlertBrief, ScoreView
from bot.app.panel import accounts
from bot.app.ports import Clock
from bot.storage.database import Database
from bot.storage.repository import Repository
from bot.storage.tables import Clinician, Patient, TreatmentSession

OPEN = ("pending", "sent", "in_progress", "paused")  # a check-in not finished yet


async def set_up(db: Database) -> int:
    """Dr. Demo and their active console patient (who types as ``demo``); the patient's id."""
    async with db.transaction() as session:
        repo = Repository(session)
        clinician = Clinician(display_name="Dr. Demo", channel="console", address="clinician")
        await repo.add(clinician)
        patient = Patient(
            display_name="Demo Patient",
            timezone="UTC",
            language="en",
            channel="console",
            address="demo",
            status="active",
            clinician_id=clinician.id,
        )
        await repo.add(patient)
        assert patient.id is not None
        return patient.id


async def is_open(db: Database, checkin_id: int | None) -> bool:
    async with db.transaction() as session:
        checkin = await Repository(session).get_checkin(checkin_id or 0)
    return checkin is not None and checkin.status in OPEN


async def record_session(db: Database, patient_id: int, number: int, at: datetime) -> None:
    async with db.transaction() as session:
        await Repository(session).add(
            TreatmentSession(patient_id=patient_id, number=number, kind="ketamine-iv", at=at)
        )


async def scores(db: Database, patient_id: int, instrument: str | None = None) -> list[ScoreView]:
    """The patient's scores (on one instrument, if given), oldest first."""
    async with db.transaction() as session:
        rows = await Repository(session).scores_for_patient(patient_id, instrument)
    return [ScoreView.of(s) for s in rows]


async def clinic_view(db: Database, patient_id: int) -> tuple[list[ScoreView], list[AlertBrief]]:
    """What the clinic sees of the patient: their scores (oldest first) and alerts (newest
    first)."""
    async with db.transaction() as session:
        repo = Repository(session)
        found = await repo.scores_for_patient(patient_id)
        raised = await repo.alerts_for_patient(patient_id)
    return [ScoreView.of(s) for s in found], [AlertBrief.of(a) for a in raised]


@dataclass(frozen=True)
class DemoSignIn:
    email: str
    password: str
    uri: str  # the TOTP secret, as an authenticator app reads it


async def admin_sign_in(db: Database, clock: Clock, clinic: str) -> DemoSignIn:
    """An admin of the demo clinic with a random password and TOTP secret, made for this
    demo alone (its database lives in a temporary directory)."""
    admin = await clinicians.add(db, clock, "Demo Admin", "console", address="demo-admin")
    email, password = "admin@demo.invalid", secrets.token_urlsafe(12)
    await accounts.add_account(db, clock, admin.id, email, "admin")
    await accounts.set_password(db, clock, admin.id, password)
    issued = await accounts.issue_totp(db, clock, admin.id, clinic)
    return DemoSignIn(email, password, issued.uri)

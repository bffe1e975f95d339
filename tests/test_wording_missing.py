"""A protocol instrument without the patient's language is never dropped silently: when the
check-in comes due it goes ahead without it (cancelled when nothing is left) and the
clinician gets a wording_missing alert naming it, once per patient and instrument. On a
real SQLite file and a real PostgreSQL server, through the planner and the tick's start
stage."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update
from sqlmodel import col

from bot.app.alerts.alerting import Alerting
from bot.app.outbox.delivery import Deliverer
from bot.app.planning.planner import Planner
from bot.app.services import Services
from bot.channels.console import ConsoleChannel
from bot.domain.alerts import DEFAULT_RULES
from bot.domain.errors import ConfigError
from bot.domain.schedule import protocol_from_mapping
from bot.rendering.renderer import Renderer
from bot.storage.database import Database
from bot.storage.repository import Repository
from bot.storage.tables import Alert, AuditEvent, Checkin, Clinician, OutboundMessage, Patient
from tests.test_services import CATALOG, CLINIC, SimClock, rows

T0 = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)  # a Monday; check-ins due daily at 14:00 UTC
RENDERER = Renderer(CATALOG, CLINIC)


def daily(name: str, instruments: list[str]) -> tuple[str, object]:
    rule = {
        "instruments": instruments,
        "weekdays": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
        "at": "14:00",
        "expires_after": "20h",
    }
    return name, protocol_from_mapping(name, {"rules": {"daily": rule}}, "test")


PROTOCOLS = dict([daily("mixed", ["phq9", "gad7"]), daily("anxiety", ["gad7"])])


class Clinic:
    def __init__(self, db: Database) -> None:
        self.clock = SimClock(T0)
        alerting = Alerting(CATALOG, DEFAULT_RULES, RENDERER)
        self.services = Services.create(
            db, CATALOG, RENDERER, CLINIC, self.clock, alerting=alerting
        )
        self.planner = Planner(db, CATALOG, PROTOCOLS, CLINIC, self.clock)  # type: ignore[arg-type]
        self.deliverer = Deliverer(db, {"console": ConsoleChannel(io.StringIO())}, self.clock)
        self.db = db

    async def patient(self, protocol: str, language: str) -> int:
        async with self.db.transaction() as session:
            repo = Repository(session)
            doctor = Clinician(display_name="Dr. Rao", channel="console", address="dr-r")
            await repo.add(doctor)
            patient = Patient(
                display_name="P-017", timezone="UTC", language=language, channel="console",
                address="pat", status="active", clinician_id=doctor.id, protocol=protocol,
                consent_at=T0, created_at=T0,
            )  # fmt: skip
            await repo.add(patient)
        assert patient.id is not None
        return patient.id

    async def day(self, n: int) -> None:
        """Day n at 14:00 UTC: plan, close yesterday's check-in, start what is due."""
        self.clock.now = T0.replace(hour=14) + timedelta(days=n)
        await self.planner.plan_due()
        await self.services.reminders.expire_due()
        await self.services.starting.start_due()
        await self.deliverer.drain()


async def to(db: Database, address: str) -> list[str]:
    return [m.body for m in await rows(db, OutboundMessage) if m.address == address]


async def test_the_check_in_goes_ahead_and_the_clinician_is_told_once(db: Database) -> None:
    """A Spanish patient on PHQ-9 + GAD-7: asked the Spanish PHQ-9; the clinician is told
    GAD-7 is not asked, once, however many days it comes due, even after resolving."""
    clinic = Clinic(db)
    patient_id = await clinic.patient("mixed", "es")
    await clinic.day(0)
    (checkin,) = await rows(db, Checkin, Checkin.patient_id == patient_id, Checkin.status == "sent")
    assert checkin.instruments == ["phq9"]
    assert checkin.state["instruments"] == ["phq9"]
    sent = await to(db, "pat")
    intro, first = sent[0].split("\n\n", 1)  # one message: the intro above question 1
    assert "Durante las últimas 2 semanas, ¿qué tan seguido" in intro
    assert first.startswith("1/9 (últimas 2 semanas): Poco interés o placer en hacer cosas")
    assert not any("GAD" in m for m in sent)  # the patient is not told about it

    (alert,) = await rows(db, Alert, Alert.patient_id == patient_id)
    assert (alert.rule, alert.level, alert.detail) == (
        "wording_missing", "routine", {"instrument": "gad7", "language": "es"},
    )  # fmt: skip
    (notice,) = await to(db, "dr-r")
    assert "instrument not asked: no wording in the patient's language (GAD7, language es)" in (
        notice
    )
    audit = await rows(db, AuditEvent, AuditEvent.action == "instruments_not_asked")
    assert [a.detail["instruments"] for a in audit] == [["gad7"]]

    async with db.transaction() as session:  # the clinician resolves it
        await session.exec(update(Alert).values(status="resolved"))  # type: ignore[call-overload]
    for n in (1, 2):
        await clinic.day(n)
    started = await rows(
        db, Checkin, Checkin.patient_id == patient_id, col(Checkin.sent_at).is_not(None)
    )
    assert [c.instruments for c in started] == [["phq9"]] * 3
    told = await rows(db, Alert, Alert.patient_id == patient_id, Alert.rule == "wording_missing")
    assert len(told) == 1  # (the unanswered PHQ-9s raise missed_checkins meanwhile)
    assert len([m for m in await to(db, "dr-r") if "GAD7" in m]) == 1


async def test_nothing_left_to_ask_cancels_the_check_in(db: Database) -> None:
    """A Spanish patient on GAD-7 alone: nothing is sent, the check-in is cancelled (not
    missed), and the clinician is told."""
    clinic = Clinic(db)
    patient_id = await clinic.patient("anxiety", "es")
    await clinic.day(0)
    (checkin,) = await rows(db, Checkin, col(Checkin.due_at) <= clinic.clock.now)
    assert checkin.status == "cancelled" and checkin.state["status"] == "cancelled"
    assert await to(db, "pat") == []
    (alert,) = await rows(db, Alert, Alert.patient_id == patient_id)
    assert alert.detail == {"instrument": "gad7", "language": "es"}


async def test_an_english_patient_is_asked_everything(db: Database) -> None:
    """The same protocol in English: both instruments asked, no alert."""
    clinic = Clinic(db)
    await clinic.patient("mixed", "en")
    await clinic.day(0)
    (checkin,) = await rows(db, Checkin, col(Checkin.due_at) <= clinic.clock.now)
    assert checkin.instruments == ["phq9", "gad7"] and checkin.status == "sent"
    assert await rows(db, Alert) == []


async def test_asking_by_hand_takes_the_spanish_phq9_and_refuses_gad7(db: Database) -> None:
    """`checkin ask`: the Spanish PHQ-9 is queued; GAD-7 is refused, saying how to add it."""
    clinic = Clinic(db)
    patient_id = await clinic.patient("mixed", "es")
    asked = await clinic.services.asking.ask(patient_id, ["phq9", "side_effects"])
    assert asked.instruments == ["phq9", "side_effects"]
    with pytest.raises(ConfigError, match=r"gad7: has no 'es' wording.*gad7\.wording\.toml"):
        await clinic.services.asking.ask(patient_id, ["side_effects", "gad7"])

"""WhatsApp through Twilio, end to end in one process: the real twilio client talks to the
WhatsApp stand-in (window, Content SIDs, buttons, status callbacks); Twilio's signed
webhooks reach our Starlette app through httpx; a real database (SQLite, and PostgreSQL
where it runs)."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlmodel import col, select

from bot.app.conversations.whatsapp_window import HELD
from bot.app.metrics import collect
from bot.app.operator import patients
from bot.bootstrap import App, build
from bot.config import Clinic, Server, Settings, Sms, WhatsApp
from bot.rendering.renderer import TEMPLATES_DIR
from bot.storage.database import Database
from bot.storage.repository import Repository
from bot.storage.tables import (
    Alert,
    Answer,
    Checkin,
    Clinician,
    EarlyReceipt,
    InboundMessage,
    OutboundMessage,
    Patient,
)
from bot.web.app import create_app
from scheduler.loop import tick
from tests.standins.server import serve
from tests.standins.whatsapp import WhatsAppStandIn, load_contents
from tests.test_services import SimClock
from tests.test_sms import ALONE

PUBLIC = "https://checkin.example"
PATIENT = "whatsapp:+15555550123"
CLINICIAN = "whatsapp:+15555550177"
BACKUP = "whatsapp:+15555550188"
SENDER = "whatsapp:+15555550100"
PURPOSES = ("invitation", "checkin", "alert")


@dataclass
class Rig:
    app: App
    twilio: WhatsAppStandIn
    web: httpx.AsyncClient
    clock: SimClock
    sids: dict[str, str]

    async def post(self, request: Any) -> httpx.Response:
        path = request.url.removeprefix(PUBLIC)
        return await self.web.post(path, data=request.form, headers=request.headers)

    async def say(self, body: str = "", **tap: Any) -> httpx.Response:
        request = self.twilio.whatsapp_request(
            f"{PUBLIC}/whatsapp", from_=PATIENT, to=SENDER, body=body, **tap
        )
        response = await self.post(request)
        await tick(self.app)
        return response

    def to(self, address: str) -> list[dict[str, Any]]:
        return [m for m in self.twilio.messages.values() if m["to"] == address]

    def created(self, address: str) -> list[dict[str, str]]:
        return [c.params for c in self.twilio.calls if c.params.get("To") == address]

    def last_buttons(self) -> dict[str, str]:
        """The tappable answers of the latest message to the patient: title by value."""
        sid = self.to(PATIENT)[-1]["sid"]
        return {data.partition("=")[2]: title for title, data in self.twilio.buttons[sid]}

    async def pick(self, value: int) -> None:
        """Tap the list item for `value` under the latest question."""
        sid = self.to(PATIENT)[-1]["sid"]
        (choice,) = [b for b in self.twilio.buttons[sid] if b[1].endswith(f"={value}")]
        assert (await self.say(listed=choice)).status_code == 200


def whatsapp_settings(url: str, twilio: WhatsAppStandIn, sids: dict[str, str]) -> WhatsApp:
    templates = {p: {lang: sids[f"{p}_{lang}"] for lang in ("en", "es")} for p in PURPOSES}
    choices = {n: sids[f"quick_reply_{n}"] for n in (1, 2, 3)}
    choices |= {n: sids[f"list_picker_{n}"] for n in range(4, 11)}
    return WhatsApp(
        account_sid=twilio.account_sid, auth_token=twilio.auth_token, from_number=SENDER,
        api_base_url=url, templates=templates, choices=choices,
    )  # fmt: skip


@pytest.fixture
async def rig(db: Database, tmp_path: Path) -> AsyncIterator[Rig]:
    clock = SimClock(datetime(2026, 5, 4, 16, 0, tzinfo=UTC))  # noon in New York
    twilio = WhatsAppStandIn(clock=clock)
    sids = load_contents(twilio, TEMPLATES_DIR / "whatsapp")
    async with serve(twilio.app) as url:
        settings = Settings(
            database_url=db.url.render_as_string(hide_password=False),
            clinic=Clinic(name="Lakeside"),
            server=Server(public_url=PUBLIC),
            sms=Sms(spool_path=tmp_path / "checkin.spool"),
            whatsapp=whatsapp_settings(url, twilio, sids),
            alerts=ALONE,  # the clock stands still: a digest window would never close
        )
        app = build(settings, clock=clock)
        transport = httpx.ASGITransport(app=create_app(app))
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8080") as web:
            try:
                yield Rig(app, twilio, web, clock, sids)
            finally:
                await app.close()


async def rows(db: Database, model: type, *where: object) -> list:  # type: ignore[type-arg]
    async with db.transaction() as session:
        return list((await session.exec(select(model).where(*where).order_by(col(model.id)))).all())


async def enrolled(rig: Rig, consented_at: datetime | None = None) -> int:
    """A Spanish-speaking WhatsApp patient with a WhatsApp clinician, enrolled as
    `checkin patient add --channel whatsapp` does."""
    async with rig.app.db.transaction() as session:
        clinician = Clinician(display_name="Dr C", channel="whatsapp", address=CLINICIAN)
        await Repository(session).add(clinician)
    new = patients.NewPatient(
        "P", "whatsapp", "America/New_York", "es", clinician.id, phone=PATIENT,
        consented_at=consented_at,
    )  # fmt: skip
    app = rig.app
    done = await patients.enrol(app.db, app.clock, new, app.invitations(), app.services)
    await tick(app)
    return done.patient.id


async def test_the_whole_journey_in_spanish(rig: Rig, db: Database) -> None:
    """Invited by template, opts in by its button, answers a PHQ-9 with list-picker buttons,
    gets crisis resources on item 9 while the clinician is alerted by template; two days
    later the check-in opens with the check-in template and its questions wait for the
    reply; STOP ends it all and tells the clinician."""
    patient_id = await enrolled(rig)
    (invitation,) = rig.created(PATIENT)
    assert invitation["ContentSid"] == rig.sids["invitation_es"]
    assert json.loads(invitation["ContentVariables"]) == {"1": "Lakeside"}
    assert "Body" not in invitation and invitation["From"] == SENDER
    assert invitation["StatusCallback"] == f"{PUBLIC}/whatsapp/status"
    assert rig.to(PATIENT)[0]["body"].startswith("¡Hola! Lakeside le invita")

    await rig.say(button=("Sí, empezar", "yes"))  # the first reply to the invitation
    (patient,) = await rows(db, Patient)
    assert patient.status == "active" and patient.consent_at == rig.clock.now
    assert rig.to(PATIENT)[-1]["status"] == "queued"  # the welcome, free text in the window

    await rig.app.services.asking.ask(patient_id, ["phq9"])
    await tick(rig.app)
    question = rig.created(PATIENT)[-1]
    assert question["ContentSid"] == rig.sids["list_picker_4"]
    assert rig.to(PATIENT)[-1]["body"].startswith("1/9 (últimas 2 semanas)")
    assert rig.last_buttons()["0"] == "0 · Ningún día"
    for value in [1, 2, 1, 1, 0, 1, 0, 0, 2]:  # item 9: "más de la mitad de los días"
        await rig.pick(value)
    bodies = [m["body"] for m in rig.to(PATIENT)]
    assert any("988" in b for b in bodies[-3:]), "crisis resources after item 9"
    (alert,) = await rows(db, Alert)
    assert alert.rule == "suicidality"
    (notice,) = rig.created(CLINICIAN)
    assert notice["ContentSid"] == rig.sids["alert_en"]
    variables = json.loads(notice["ContentVariables"])
    assert variables["1"] == "Lakeside" and alert.code in variables["2"]
    await rig.pick(1)  # item 10, difficulty
    answers = await rows(db, Answer)
    assert [a.value_int for a in answers] == [1, 2, 1, 1, 0, 1, 0, 0, 2, 1]

    # two days later the window is shut: the check-in opens with the template, and waits
    due = rig.clock.now + timedelta(days=2)
    checkin = await rig.app.services.asking.ask(patient_id, ["phq9"], due_at=due)
    rig.clock.now = due
    sent_before = len(rig.created(PATIENT))
    await tick(rig.app)
    (opening,) = rig.created(PATIENT)[sent_before:]
    assert opening["ContentSid"] == rig.sids["checkin_es"] and "Body" not in opening
    held = await rows(db, OutboundMessage, col(OutboundMessage.last_error).startswith(HELD))
    assert held and all(m.status == "queued" for m in held)
    (waiting,) = await rows(db, Checkin, Checkin.id == checkin.id)
    rig.clock.now += timedelta(hours=30)  # past the reminder and the expiry it was given
    await tick(rig.app)
    (still,) = await rows(db, Checkin, Checkin.id == checkin.id)
    assert still.status in ("sent", "in_progress")  # its clocks wait
    again = rig.created(PATIENT)[sent_before:]  # a day on: the template again, never free text
    assert [c["ContentSid"] for c in again] == [rig.sids["checkin_es"]] * 2
    sent_before += 1

    await rig.say(button=("Empezar", "checkin.open"))
    after = [m["body"] for m in rig.to(PATIENT)[sent_before + 1 :]]
    assert after[-1].startswith("1/9") and not any("no es una" in b for b in after)
    (opened,) = await rows(db, Checkin, Checkin.id == checkin.id)
    assert opened.expires_at - waiting.expires_at == timedelta(hours=30)  # its clocks waited

    await rig.say("STOP")
    (patient,) = await rows(db, Patient)
    assert patient.status == "opted_out"
    stopped = [a for a in await rows(db, Alert) if a.rule == "opted_out"]
    assert len(stopped) == 1  # the STOP reached the clinician too, by the alert template
    last_notice = rig.created(CLINICIAN)[-1]
    assert last_notice["ContentSid"] == rig.sids["alert_en"]
    assert "stopped check-ins" in json.loads(last_notice["ContentVariables"])["2"]
    count = len(rig.created(PATIENT))
    rig.clock.now += timedelta(days=3)
    await rig.app.services.asking.ask(patient_id, ["phq2"])
    await tick(rig.app)
    assert len(rig.created(PATIENT)) == count  # nothing after the STOP confirmation


async def status(rig: Rig, message: dict[str, Any], state: str, error: int | None = None) -> None:
    response = await rig.post(rig.twilio.status_request(message["sid"], state, error))
    assert response.status_code == 204
    await tick(rig.app)


async def test_a_late_63016_holds_the_message_and_read_is_kept(rig: Rig, db: Database) -> None:
    """Twilio's own word that the window is shut (63016, after it took the message) holds
    the message instead of failing it, never sent again as free text; "read" is recorded."""
    patient_id = await enrolled(rig, consented_at=rig.clock.now)
    assert rig.created(PATIENT) == []  # consent on record: no invitation
    await rig.say("hola")
    reply = rig.to(PATIENT)[-1]
    await status(rig, reply, "delivered")
    await status(rig, reply, "read")
    (read,) = await rows(db, OutboundMessage, OutboundMessage.provider_id == reply["sid"])
    assert read.read_at == rig.clock.now and read.status == "delivered"

    rig.twilio.last_inbound.clear()  # WhatsApp's clock and ours disagree
    await rig.app.services.asking.ask(patient_id, ["phq2"])
    await tick(rig.app)
    refused = [m for m in rig.to(PATIENT) if m["error_code"] == 63016]
    assert refused, "the stand-in fails free text outside its window"
    count = len(rig.created(PATIENT))
    await status(rig, refused[0], "failed", 63016)
    (held,) = await rows(db, OutboundMessage, col(OutboundMessage.last_error).startswith(HELD))
    assert (held.status, held.provider_id) == ("queued", refused[0]["sid"])
    assert len(rig.created(PATIENT)) == count  # not retried as free text


def callbacks_first(
    rig: Rig, *statuses: tuple[str, int | None], refused_only: bool = False
) -> list[int]:
    """Post these status callbacks (status, error code) for each created message (only
    those Twilio refused outside the window, if `refused_only`) before the create request
    returns: Twilio called back before its answer reached us. The codes our app answered."""
    answered: list[int] = []

    async def post(message: dict[str, Any]) -> None:
        if refused_only and message["error_code"] != 63016:
            return
        for state, error in statuses:
            request = rig.twilio.status_request(message["sid"], state, error)
            answered.append((await rig.post(request)).status_code)

    rig.twilio.on_created = post
    return answered


async def refused_question(rig: Rig, *statuses: tuple[str, int | None]) -> set[str]:
    """Ask a PHQ-2 after WhatsApp's window shut (ours still open) with these callbacks
    before each refused send is recorded; the sids Twilio refused with 63016."""
    patient_id = await enrolled(rig, consented_at=rig.clock.now)
    await rig.say("hola")
    rig.twilio.last_inbound.clear()  # WhatsApp's clock and ours disagree
    answered = callbacks_first(rig, *statuses, refused_only=True)
    await rig.app.services.asking.ask(patient_id, ["phq2"])
    await tick(rig.app)
    refused = {m["sid"] for m in rig.to(PATIENT) if m["error_code"] == 63016}
    assert refused, "the stand-in fails free text outside its window"
    assert answered == [204] * len(refused) * len(statuses)
    return refused


async def test_a_read_before_the_send_is_recorded_is_kept(rig: Rig, db: Database) -> None:
    """Read before the reply's sid was written: read and delivered once the send is
    recorded, not left at sent, and nothing kept."""
    await enrolled(rig, consented_at=rig.clock.now)
    answered = callbacks_first(rig, ("read", None))
    await rig.say("hola")
    assert answered == [204]
    (reply,) = await rows(db, OutboundMessage)
    assert (reply.status, reply.read_at) == ("delivered", rig.clock.now)
    assert await rows(db, EarlyReceipt) == []


async def test_an_early_63016_holds_the_message_instead_of_leaving_it_sent(
    rig: Rig, db: Database
) -> None:
    """63016 before the question's sid was written: held for the patient's reply once
    the send is recorded (never left "sent" although it never arrived), not retried as
    free text, and nothing kept."""
    refused = await refused_question(rig, ("failed", 63016))
    held = await rows(db, OutboundMessage, col(OutboundMessage.last_error).startswith(HELD))
    assert {m.provider_id for m in held} == refused
    assert all(m.status == "queued" for m in held)
    count = len(rig.created(PATIENT))
    await tick(rig.app)
    assert len(rig.created(PATIENT)) == count  # not retried as free text
    assert await rows(db, EarlyReceipt) == []


async def test_an_early_63016_beside_an_early_read_is_void(rig: Rig, db: Database) -> None:
    """A 63016 and then a read for the same sid, both before the send is recorded: it was
    read, so it arrived; delivered with its read time, not held to be sent twice."""
    refused = await refused_question(rig, ("failed", 63016), ("read", None))
    sent = await rows(db, OutboundMessage, col(OutboundMessage.provider_id).in_(refused))
    assert len(sent) == len(refused)
    assert all((m.status, m.read_at) == ("delivered", rig.clock.now) for m in sent)
    assert await rows(db, OutboundMessage, col(OutboundMessage.last_error).startswith(HELD)) == []


@pytest.mark.parametrize("arrived", ["delivered", "read"])
async def test_an_arrival_after_a_63016_wins_and_is_recorded(
    rig: Rig, db: Database, arrived: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A delivered or read after the 63016 that held the message (they contradict each
    other): the message arrived, so it is delivered, no longer held, never sent again,
    and the contradiction is on the row and in the log; nothing is left kept."""
    refused = await refused_question(rig)
    for sid in sorted(refused):
        await status(rig, {"sid": sid}, "failed", 63016)
    held = await rows(db, OutboundMessage, col(OutboundMessage.last_error).startswith(HELD))
    assert {m.provider_id for m in held} == refused
    count = len(rig.created(PATIENT))
    with caplog.at_level(logging.WARNING, logger="bot.app.outbox.receipts"):
        for sid in sorted(refused):
            await status(rig, {"sid": sid}, arrived)
    found = await rows(db, OutboundMessage, col(OutboundMessage.provider_id).in_(refused))
    assert [m.status for m in found] == ["delivered"] * len(refused)
    assert all(m.last_error == f"whatsapp: {arrived} after twilio error 63016: not held"
               for m in found)  # fmt: skip
    assert all((m.read_at is not None) == (arrived == "read") for m in found)
    assert len([r for r in caplog.records if "no longer held" in r.getMessage()]) == len(found)
    assert await rows(db, EarlyReceipt) == []
    rig.clock.now += timedelta(days=1)  # when a held message would go again
    await tick(rig.app)
    assert await rows(db, OutboundMessage, col(OutboundMessage.last_error).startswith(HELD)) == []
    assert len(rig.created(PATIENT)) == count  # neither the template nor the message again


async def test_blocking_the_sender_ends_it_and_tells_the_clinician(rig: Rig, db: Database) -> None:
    """63014 (the patient blocked the business) makes them unreachable, with the alert."""
    await enrolled(rig, consented_at=rig.clock.now)
    rig.twilio.block(PATIENT)
    await rig.say("hola")
    (message,) = rig.to(PATIENT)
    assert message["error_code"] == 63014
    await status(rig, message, "undelivered", 63014)
    (patient,) = await rows(db, Patient)
    assert patient.status == "blocked"
    assert [a.rule for a in await rows(db, Alert)] == ["opted_out"]


async def test_a_63016_on_a_clinicians_alert_fails_it_and_the_alert_goes_to_the_backup(
    rig: Rig, db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    """WhatsApp refuses the clinician's alert notice with 63016 after Twilio took it: the
    notice fails instead of staying "sent" (nothing holds a clinician's message), counted
    where the operator looks, logged by ids only; the alert, unacknowledged, goes to the
    backup at once, not at its deadline (tests/test_alerts_undelivered.py)."""
    await enrolled(rig, consented_at=rig.clock.now)
    async with rig.app.db.transaction() as session:
        backup = Clinician(display_name="Dr B", channel="whatsapp", address=BACKUP)
        await Repository(session).add(backup)
        (primary,) = (await session.exec(select(Clinician).where(Clinician.id != backup.id))).all()
        primary.backup_clinician_id = backup.id
        await Repository(session).add(primary)
    rig.twilio.approved.discard(rig.sids["alert_en"])  # WhatsApp will not take it
    await rig.say("quiero morir")
    (notice,) = rig.to(CLINICIAN)
    assert notice["error_code"] == 63016
    with caplog.at_level(logging.WARNING, logger="bot.app.outbox.receipts"):
        await status(rig, notice, "failed", 63016)
    (failed,) = await rows(db, OutboundMessage, OutboundMessage.provider_id == notice["sid"])
    assert failed.status == "failed" and "63016" in str(failed.last_error)
    (logged,) = [r.getMessage() for r in caplog.records if "63016" in r.getMessage()]
    assert logged.startswith(f"outbound {failed.id} to clinician {failed.recipient_id} failed")
    assert "morir" not in caplog.text and PATIENT not in caplog.text
    samples = {m.name: m.samples for m in await collect(db, rig.clock.now, None)}
    assert samples["checkin_delivery_failures"] == [({}, 1)]

    rig.twilio.approved.add(rig.sids["alert_en"])
    (alert,) = [a for a in await rows(db, Alert) if a.rule == "risk_language"]
    assert alert.status == "open" and alert.ack_deadline is not None
    assert rig.clock.now < alert.ack_deadline
    await tick(rig.app)  # long before the deadline
    (escalated,) = rig.created(BACKUP)
    assert escalated["ContentSid"] == rig.sids["alert_en"]
    assert alert.code in json.loads(escalated["ContentVariables"])["2"]


async def test_forged_and_repeated_webhooks(rig: Rig, db: Database) -> None:
    """An unsigned request is refused with nothing stored; a repeated MessageSid is
    recorded once; an SMS-shaped sender is refused on /whatsapp."""
    await enrolled(rig)
    request = rig.twilio.whatsapp_request(
        f"{PUBLIC}/whatsapp", from_=PATIENT, to=SENDER, button=("Sí, empezar", "yes")
    )
    forged = dict(request.headers) | {"X-Twilio-Signature": "AAAA"}
    response = await rig.web.post("/whatsapp", data=request.form, headers=forged)
    assert response.status_code == 403
    for _ in range(2):
        assert (await rig.post(request)).status_code == 200
        await tick(rig.app)
    (inbound,) = await rows(db, InboundMessage)
    assert inbound.text == "yes"
    sms = rig.twilio.whatsapp_request(f"{PUBLIC}/whatsapp", from_="+12015550123", to=SENDER)
    assert (await rig.post(sms)).status_code == 400


async def test_two_answers_come_as_quick_replies(rig: Rig, db: Database) -> None:
    """A yes/no item goes as two quick-reply buttons whose payload is the item and value;
    tapping one (ButtonPayload) records that answer, and typing works too."""
    patient_id = await enrolled(rig, consented_at=rig.clock.now)
    await rig.say("hola")
    await rig.app.services.asking.ask(patient_id, ["side_effects"])
    await tick(rig.app)
    question = rig.created(PATIENT)[-1]
    assert question["ContentSid"] == rig.sids["quick_reply_2"]
    variables = json.loads(question["ContentVariables"])
    item = variables["3"].partition("=")[0]
    assert variables["2"] == "0 · No" and variables["3"] == f"{item}=0"
    assert variables["5"] == f"{item}=1"
    await rig.say(button=("1 · Sí", f"{item}=1"))
    await rig.say("no")
    answers = await rows(db, Answer)
    assert [(a.item_key, a.value_int) for a in answers][:1] == [(item, 1)]
    assert len(answers) == 2

"""The SMS channel in one process: the real twilio client talks to a Twilio stand-in; Twilio's
signed webhooks reach our Starlette app through httpx; a real database."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlmodel import col, select

from bot.bootstrap import App, build
from bot.config import Clinic, Server, Settings, Sms
from bot.domain.alerts import DEFAULT_RULES
from bot.storage.database import Database
from bot.storage.repository import Repository
from bot.storage.spool import FileSpool
from bot.storage.tables import (
    Alert,
    Answer,
    Checkin,
    InboundMessage,
    OutboundMessage,
    Patient,
)
from bot.web.app import create_app
from scheduler.loop import courier, spool_drainer, tick
from tests.standins.server import serve
from tests.standins.twilio import TwilioStandIn, signed_request, unsubscribed
from tests.test_services import SimClock

# alerts at once, each alone: the clock here stands still (digests: test_alert_digests.py)
ALONE = replace(DEFAULT_RULES, digest_window=timedelta(0))

PUBLIC = "https://checkin.example"
PATIENT = "+15555550123"
CLINIC_NUMBER = "+15555550100"


@dataclass
class Rig:
    app: App
    twilio: TwilioStandIn
    web: httpx.AsyncClient
    clock: SimClock

    async def post(self, request: Any) -> httpx.Response:
        path = request.url.removeprefix(PUBLIC)
        return await self.web.post(path, data=request.form, headers=request.headers)

    async def text(self, body: str, sid: str | None = None) -> httpx.Response:
        extra = {"message_sid": sid} if sid else {}
        request = self.twilio.inbound_request(
            f"{PUBLIC}/sms", from_=PATIENT, to=CLINIC_NUMBER, body=body, **extra
        )
        response = await self.post(request)
        await tick(self.app)
        return response

    def bodies(self) -> list[str]:
        return [m["body"] for m in self.twilio.messages.values() if m["to"] == PATIENT]


@pytest.fixture
async def rig(db: Database, tmp_path: Path) -> AsyncIterator[Rig]:
    twilio = TwilioStandIn()
    clock = SimClock(datetime(2026, 5, 4, 16, 0, tzinfo=UTC))  # noon in New York
    async with serve(twilio.app) as url:
        settings = Settings(
            database_url=db.url.render_as_string(hide_password=False),
            clinic=Clinic(name="Lakeside"),
            alerts=ALONE,
            server=Server(public_url=PUBLIC),
            sms=Sms(account_sid=twilio.account_sid, auth_token=twilio.auth_token,
                    from_number=CLINIC_NUMBER, api_base_url=url,
                    spool_path=tmp_path / "checkin.spool"),
        )  # fmt: skip
        app = build(settings, clock=clock)
        transport = httpx.ASGITransport(app=create_app(app))
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8080") as web:
            try:
                yield Rig(app, twilio, web, clock)
            finally:
                await app.close()


async def invited(rig: Rig) -> int:
    async with rig.app.db.transaction() as session:
        patient = Patient(
            display_name="P", timezone="America/New_York", channel="sms", address=PATIENT
        )
        await Repository(session).add(patient)
    assert patient.id is not None
    await rig.app.services.consent.invite(patient.id)
    await tick(rig.app)
    return patient.id


async def table(db: Database, model: type, *where: object) -> list:  # type: ignore[type-arg]
    async with db.transaction() as session:
        return list((await session.exec(select(model).where(*where).order_by(col(model.id)))).all())


async def test_invitation_yes_and_a_complete_phq9(rig: Rig, db: Database) -> None:
    """Invited, the patient gets only the invitation; YES activates; a PHQ-9 completes by SMS."""
    patient_id = await invited(rig)
    assert rig.bodies() == [
        "Lakeside invites you to answer short health check-ins by text message. Reply YES to "
        "start, or STOP to decline. Msg & data rates may apply."
    ]
    await rig.app.services.asking.ask(patient_id, ["phq9"])
    await tick(rig.app)
    assert len(rig.bodies()) == 1  # nothing else before YES
    await rig.text("yes")
    (patient,) = await table(db, Patient)
    assert patient.status == "active" and patient.consent_at is not None
    await tick(rig.app)
    assert "\n\n1/9 (last 2 weeks): Little interest" in rig.bodies()[-1]  # below the intro
    for reply in ["1", "2", "0", "1", "0", "1", "0", "0", "0", "1"]:
        assert (await rig.text(reply)).status_code == 200
    answers = await table(db, Answer)
    assert [a.value_int for a in answers] == [1, 2, 0, 1, 0, 1, 0, 0, 0, 1]
    assert "Thank you, your check-in is complete." in rig.bodies()[-1]
    sent = [c for c in rig.twilio.calls if c.method == "Messages.create"]
    assert all(c.params["StatusCallback"] == f"{PUBLIC}/sms/status" for c in sent)
    assert all(c.params["From"] == CLINIC_NUMBER for c in sent)


async def test_declining_the_invitation(rig: Rig, db: Database) -> None:
    """STOP to the invitation records the refusal; nothing is sent after the confirmation."""
    patient_id = await invited(rig)
    await rig.text("STOP")
    (patient,) = await table(db, Patient)
    assert patient.status == "opted_out" and patient.consent_at is None
    await rig.app.services.asking.ask(patient_id, ["phq2"])
    await tick(rig.app)
    assert len(rig.bodies()) == 2  # the invitation and the one confirmation


@pytest.mark.parametrize("forgery", ["altered body", "wrong url", "no signature", "wrong token"])
async def test_forged_webhooks_get_403_and_store_nothing(
    rig: Rig, db: Database, forgery: str
) -> None:
    """A request Twilio did not sign exactly as received is refused, and nothing is recorded."""
    await invited(rig)
    request = rig.twilio.inbound_request(
        f"{PUBLIC}/sms", from_=PATIENT, to=CLINIC_NUMBER, body="yes"
    )
    form, headers = dict(request.form), dict(request.headers)
    if forgery == "altered body":
        form["Body"] = "STOP"
    elif forgery == "wrong url":
        headers = signed_request(
            "https://elsewhere.example/sms", form, rig.twilio.auth_token
        ).headers
    elif forgery == "no signature":
        headers.pop("X-Twilio-Signature")
    else:
        headers = signed_request(request.url, form, "not-the-token").headers
    response = await rig.web.post("/sms", data=form, headers=headers)
    assert response.status_code == 403
    assert await table(db, InboundMessage) == []


async def test_a_duplicate_message_sid_stores_one_answer_and_one_reply(
    rig: Rig, db: Database
) -> None:
    """Twilio resending one MessageSid changes things once."""
    patient_id = await invited(rig)
    await rig.text("YES")
    await rig.app.services.asking.ask(patient_id, ["phq9"])
    await tick(rig.app)
    before = len(rig.bodies())
    for _ in range(3):
        response = await rig.text("2", sid="SM" + "d" * 32)
        assert response.status_code == 200 and "<Response>" in response.text
    answers = await table(db, Answer)
    assert [(a.item_key, a.value_int) for a in answers] == [("phq9.q1", 2)]
    assert len(rig.bodies()) == before + 1


async def test_stop_mid_check_in_stops_everything_and_start_resumes(rig: Rig, db: Database) -> None:
    """STOP cancels the open check-in and every planned one at once; START lets new ones run."""
    patient_id = await invited(rig)
    await rig.text("YES")
    await rig.app.services.asking.ask(patient_id, ["phq9"])
    await rig.app.services.asking.ask(
        patient_id, ["gad7"], due_at=rig.clock.now + timedelta(days=7)
    )
    await tick(rig.app)
    await rig.text("1")
    await rig.text("STOP")
    assert [c.status for c in await table(db, Checkin)] == ["cancelled", "cancelled"]
    (patient,) = await table(db, Patient)
    assert patient.status == "opted_out"
    rig.clock.now += timedelta(days=8)
    await tick(rig.app)
    stopped = len(rig.bodies())
    await rig.text("START")
    (patient,) = await table(db, Patient)
    assert patient.status == "active"
    await rig.app.services.asking.ask(patient_id, ["phq2"])
    await tick(rig.app)
    assert len(rig.bodies()) == stopped + 2  # welcome back; the intro above question 1


async def test_stop_by_sms_tells_the_clinician_and_gives_the_crisis_line(
    rig: Rig, db: Database
) -> None:
    """STOP through Twilio's webhook, with nothing open: a routine opted_out alert, and a
    one-segment confirmation naming 988 and the emergency number."""
    await invited(rig)
    await rig.text("YES")
    await rig.text("STOP")
    (alert,) = await table(db, Alert)
    assert (alert.rule, alert.level, alert.status) == ("opted_out", "routine", "open")
    assert (alert.detail["how"], alert.detail["in_checkin"]) == ("stop", False)
    confirmation = rig.bodies()[-1]
    assert confirmation == (
        "You will get no more check-ins from Lakeside. Reply START to resume.\n"
        "In a crisis call or text 988. Emergency: call 911."
    )


async def test_declining_the_invitation_tells_the_clinician(rig: Rig, db: Database) -> None:
    """STOP to the invitation: the clinician who enrolled the patient learns it (routine)."""
    await invited(rig)
    await rig.text("STOP")
    (alert,) = await table(db, Alert)
    assert (alert.rule, alert.level, alert.detail["how"]) == ("opted_out", "routine", "declined")
    assert "988" in rig.bodies()[-1]


async def test_carrier_opt_out_21610_is_never_retried(rig: Rig, db: Database) -> None:
    """Twilio's 21610 (the number replied STOP to the carrier) opts the patient out, no retry."""
    patient_id = await invited(rig)
    await rig.text("YES")
    rig.twilio.opt_out(PATIENT)
    await rig.app.services.asking.ask(patient_id, ["phq2"])
    await tick(rig.app)
    (patient,) = await table(db, Patient)
    assert patient.status == "opted_out"
    dead = await table(db, OutboundMessage, OutboundMessage.status == "dead")
    assert dead and all("21610" in (m.last_error or "") for m in dead)
    attempts = len(rig.twilio.calls)
    rig.clock.now += timedelta(hours=2)
    await tick(rig.app)
    assert len(rig.twilio.calls) == attempts
    assert unsubscribed().code == 21610


async def test_a_carrier_opt_out_tells_the_clinician(rig: Rig, db: Database) -> None:
    """21610 on sending, or in a status callback, where no STOP reached us: opted_out too."""
    patient_id = await invited(rig)
    await rig.text("YES")
    rig.twilio.opt_out(PATIENT)
    await rig.app.services.asking.ask(patient_id, ["phq2"])
    await tick(rig.app)
    (alert,) = await table(db, Alert)
    assert (alert.rule, alert.level, alert.detail["how"]) == ("opted_out", "routine", "stop")


async def test_a_21610_status_callback_tells_the_clinician(rig: Rig, db: Database) -> None:
    """A message accepted, then failed with 21610: the patient is opted out and alerted on."""
    await invited(rig)
    await rig.text("YES")
    welcome = (await table(db, OutboundMessage))[-1]
    assert welcome.provider_id is not None
    response = await rig.post(rig.twilio.status_request(welcome.provider_id, "failed", 21610))
    assert response.status_code == 204
    (patient,) = await table(db, Patient)
    (alert,) = await table(db, Alert)
    assert (patient.status, alert.rule, alert.detail["how"]) == ("opted_out", "opted_out", "stop")


async def test_status_callbacks_never_regress(rig: Rig, db: Database) -> None:
    """delivered then a late 'sent' leaves delivered; a signed callback is required."""
    await invited(rig)
    (invitation,) = await table(db, OutboundMessage)
    assert invitation.provider_id is not None
    for status in ("delivered", "sent", "failed"):
        response = await rig.post(rig.twilio.status_request(invitation.provider_id, status))
        assert response.status_code == 204
    (after,) = await table(db, OutboundMessage)
    assert after.status == "delivered"
    forged = await rig.web.post(
        "/sms/status", data={"MessageSid": invitation.provider_id, "MessageStatus": "failed"}
    )
    assert forged.status_code == 403


async def test_an_unknown_number_gets_nothing(rig: Rig, db: Database) -> None:
    """A text from a number no patient has is recorded and answered with silence."""
    request = rig.twilio.inbound_request(
        f"{PUBLIC}/sms", from_="+15555550199", to=CLINIC_NUMBER, body="hi"
    )
    assert (await rig.post(request)).status_code == 200
    await tick(rig.app)
    assert rig.twilio.messages == {}
    (message,) = await table(db, InboundMessage)
    assert message.error == "unknown sender"


async def test_a_messaging_service_sends_without_a_from_number() -> None:
    """With messaging_service_sid set, messages go through the service (no From)."""
    from bot.channels.sms import SmsChannel
    from bot.rendering.renderer import Rendered

    twilio = TwilioStandIn()
    service = "MG" + "a" * 32
    async with serve(twilio.app) as url:
        settings = Sms(account_sid=twilio.account_sid, auth_token=twilio.auth_token,
                       messaging_service_sid=service, api_base_url=url)  # fmt: skip
        channel = SmsChannel(settings, status_callback=f"{PUBLIC}/sms/status")
        try:
            sid = await channel.send(PATIENT, Rendered("1/9: hello"), {})
        finally:
            channel.close()
    (call,) = [c for c in twilio.calls if c.method == "Messages.create"]
    assert call.params["MessagingServiceSid"] == service and "From" not in call.params
    assert sid in twilio.messages


async def test_healthz_and_metrics_show_the_spool_and_a_stuck_one_is_unhealthy(
    rig: Rig, db: Database
) -> None:
    """A spooled SMS shows in /healthz and /metrics; one waiting over two minutes makes
    /healthz 503 with the reason, and the tick's drain makes it healthy again."""
    await invited(rig)
    rig.clock.now += timedelta(seconds=1)
    request = rig.twilio.inbound_request(
        f"{PUBLIC}/sms", from_=PATIENT, to=CLINIC_NUMBER, body="YES"
    )
    assert (await rig.post(request)).status_code == 200  # spooled; no tick has drained it
    rig.clock.now += timedelta(minutes=3)
    rig.app.last_tick_at[:] = [rig.clock.now]
    stuck = await rig.web.get("/healthz")
    assert stuck.status_code == 503
    assert stuck.json()["spool_depth"] == 1 and stuck.json()["spool_oldest_age_s"] == 180
    assert stuck.json()["reason"] == "sms spool not draining (oldest message waiting over 120s)"
    scraped = (await rig.web.get("/metrics")).text
    assert "checkin_spool_depth 1\n" in scraped
    assert "checkin_spool_oldest_age_seconds 180\n" in scraped
    await tick(rig.app)
    healthy = await rig.web.get("/healthz")
    assert healthy.status_code == 200 and healthy.json()["spool_depth"] == 0
    assert [m.text for m in await table(db, InboundMessage)] == ["YES"]


async def test_the_web_process_drains_a_spooled_message_without_waiting_for_a_tick(
    rig: Rig, db: Database
) -> None:
    """With the drain task `checkin run` starts, a YES is recorded and processed a moment
    after /sms answers, and the welcome sent, with no tick."""
    await invited(rig)
    request = rig.twilio.inbound_request(
        f"{PUBLIC}/sms", from_=PATIENT, to=CLINIC_NUMBER, body="YES"
    )
    async with courier(rig.app), spool_drainer(rig.app):
        assert (await rig.post(request)).status_code == 200
        for _ in range(200):
            if any(b.startswith("Welcome") for b in rig.bodies()):
                break
            await asyncio.sleep(0.05)
    (patient,) = await table(db, Patient)
    assert patient.status == "active" and any(b.startswith("Welcome") for b in rig.bodies())


async def test_a_full_spool_answers_503_keeps_nothing_and_says_so(
    rig: Rig, db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    """At [sms] spool_max waiting, /sms answers 503 (Twilio logs an error), keeps nothing
    and logs it at CRITICAL; drained, the spool takes messages again."""
    spool = rig.app.services.intake.spool if rig.app.services.intake else None
    assert isinstance(spool, FileSpool)
    spool.max_messages = 1  # as `[sms] spool_max = 1`
    await invited(rig)
    texts = [
        rig.twilio.inbound_request(f"{PUBLIC}/sms", from_=PATIENT, to=CLINIC_NUMBER, body=body)
        for body in ("YES", "HELP", "HELP")
    ]
    assert (await rig.post(texts[0])).status_code == 200
    assert (await rig.post(texts[1])).status_code == 503
    assert any(r.levelname == "CRITICAL" and "spool full" in r.getMessage() for r in caplog.records)
    await tick(rig.app)
    assert (await rig.post(texts[2])).status_code == 200
    await tick(rig.app)
    assert len(await table(db, InboundMessage)) == 2

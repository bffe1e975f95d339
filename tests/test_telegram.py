"""The Telegram channel end to end in one process: the real python-telegram-bot talks to a
Bot API stand-in; updates reach our Starlette webhook through httpx; a real database."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlmodel import col, select

from bot.app.conversations.enrollment import issue_code
from bot.bootstrap import App, build
from bot.config import Clinic, Settings, Telegram
from bot.domain.alerts import DEFAULT_RULES
from bot.storage.database import Database
from bot.storage.repository import Repository
from bot.storage.tables import Alert, Answer, Checkin, InboundMessage, OutboundMessage, Patient
from bot.web.app import SECRET_HEADER, create_app
from scheduler.loop import tick
from tests.standins.server import serve
from tests.standins.telegram import TelegramStandIn
from tests.test_services import SimClock

# alerts at once, each alone: the clock here stands still (digests: test_alert_digests.py)
ALONE = replace(DEFAULT_RULES, digest_window=timedelta(0))

CHAT = 5501
SECRET = "s3cret_token-for-tests"


@dataclass
class Rig:
    app: App
    stand_in: TelegramStandIn
    web: httpx.AsyncClient
    clock: SimClock

    async def post(self, update: dict[str, Any], secret: str | None = SECRET) -> httpx.Response:
        headers = {SECRET_HEADER: secret} if secret is not None else {}
        return await self.web.post("/telegram", json=update, headers=headers)

    async def say(self, text: str, chat: int = CHAT) -> None:
        response = await self.post(self.stand_in.text_update(chat, text))
        assert response.status_code == 200
        await tick(self.app)

    async def tap(self, data: str, chat: int = CHAT) -> dict[str, Any]:
        question = self.last_question(chat)
        update = self.stand_in.callback_update(chat, question["message_id"], data)
        response = await self.post(update)
        assert response.status_code == 200
        await tick(self.app)
        return update

    def last_question(self, chat: int = CHAT) -> dict[str, Any]:
        """The newest message to `chat` that still carries answer buttons."""
        for message in reversed(self.stand_in.messages(chat)):
            if message.get("reply_markup"):
                return message
        raise AssertionError("no question with buttons was sent")

    def texts(self, chat: int = CHAT) -> list[str]:
        return self.stand_in.sent_texts(chat)


@pytest.fixture
async def rig(db: Database) -> AsyncIterator[Rig]:
    stand_in = TelegramStandIn()
    clock = SimClock(datetime(2026, 5, 4, 12, 0, tzinfo=UTC))  # midday: outside quiet hours
    async with serve(stand_in.app) as url:
        settings = Settings(
            database_url=db.url.render_as_string(hide_password=False),
            clinic=Clinic(name="Lakeside"),
            alerts=ALONE,
            telegram=Telegram(
                token=stand_in.token,
                mode="webhook",
                webhook_secret=SECRET,
                api_base_url=f"{url}/bot",
            ),
        )
        app = build(settings, clock=clock)
        transport = httpx.ASGITransport(app=create_app(app))
        async with httpx.AsyncClient(transport=transport, base_url="http://checkin.test") as web:
            try:
                yield Rig(app, stand_in, web, clock)
            finally:
                await app.close()


async def invited(rig: Rig, ttl: timedelta = timedelta(hours=1)) -> tuple[int, str]:
    async with rig.app.db.transaction() as session:
        patient = Patient(display_name="P", timezone="UTC", channel="telegram", status="invited")
        await Repository(session).add(patient)
        assert patient.id is not None
        code, _ = await issue_code(session, rig.clock(), ttl, patient_id=patient.id)
    return patient.id, code


async def table(db: Database, model: type, *where: object) -> list:  # type: ignore[type-arg]
    async with db.transaction() as session:
        return list((await session.exec(select(model).where(*where).order_by(col(model.id)))).all())


async def test_deep_link_enrols_then_buttons_and_typing_complete_a_phq9(
    rig: Rig, db: Database
) -> None:
    """/start CODE links the chat; a PHQ-9 is answered by taps and typing; questions show the choice."""
    patient_id, code = await invited(rig)
    await rig.say(f"/start {code}")
    (patient,) = await table(db, Patient)
    assert (patient.status, patient.address) == ("active", str(CHAT))
    assert "Welcome: you are connected to Lakeside check-ins." in rig.texts()[-1]
    before = len(rig.texts())
    await rig.app.services.asking.ask(patient_id, ["phq9"])
    await tick(rig.app)
    (opening,) = rig.texts()[before:]  # one message: the introduction above question 1
    assert opening.startswith("Lakeside check-in: PHQ-9 (9 questions)")
    assert "options.\n\n1/9 (last 2 weeks)\nLittle interest" in opening
    for n in range(1, 6):
        await rig.tap(f"phq9.q{n}=1")
    for text in ("0", "not at all", "0", "0"):
        await rig.say(text)
    await rig.say("somewhat")
    answers = await table(db, Answer)
    assert [a.value_int for a in answers] == [1, 1, 1, 1, 1, 0, 0, 0, 0, 1]
    first_question = next(m for m in rig.stand_in.messages(CHAT) if "Little interest" in m["text"])
    assert first_question["text"].endswith("✓ Several days")  # edited after the tap
    assert first_question["text"].startswith("Lakeside check-in: PHQ-9")  # its intro stays
    assert "reply_markup" not in first_question or not first_question["reply_markup"]
    assert "Thank you, your check-in is complete." in rig.texts()[-1]


@pytest.mark.parametrize("problem", ["wrong", "used", "expired"])
async def test_bad_codes_get_a_plain_refusal(rig: Rig, db: Database, problem: str) -> None:
    """A wrong, used or expired code is refused in words that say nothing about anyone."""
    _, code = await invited(
        rig, ttl=timedelta(hours=1) if problem != "expired" else timedelta(seconds=1)
    )
    if problem == "used":
        await rig.say(f"/start {code}", chat=CHAT + 1)
    if problem == "expired":
        rig.clock.now += timedelta(minutes=5)
    await rig.say(f"/start {code if problem != 'wrong' else 'x' * 32}")
    assert (
        rig.texts()[-1]
        == "That link is not valid or has expired. Please ask your clinic for a new one."
    )
    (patient,) = await table(db, Patient)
    assert patient.address != str(CHAT)


async def test_an_unknown_chat_learns_nothing(rig: Rig, db: Database) -> None:
    """A stranger gets the same generic reply whatever they write, naming no patient or clinic."""
    await invited(rig)
    await rig.say("hello, is Pat there?")
    await rig.say("/start")
    texts = rig.texts()
    assert len(set(texts)) == 1 and "private check-in service" in texts[0]
    assert "Lakeside" not in texts[0]


@pytest.mark.parametrize("secret", [None, "", "wrong", SECRET + "x"])
async def test_webhook_without_the_secret_is_refused_and_records_nothing(
    rig: Rig, db: Database, secret: str | None
) -> None:
    """A missing or wrong X-Telegram-Bot-Api-Secret-Token gets 403 and stores nothing."""
    response = await rig.post(rig.stand_in.text_update(CHAT, "/start abc"), secret=secret)
    assert response.status_code == 403
    assert await table(db, InboundMessage) == []


async def test_duplicates_store_one_answer(rig: Rig, db: Database) -> None:
    """A redelivered update, a message resent under a new update_id, and a button tapped again
    under a new update_id each leave exactly one answer."""
    patient_id, code = await invited(rig)
    await rig.say(f"/start {code}")
    await rig.app.services.asking.ask(patient_id, ["phq9"])
    await tick(rig.app)
    tap = await rig.tap("phq9.q1=2")
    assert (await rig.post(tap)).status_code == 200  # the same update again
    again = replace_update_id(tap, 99_001)
    assert (await rig.post(again)).status_code == 200  # the same query under a new update_id
    typed = rig.stand_in.text_update(CHAT, "1")
    for update in (typed, typed, replace_update_id(typed, 99_002)):
        assert (await rig.post(update)).status_code == 200
    await tick(rig.app)
    answers = await table(db, Answer)
    assert [(a.item_key, a.value_int) for a in answers] == [("phq9.q1", 2), ("phq9.q2", 1)]
    assert rig.texts().count(rig.texts()[-1]) == 1


def replace_update_id(update: dict[str, Any], update_id: int) -> dict[str, Any]:
    return {**update, "update_id": update_id}


async def test_an_old_button_does_not_answer_the_current_question(rig: Rig, db: Database) -> None:
    """Tapping a button on an earlier question (new query id) changes nothing."""
    patient_id, code = await invited(rig)
    await rig.say(f"/start {code}")
    await rig.app.services.asking.ask(patient_id, ["phq9"])
    await tick(rig.app)
    first = rig.last_question()
    await rig.tap("phq9.q1=3")
    stale = rig.stand_in.callback_update(CHAT, first["message_id"], "phq9.q1=0")
    assert (await rig.post(stale)).status_code == 200
    await tick(rig.app)
    answers = await table(db, Answer)
    assert [(a.item_key, a.value_int) for a in answers] == [("phq9.q1", 3)]


async def test_blocking_the_bot_marks_the_patient_and_stops(rig: Rig, db: Database) -> None:
    """A 403 on send marks the patient blocked, the message dead, and nothing is retried."""
    patient_id, code = await invited(rig)
    await rig.say(f"/start {code}")
    rig.stand_in.block(CHAT)
    await rig.app.services.asking.ask(patient_id, ["phq2"])
    await tick(rig.app)
    (patient,) = await table(db, Patient)
    assert patient.status == "blocked"
    dead = await table(db, OutboundMessage, OutboundMessage.status == "dead")
    assert dead and all("blocked" in (m.last_error or "") for m in dead)
    calls = len(rig.stand_in.calls_to("sendMessage"))
    rig.clock.now += timedelta(hours=1)
    await tick(rig.app)
    assert len(rig.stand_in.calls_to("sendMessage")) == calls


async def test_a_403_on_sending_tells_the_clinician(rig: Rig, db: Database) -> None:
    """Blocked with no my_chat_member seen: the failed send raises opted_out (blocked)."""
    patient_id, code = await invited(rig)
    await rig.say(f"/start {code}")
    rig.stand_in.block(CHAT)
    await rig.app.services.asking.ask(patient_id, ["phq2"])
    await tick(rig.app)
    (alert,) = await table(db, Alert)
    assert (alert.rule, alert.level, alert.detail["how"]) == ("opted_out", "routine", "blocked")


async def test_my_chat_member_updates_the_status(rig: Rig, db: Database) -> None:
    """Blocking and unblocking the bot in Telegram sets the patient blocked, then active."""
    _, code = await invited(rig)
    await rig.say(f"/start {code}")
    for status, expected in (("kicked", "blocked"), ("member", "active")):
        response = await rig.post(
            member_update(CHAT, status, update_id=70_000 + len(rig.texts()) + (status == "member"))
        )
        assert response.status_code == 200
        (patient,) = await table(db, Patient)
        assert patient.status == expected


async def test_blocking_the_bot_tells_the_clinician(rig: Rig, db: Database) -> None:
    """A my_chat_member "kicked" raises the routine opted_out alert; unblocking leaves it."""
    _, code = await invited(rig)
    await rig.say(f"/start {code}")
    await rig.post(member_update(CHAT, "kicked", update_id=71_000))
    (alert,) = await table(db, Alert)
    assert (alert.rule, alert.level, alert.status) == ("opted_out", "routine", "open")
    assert (alert.detail["how"], alert.detail["in_checkin"]) == ("blocked", False)
    await rig.post(member_update(CHAT, "member", update_id=71_001))
    (patient,) = await table(db, Patient)
    (alert,) = await table(db, Alert)
    assert (patient.status, alert.status) == ("active", "open")


async def test_blocking_after_stop_never_reactivates(rig: Rig, db: Database) -> None:
    """Opted out, then blocked and unblocked: still opted out (only START opts back in)."""
    _, code = await invited(rig)
    await rig.say(f"/start {code}")
    await rig.say("STOP")
    for n, status in enumerate(("kicked", "member")):
        await rig.post(member_update(CHAT, status, update_id=72_000 + n))
        (patient,) = await table(db, Patient)
        assert patient.status == "opted_out", status


async def test_blocking_the_bot_at_item_9_is_urgent(rig: Rig, db: Database) -> None:
    """Blocked while item 9 is being asked: urgent; the check-in stays open (to expire)."""
    patient_id, code = await invited(rig)
    await rig.say(f"/start {code}")
    await rig.app.services.asking.ask(patient_id, ["phq9"])
    await tick(rig.app)
    for n in range(1, 9):
        await rig.tap(f"phq9.q{n}=0")
    await rig.post(member_update(CHAT, "kicked", update_id=71_002))
    (alert,) = await table(db, Alert)
    assert (alert.rule, alert.level) == ("opted_out", "urgent")
    assert (alert.detail["in_checkin"], alert.detail["reached_item_number"]) == (True, 9)
    assert [c.status for c in await table(db, Checkin)] == ["in_progress"]


def member_update(chat: int, status: str, update_id: int) -> dict[str, Any]:
    user = {"id": chat, "is_bot": False, "first_name": "Pat"}
    bot = {"id": 123456, "is_bot": True, "first_name": "Check-in", "username": "checkin_test_bot"}
    old = "member" if status == "kicked" else "kicked"
    return {
        "update_id": update_id,
        "my_chat_member": {
            "chat": {"id": chat, "type": "private", "first_name": "Pat"},
            "from": user,
            "date": int(datetime.now(UTC).timestamp()),
            "old_chat_member": {
                "user": bot,
                "status": old,
                **({"until_date": 0} if old == "kicked" else {}),
            },
            "new_chat_member": {
                "user": bot,
                "status": status,
                **({"until_date": 0} if status == "kicked" else {}),
            },
        },
    }


async def test_enrolment_codes_are_long_single_use_and_stored_hashed(
    rig: Rig, db: Database
) -> None:
    """A code carries at least 128 bits, only its SHA-256 is stored, and it works once."""
    import hashlib

    from bot.storage.tables import EnrollmentCode

    _, code = await invited(rig)
    assert len(code) * 6 >= 128 and re.fullmatch(r"[A-Za-z0-9_-]+", code)
    (row,) = await table(db, EnrollmentCode)
    assert row.code_hash == hashlib.sha256(code.encode()).hexdigest()
    assert code not in repr(row.model_dump())
    await rig.say(f"/start {code}")
    (row,) = await table(db, EnrollmentCode)
    assert row.used_at is not None


async def link_clinician(rig: Rig, name: str, language: str = "en") -> None:
    """A Telegram clinician, not yet linked, who then opens their enrolment link."""
    from bot.storage.tables import Clinician

    async with rig.app.db.transaction() as session:
        clinician = Clinician(display_name=name, channel="telegram", language=language)
        await Repository(session).add(clinician)
        code, _ = await issue_code(
            session, rig.clock(), timedelta(hours=1), clinician_id=clinician.id
        )
    await rig.say(f"/start {code}")


async def test_a_clinician_links_by_deep_link(rig: Rig, db: Database) -> None:
    """A clinician's code links their chat; they are told so, and are never treated as a stranger."""
    from bot.storage.tables import Clinician

    await link_clinician(rig, "Dr. Rao")
    (linked,) = await table(db, Clinician)
    assert linked.address == str(CHAT)
    assert rig.texts() == [
        "You are connected to Lakeside check-ins as a clinician. Patient alerts will come here."
    ]
    await rig.say("hello")
    assert rig.texts()[-1].splitlines()[:2] == [
        "Clinician commands:",
        "/patients: your patients, last score, trend, open alerts",
    ]


def test_secrets_come_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """CHECKIN_TELEGRAM_TOKEN and CHECKIN_TELEGRAM_WEBHOOK_SECRET override the file."""
    from bot.config import load_settings

    config = tmp_path / "c.toml"
    config.write_text('[server]\npublic_url = "https://x.example"\n[telegram]\nmode = "webhook"\n')
    monkeypatch.setenv("CHECKIN_TELEGRAM_TOKEN", "42:from-env")
    monkeypatch.setenv("CHECKIN_TELEGRAM_WEBHOOK_SECRET", "env_secret")
    telegram = load_settings(config).telegram
    assert (telegram.token, telegram.webhook_secret, telegram.enabled) == (
        "42:from-env",
        "env_secret",
        True,
    )


def test_webhook_mode_without_a_secret_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    """Webhook mode refuses to start without a valid secret, naming the key."""
    from bot.config import load_settings
    from bot.domain.errors import ConfigError

    monkeypatch.delenv("CHECKIN_TELEGRAM_WEBHOOK_SECRET", raising=False)
    config = tmp_path / "c.toml"
    config.write_text(
        '[server]\npublic_url = "https://x.example"\n[telegram]\ntoken = "1:a"\nmode = "webhook"\n'
    )
    with pytest.raises(ConfigError, match=r"telegram\.webhook_secret: webhook mode needs a secret"):
        load_settings(config)

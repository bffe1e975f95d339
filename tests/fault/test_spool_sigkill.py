"""SIGKILL with SMS in the spool: `checkin run` (a real process, SQLite) answers a
patient's texts while another connection holds the database file locked, so none can
reach the database; the process is killed, the lock released, and the service started
again. Every text that got a 200 is then recorded once, in order, and processed."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import make_url

from bot.bootstrap import build
from bot.config import load_settings
from bot.storage.database import Database
from bot.storage.repository import Repository
from bot.storage.tables import Answer, Checkin, InboundMessage, Patient
from tests.fault.conftest import CANARY_NAME, CANARY_PHONE, CANARY_TEXT, assert_no_canary
from tests.fault.test_sigkill_conversations import Service
from tests.standins.server import serve_in_thread
from tests.standins.twilio import TwilioStandIn
from tests.test_cli_service import free_port
from tests.test_services import rows
from tests.test_telegram_run import wait_until

pytestmark = pytest.mark.fault
PUBLIC = "https://checkin.example"
CLINIC_NUMBER = "+15555550100"


@pytest.fixture
def twilio() -> Iterator[tuple[TwilioStandIn, str]]:
    fake = TwilioStandIn()
    with serve_in_thread(fake.app) as url:
        yield fake, url


async def _enrol(config: Path) -> None:
    """The canary patient, active by SMS, with a PHQ-2 due now."""
    app = build(load_settings(config))
    try:
        async with app.db.transaction() as session:
            patient = Patient(display_name=CANARY_NAME, timezone="America/Chicago",
                              channel="sms", address=CANARY_PHONE, status="active")  # fmt: skip
            await Repository(session).add(patient)
        assert patient.id is not None
        await app.services.asking.ask(patient.id, ["phq2"], ignore_quiet_hours=True)
    finally:
        await app.close()


def test_texts_answered_while_the_database_was_locked_survive_a_sigkill(
    migrated_sqlite_url: str, tmp_path: Path, twilio: tuple[TwilioStandIn, str]
) -> None:
    """Locked file: /sms answers 200 three times (a repeated MessageSid too); SIGKILL;
    unlocked and restarted: the answers are stored once each and the PHQ-2 completes."""
    fake, stand_in = twilio
    path = make_url(migrated_sqlite_url).database or ""
    port, config = free_port(), tmp_path / "clinic.toml"
    config.write_text(
        f'[database]\nurl = "sqlite:///{path}"\n\n[clinic]\nname = "Lakeside"\n\n'
        f'[server]\nport = {port}\npublic_url = "{PUBLIC}"\n\n[scheduler]\ntick_s = 0.5\n\n'
        f'[sms]\naccount_sid = "{fake.account_sid}"\nauth_token = "{fake.auth_token}"\n'
        f'from_number = "{CLINIC_NUMBER}"\napi_base_url = "{stand_in}"\n'
    )
    asyncio.run(_enrol(config))
    url = f"sqlite:///{path}"
    first = Service(url, config, tmp_path / "first.log")
    lock = sqlite3.connect(path, isolation_level=None)
    try:
        asked = lambda: any("\n1/2" in m["body"] for m in list(fake.messages.values()))  # noqa: E731 (below the intro)
        wait_until("the first question", asked)
        lock.execute("BEGIN EXCLUSIVE")
        requests = [fake.inbound_request(f"{PUBLIC}/sms", from_=CANARY_PHONE, to=CLINIC_NUMBER,
                                         body=text) for text in (CANARY_TEXT, "2", "1")]  # fmt: skip
        answered = [
            httpx.post(f"http://127.0.0.1:{port}/sms", data=r.form, headers=r.headers, timeout=10)
            for r in (*requests, requests[1])  # Twilio's stand-in repeats one MessageSid
        ]
        assert [r.status_code for r in answered] == [200] * 4
    finally:
        first.kill()
        lock.close()
    assert asyncio.run(_count(migrated_sqlite_url)) == 0  # nothing reached the database
    second = Service(url, config, tmp_path / "second.log")
    try:
        wait_until("the check-in completed", lambda: asyncio.run(_completed(migrated_sqlite_url)),
                   timeout_s=60)  # fmt: skip
    finally:
        assert second.terminate() == 0
    for log in ("first.log", "second.log"):
        assert_no_canary((tmp_path / log).read_text(), log)
    stored = asyncio.run(_stored(migrated_sqlite_url))
    assert stored == ([CANARY_TEXT, "2", "1"], [("phq2.q1", 2), ("phq2.q2", 1)])


async def _count(url: str) -> int:
    async with Database(url) as db:
        return len(await rows(db, InboundMessage))


async def _completed(url: str) -> bool:
    async with Database(url) as db:
        return [c.status for c in await rows(db, Checkin)] == ["completed"]


async def _stored(url: str) -> tuple[list[str], list[tuple[str, int | None]]]:
    async with Database(url) as db:
        texts = [m.text for m in await rows(db, InboundMessage)]
        answers = [(a.item_key, a.value_int) for a in await rows(db, Answer)]
    return texts, answers

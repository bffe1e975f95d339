"""SIGKILL during 500 concurrent conversations: `checkin run` (a real process, webhook
mode, PostgreSQL) is killed while 500 Telegram patients answer a PHQ-2 at once, and
restarted. The driver plays Telegram: every webhook that did not get a 2xx (refused,
reset, timed out) is sent again, same update_id, until one does. Afterwards every answer
acknowledged with a 2xx is stored, none twice, and every check-in is complete."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlmodel import col, func, select

from bot.bootstrap import build
from bot.config import load_settings
from bot.storage.database import Database
from bot.storage.repository import Repository
from bot.storage.tables import Answer, Checkin, InboundMessage, Patient
from tests.fault.conftest import CANARY_CHAT, CANARY_NAME, CANARY_TEXT, assert_no_canary
from tests.standins.server import serve
from tests.standins.telegram import SECRET_TOKEN_HEADER, TelegramStandIn
from tests.standins.workers import Process
from tests.test_cli_service import checkin, free_port
from tests.test_telegram_run import SECRET, configure

pytestmark = [pytest.mark.fault, pytest.mark.postgres]

PATIENTS = 500
FIRST_CHAT = 610_000
KILL_AFTER = 400  # acknowledged answers (of 1,000) before the SIGKILL
DEADLINE_S = 150.0


class Service(Process):
    """`checkin run` as a subprocess, with the fault suite's raised outbound pace."""

    def __init__(self, url: str, config: Path, log: Path) -> None:
        super().__init__(url, config, log, "run", module="tests.fault.launch")


@dataclass
class Driver:
    """Telegram's side: patients answer each question as it arrives; retry until 2xx."""

    fake: TelegramStandIn
    web: httpx.AsyncClient
    acked: set[tuple[int, str]] = field(default_factory=set)
    attempts: int = 0
    refused: int = 0
    in_flight: int = 0

    async def post(self, update: dict[str, Any]) -> None:
        while True:
            self.attempts += 1
            self.in_flight += 1
            try:
                response = await self.web.post(
                    "/telegram", json=update, headers={SECRET_TOKEN_HEADER: SECRET}
                )
                if 200 <= response.status_code < 300:
                    return
            except httpx.TransportError:
                pass
            finally:
                self.in_flight -= 1
            self.refused += 1
            await asyncio.sleep(0.2)

    async def wait_for(self, chat: int, prefix: str) -> None:
        # a line of a message: the first question is below its check-in's introduction
        while not any(
            line.startswith(prefix) for t in self.fake.sent_texts(chat) for line in t.splitlines()
        ):
            await asyncio.sleep(0.1)

    async def patient(self, chat: int) -> None:
        await self.wait_for(chat, "1/2")
        if chat == CANARY_CHAT:  # an answer no option matches: stored, re-asked
            await self.post(self.fake.text_update(chat, CANARY_TEXT))
        for n, value in ((1, chat % 4), (2, (chat // 4) % 4)):
            await self.wait_for(chat, f"{n}/2")
            await self.post(self.fake.text_update(chat, str(value)))
            self.acked.add((chat, f"phq2.q{n}"))


def _chats() -> list[int]:
    return [CANARY_CHAT, *range(FIRST_CHAT, FIRST_CHAT + PATIENTS - 1)]


async def _enrol(config: Path) -> None:
    """500 active Telegram patients, each with a PHQ-2 due now (the first tick starts them)."""
    app = build(load_settings(config))
    try:
        async with app.db.transaction() as session:
            repo = Repository(session)
            for chat in _chats():
                name = CANARY_NAME if chat == CANARY_CHAT else f"P-{chat}"
                await repo.add(Patient(display_name=name, timezone="UTC", channel="telegram",
                                       address=str(chat), status="active"))  # fmt: skip
        async with app.db.transaction() as session:
            ids = list((await session.exec(select(Patient.id))).all())
        for patient_id in ids:
            assert patient_id is not None
            await app.services.asking.ask(patient_id, ["phq2"], ignore_quiet_hours=True)
    finally:
        await app.close()


async def test_sigkill_during_500_conversations_loses_and_doubles_nothing(
    tmp_path: Path, postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Killed mid-way and restarted: every acknowledged answer stored once, all complete."""
    caplog.set_level(logging.WARNING, logger="httpx")  # the driver's own 3,000 requests
    started = time.monotonic()
    assert checkin(postgres_url, "db", "upgrade").returncode == 0
    fake, port, log = TelegramStandIn(), free_port(), tmp_path / "service.log"
    async with serve(fake.app) as url:
        config = configure(tmp_path, url, fake.token, "webhook", port)
        with pytest.MonkeyPatch.context() as env:
            env.setenv("CHECKIN_DATABASE_URL", postgres_url)
            await _enrol(config)
        limits = httpx.Limits(max_connections=40)  # Telegram's default for a webhook
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", limits=limits, timeout=10
        ) as web:
            driver = Driver(fake, web)
            service = Service(postgres_url, config, log)
            patients = asyncio.gather(*(driver.patient(c) for c in _chats()))
            try:
                until = time.monotonic() + DEADLINE_S
                while len(driver.acked) < KILL_AFTER or driver.in_flight < 10:
                    await asyncio.sleep(0.01)  # kill with webhooks in flight
                    # (a service that died at start-up once held this loop for 13 minutes)
                    ended = service.process.poll()
                    assert ended is None, (
                        f"checkin run exited ({ended}) before the kill:\n"
                        + (log.read_text(errors="replace")[-3000:])
                    )
                    assert time.monotonic() < until, f"only {len(driver.acked)} answers acked"
                service.kill()
                killed_at = len(driver.acked)
                await asyncio.sleep(0.5)
                service = Service(postgres_url, config, log)
                await asyncio.wait_for(patients, DEADLINE_S)
                await _all_completed(postgres_url, time.monotonic() + 60)
            finally:
                code = service.terminate()
                if not patients.done():  # a failure above: no driver task outlives the test
                    patients.cancel()
                    await asyncio.gather(patients, return_exceptions=True)
    assert code == 0
    print(f"{time.monotonic() - started:.0f}s, killed after {killed_at} answers, "
          f"{driver.attempts} webhook attempts, {driver.refused} not acknowledged")  # fmt: skip
    assert KILL_AFTER <= killed_at < 2 * PATIENTS and driver.refused > 0  # the kill hurt
    await _check_database(postgres_url, driver.acked)
    assert_no_canary(log.read_text(), "the service's output")


async def _all_completed(url: str, deadline: float) -> None:
    """Wait until the restarted service has processed every acknowledged answer."""
    db = Database(url)
    try:
        while True:
            async with db.transaction() as session:
                statement = select(func.count()).where(Checkin.status == "completed")
                if (await session.exec(statement)).one() == PATIENTS:
                    return
            assert time.monotonic() < deadline, "check-ins still open a minute after the answers"
            await asyncio.sleep(0.2)
    finally:
        await db.dispose()


async def _check_database(url: str, acked: set[tuple[int, str]]) -> None:
    db = Database(url)
    try:
        async with db.transaction() as session:
            stored = (
                await session.exec(
                    select(Patient.address, Answer.item_key)
                    .join(Checkin, col(Checkin.id) == Answer.checkin_id)
                    .join(Patient, col(Patient.id) == Checkin.patient_id)
                )
            ).all()
            statuses = (
                await session.exec(select(Checkin.status, func.count()).group_by(Checkin.status))
            ).all()
            inbound = (await session.exec(select(func.count()).select_from(InboundMessage))).one()
    finally:
        await db.dispose()
    pairs = [(int(address or 0), key) for address, key in stored]
    assert len(pairs) == len(set(pairs)) == 2 * PATIENTS  # nothing stored twice
    assert acked <= set(pairs) and len(acked) == 2 * PATIENTS  # every acknowledged answer
    assert dict(statuses) == {"completed": PATIENTS}
    assert inbound == 2 * PATIENTS + 1  # each update recorded once, the canary's text too

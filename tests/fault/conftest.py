"""Shared pieces of the fault suite: the canary, and a wired app with both providers.

Every fault test runs with the service's own log level (INFO, as ``checkin run`` sets it)
captured, and fails if the canary patient's name, chat id or free-text answer shows up in
any log record. Tests that run ``checkin run`` as a subprocess check its output the same
way with :func:`assert_no_canary`.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from sqlmodel import SQLModel

from bot.bootstrap import App, build
from bot.config import Clinic, Server, Settings, Sms, Telegram
from bot.storage.database import Database
from bot.storage.repository import Repository
from bot.storage.tables import Patient
from bot.web.app import SECRET_HEADER, create_app
from tests.standins.server import serve
from tests.standins.telegram import TelegramStandIn
from tests.standins.twilio import SignedRequest, TwilioStandIn
from tests.test_services import SimClock

CANARY_NAME = "Zebulon Quistgaard-Canary"
CANARY_TEXT = "marmalade canary 4411 feeling"  # a free-text reply no option matches
CANARY_CHAT = 918273645
CANARY_PHONE = "+15555550187"
CANARIES = (CANARY_NAME, CANARY_TEXT, str(CANARY_CHAT), CANARY_PHONE, CANARY_PHONE[2:])
SECRET = "fault-suite_secret-0123"
PUBLIC = "https://checkin.example"
CLINIC_NUMBER = "+15555550100"


def assert_no_canary(text: str, where: str) -> None:
    """Fail naming the canary (not quoting the log) if any canary string is in `text`."""
    for canary in CANARIES:
        assert canary not in text, f"canary {canary!r} appeared in {where}"


@pytest.fixture(autouse=True)
def no_canary_in_logs(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Capture every log record at the service's level and look for the canary afterwards."""
    caplog.set_level(logging.INFO)
    yield
    assert_no_canary("\n".join(r.getMessage() for r in caplog.records), "a log record")
    assert_no_canary(caplog.text, "the formatted log")


@dataclass
class Rig:
    """The Starlette app in-process (httpx ASGI transport), both provider stand-ins served."""

    app: App
    telegram: TelegramStandIn
    twilio: TwilioStandIn
    web: httpx.AsyncClient
    clock: SimClock

    async def telegram_post(self, update: dict[str, object], secret: str | None = SECRET):  # type: ignore[no-untyped-def]
        headers = {SECRET_HEADER: secret} if secret is not None else {}
        return await self.web.post("/telegram", json=update, headers=headers)

    async def sms_post(self, request: SignedRequest, headers: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
        path = request.url.removeprefix(PUBLIC)
        return await self.web.post(path, data=request.form, headers=headers or request.headers)


@asynccontextmanager
async def wired(database_url: str, spool: Path | None = None) -> AsyncIterator[Rig]:
    """The app on `database_url`, both stand-ins served, the ASGI client ready; the SMS
    spool at `spool` (default: in a directory of its own, removed afterwards)."""
    if spool is None:
        with tempfile.TemporaryDirectory() as directory:
            async with wired(database_url, Path(directory) / "checkin.spool") as rig:
                yield rig
        return
    telegram, twilio = TelegramStandIn(), TwilioStandIn()
    clock = SimClock(datetime(2026, 5, 4, 16, 0, tzinfo=UTC))  # midday in Chicago and UTC
    async with serve(telegram.app) as tg_url, serve(twilio.app) as sms_url:
        settings = Settings(
            database_url=database_url,
            clinic=Clinic(name="Lakeside"),
            server=Server(public_url=PUBLIC),
            telegram=Telegram(
                token=telegram.token, mode="webhook", webhook_secret=SECRET,
                api_base_url=f"{tg_url}/bot",
            ),
            sms=Sms(account_sid=twilio.account_sid, auth_token=twilio.auth_token,
                    from_number=CLINIC_NUMBER, api_base_url=sms_url, spool_path=spool),
        )  # fmt: skip
        app = build(settings, clock=clock)
        transport = httpx.ASGITransport(app=create_app(app))
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8080") as web:
            try:
                yield Rig(app, telegram, twilio, web, clock)
            finally:
                await app.close()


@pytest.fixture
async def rig(db: Database) -> AsyncIterator[Rig]:
    async with wired(db.url.render_as_string(hide_password=False)) as rig:
        yield rig


async def canary_patients(db: Database) -> tuple[int, int]:
    """An active Telegram patient and an active SMS patient, both named after the canary."""
    ids = []
    async with db.transaction() as session:
        for channel, address in (("telegram", str(CANARY_CHAT)), ("sms", CANARY_PHONE)):
            patient = Patient(
                display_name=CANARY_NAME, timezone="America/Chicago", channel=channel,
                address=address, status="active",
            )  # fmt: skip
            await Repository(session).add(patient)
            ids.append(patient.id)
    return ids[0], ids[1]


HEARTBEATS = frozenset({"send_worker"})  # tables a running service writes on its own


async def snapshot(db: Database) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every table, in primary-key order: equal snapshots mean no write.
    Not the roll of senders (`send_worker`): its heartbeats are written by the clock, once
    a second, whatever the requests."""
    tables: dict[str, list[tuple[object, ...]]] = {}
    async with db.engine.connect() as connection:
        for table in SQLModel.metadata.sorted_tables:
            if table.name in HEARTBEATS:
                continue
            statement = select(table).order_by(*table.primary_key.columns)
            tables[table.name] = [tuple(row) for row in await connection.execute(statement)]
    return tables

"""The database goes away while patients answer: PostgreSQL stops answering (a TCP proxy in
front of the shared server closes, as a stopped server would: refused connects, reset
sessions) and SQLite is locked by another connection. Telegram's webhooks answer 5xx and
acknowledge nothing, so Telegram sends them again; Twilio never sends an inbound SMS again,
so /sms answers 200 once the message is in the spool. Once the database is back, the
retried updates and the spooled messages are processed and nothing is lost or doubled."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress

import httpx
import pytest
from sqlalchemy.engine import make_url

from bot.storage.database import Database
from bot.storage.tables import Answer, Checkin, InboundMessage
from scheduler.loop import tick
from tests.fault.conftest import (
    CANARY_CHAT,
    CANARY_PHONE,
    CANARY_TEXT,
    CLINIC_NUMBER,
    PUBLIC,
    Rig,
    canary_patients,
    wired,
)
from tests.test_services import rows

pytestmark = pytest.mark.fault
Send = Callable[[], Awaitable[httpx.Response]]


class Proxy:
    """A TCP proxy to the PostgreSQL server that can be stopped and started again."""

    def __init__(self, host: str, port: int) -> None:
        self.upstream = (host, port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._pipe, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Refuse new connections and reset every open one, as a stopped server does."""
        if self._server is None or not self._server.is_serving():
            return
        self._server.close()
        for writer in list(self._open):
            writer.transport.abort()
        await self._server.wait_closed()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.transport.abort()
            return
        self._open |= {writer, up_writer}
        try:
            await asyncio.gather(_copy(reader, up_writer), _copy(up_reader, writer))
        finally:
            self._open -= {writer, up_writer}
            for end in (writer, up_writer):
                end.transport.abort()


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with suppress(ConnectionError, OSError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.transport.abort()


@asynccontextmanager
async def outage_rig(db: Database) -> AsyncIterator[tuple[Rig, Callable[[], Awaitable[None]], Callable[[], Awaitable[None]]]]:  # fmt: skip
    """The app, plus `down()` and `up()` for its database."""
    url = db.url.render_as_string(hide_password=False)
    if db.dialect == "postgresql":
        proxy = Proxy(db.url.host or "127.0.0.1", db.url.port or 5432)
        await proxy.start()
        proxied = make_url(url).set(host="127.0.0.1", port=proxy.port)
        try:
            async with wired(proxied.render_as_string(hide_password=False)) as rig:
                yield rig, proxy.stop, proxy.start
        finally:
            await proxy.stop()  # the listener `up()` reopened, and the app's last sessions
        return
    lock = sqlite3.connect(db.url.database or "", isolation_level=None, check_same_thread=False)

    async def down() -> None:
        lock.execute("BEGIN EXCLUSIVE")  # no one else reads or writes until it ends

    async def up() -> None:
        lock.execute("ROLLBACK")

    try:
        async with wired(url) as rig:
            yield rig, down, up
    finally:
        lock.close()


async def _until_2xx(send: Send, limit: int = 5) -> int:
    """Send again, as the provider does, until a 2xx; how many tries that took."""
    for attempt in range(1, limit + 1):
        if (await send()).is_success:
            return attempt
        await asyncio.sleep(0.1)
    raise AssertionError(f"no 2xx after {limit} tries with the database back")


async def test_webhooks_while_the_database_is_down_lose_nothing(db: Database) -> None:
    """Down: Telegram's webhooks 5xx (it sends them again) while /sms answers 200 at once
    from the spool, a repeated MessageSid included; up: the resent updates and the spooled
    SMS are processed once each, in order."""
    async with outage_rig(db) as (rig, down, up):
        telegram_id, sms_id = await canary_patients(db)
        for patient_id in (telegram_id, sms_id):
            await rig.app.services.asking.ask(patient_id, ["phq2"], ignore_quiet_hours=True)
        await tick(rig.app)
        updates: list[Send] = []
        texts: list[Send] = []
        for text in (CANARY_TEXT, "2", "1"):
            update = rig.telegram.text_update(CANARY_CHAT, text)
            sms = rig.twilio.inbound_request(
                f"{PUBLIC}/sms", from_=CANARY_PHONE, to=CLINIC_NUMBER, body=text
            )
            updates.append(lambda u=update: rig.telegram_post(u))
            texts.append(lambda r=sms: rig.sms_post(r))
        await down()
        try:
            refused = await asyncio.gather(*(send() for send in updates))
            spooled = [await send() for send in (*texts, texts[1])]  # Twilio repeats one
            health = await rig.web.get("/healthz")
            assert rig.app.services.intake is not None
            assert await rig.app.services.intake.drain() == 0  # cannot record: keeps them
        finally:
            await up()
        assert [r.status_code for r in refused] == [503] * len(updates)
        assert [r.status_code for r in spooled] == [200] * 4
        assert health.json()["spool_depth"] == 4
        if db.dialect == "postgresql":  # a locked SQLite file still answers reads
            assert health.status_code == 503 and health.json()["database"] is False
        for send in updates:  # in order, as Telegram retries one chat's updates
            await _until_2xx(send)
        await tick(rig.app)
        assert (await rig.web.get("/healthz")).json()["spool_depth"] == 0
    answers = await rows(db, Answer)
    assert sorted((a.item_key, a.value_int) for a in answers) == [
        ("phq2.q1", 2), ("phq2.q1", 2), ("phq2.q2", 1), ("phq2.q2", 1),
    ]  # fmt: skip
    assert [c.status for c in await rows(db, Checkin)] == ["completed", "completed"]
    sms = await rows(db, InboundMessage, InboundMessage.channel == "sms")
    assert [m.text for m in sms] == [CANARY_TEXT, "2", "1"]

"""Bad Telegram updates: the real python-telegram-bot against the Bot API stand-in, the
poller running in this event loop, a real database. One update that cannot be used (or
whose text holds a lone surrogate) must not stop the poller or hide the messages behind
it, and nothing of it (the canary's name and text) may reach a log record."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlmodel import select

from bot.bootstrap import App, build
from bot.channels.telegram import TelegramChannel
from bot.config import Clinic, Settings, Telegram
from bot.storage.database import Database
from bot.storage.tables import InboundMessage
from bot.web.app import create_app
from bot.web.telegram_poller import poll
from tests.fault.conftest import CANARY_CHAT, CANARY_NAME, CANARY_TEXT
from tests.standins.server import serve
from tests.standins.telegram import TelegramStandIn, server_error
from tests.test_services import SimClock

pytestmark = pytest.mark.fault
OTHER_CHAT = 918273700  # another patient, writing after the bad update


@dataclass
class Polling:
    app: App
    stand_in: TelegramStandIn
    web: httpx.AsyncClient
    clock: SimClock
    task: asyncio.Task[None]
    stop: asyncio.Event

    def bad(self, message: dict[str, Any]) -> dict[str, Any]:
        """The canary's update with `message` as its message (a fresh update id)."""
        update = self.stand_in.text_update(CANARY_CHAT, CANARY_TEXT, first_name=CANARY_NAME)
        return {"update_id": update["update_id"], "message": update["message"] | message}

    def good(self, text: str = "hello") -> dict[str, Any]:
        return self.stand_in.text_update(OTHER_CHAT, text)

    async def texts(self) -> list[str]:
        async with self.app.db.transaction() as session:
            rows = (await session.exec(select(InboundMessage))).all()
        return [row.text for row in rows]


@asynccontextmanager
async def polling(database_url: str) -> AsyncIterator[Polling]:
    """A polling-mode app, its poller running against the stand-in, /healthz at hand."""
    stand_in = TelegramStandIn(max_long_poll_s=0.2)
    clock = SimClock(datetime(2026, 5, 4, 16, 0, tzinfo=UTC))
    async with serve(stand_in.app) as url:
        telegram = Telegram(token=stand_in.token, api_base_url=f"{url}/bot")  # polling
        settings = Settings(database_url=database_url, clinic=Clinic(name="Lakeside"),
                            telegram=telegram)  # fmt: skip
        app = build(settings, clock=clock)
        app.last_tick_at[:] = [clock()]  # the scheduler is not under test here
        channel = app.channels["telegram"]
        assert isinstance(channel, TelegramChannel)
        stop = asyncio.Event()
        task = asyncio.create_task(poll(app, channel, stop, timeout_s=1))
        transport = httpx.ASGITransport(app=create_app(app))
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as web:
            try:
                yield Polling(app, stand_in, web, clock, task, stop)
            finally:
                stop.set()
                await asyncio.wait_for(task, timeout=10)
                await app.close()


@pytest.fixture
async def rig(db: Database) -> AsyncIterator[Polling]:
    async with polling(db.url.render_as_string(hide_password=False)) as rig:
        yield rig


async def until(what: str, check: Callable[[], Any], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def nested(depth: int) -> dict[str, Any]:
    """A message replying to a message replying to ... `depth` levels down."""
    inner: dict[str, Any] = {"message_id": 1, "date": 0, "chat": {"id": 1, "type": "private"}}
    for level in range(depth):
        inner = {"message_id": level + 2, "date": 0, "chat": {"id": 1, "type": "private"},
                 "reply_to_message": inner}  # fmt: skip
    return inner


BAD_MESSAGES = {
    "unparseable": {"chat": "not a chat"},  # the library cannot build a Chat from it
    "wrong type": {"text": [CANARY_TEXT]},  # parsed, but the text is a list
    "too deep": {"reply_to_message": nested(900)},  # RecursionError in the library's parser
}


@pytest.mark.parametrize("bad", BAD_MESSAGES)
async def test_an_unusable_update_is_skipped_and_the_next_patient_is_read(
    rig: Polling, bad: str
) -> None:
    """An update the library cannot use is skipped and counted; the next patient's message
    is read, and the poller goes on polling."""
    rig.stand_in.queue_update(rig.bad(BAD_MESSAGES[bad]))
    rig.stand_in.queue_update(rig.good("first"))

    async def read() -> bool:
        return "first" in await rig.texts()

    await until("the good update to be recorded", read)
    rig.stand_in.queue_update(rig.good("second"))

    async def read_again() -> bool:
        return "second" in await rig.texts()

    await until("the next update to be recorded", read_again)
    assert CANARY_TEXT not in await rig.texts()
    assert not rig.task.done()
    metrics = (await rig.web.get("/metrics")).text
    assert "checkin_telegram_updates_skipped_total{" in metrics
    assert sum(rig.app.telegram_intake.skipped.values()) == 1


async def test_an_unreadable_answer_is_narrowed_down_to_the_bad_update(rig: Polling) -> None:
    """An answer to getUpdates too deeply nested to read at all: the updates before the bad
    one are read, the bad one is skipped by its id, and the ones after it are read."""
    rig.stand_in.queue_update(rig.good("before"))
    depth = 100_000  # beyond json's own recursion limit
    bad_id = rig.stand_in.text_update(CANARY_CHAT, "x")["update_id"]
    message = f'{{"message_id":1,"date":0,"chat":{{"id":1,"type":"private"}},"text":"{CANARY_TEXT}"'
    deep = f'{{"update_id":{bad_id},"message":{message},"reply_to_message":'
    rig.stand_in.queue_raw_update(bad_id, deep + "[" * depth + "]" * depth + "}}")
    rig.stand_in.queue_update(rig.good("after"))

    async def read() -> bool:
        return {"before", "after"} <= set(await rig.texts())

    await until("the updates around the bad one to be recorded", read)
    assert rig.app.telegram_intake.skipped[("other", "unreadable")] == 1
    assert not rig.task.done()


async def test_a_lone_surrogate_is_dropped_and_the_message_kept(rig: Polling) -> None:
    """A text with a lone UTF-16 surrogate (and a non-character) is stored without them;
    the message is not fetched again forever, and the next patient's message is read."""
    update = rig.bad({"text": "PLACEHOLDER"})
    text = json.dumps(update).replace("PLACEHOLDER", "tired\\ud83d today\\ufffe")
    rig.stand_in.queue_raw_update(update["update_id"], text)
    rig.stand_in.queue_update(rig.good("next"))

    async def read() -> bool:
        return "next" in await rig.texts()

    await until("the message after the surrogate to be recorded", read)
    assert "tired today" in await rig.texts()
    assert not rig.app.telegram_intake.skipped


async def test_healthz_fails_when_the_poller_has_stopped(rig: Polling) -> None:
    """A poller stopped by a Conflict (another process polls the token) makes /healthz 503."""
    assert (await rig.web.get("/healthz")).status_code == 200
    rig.stand_in.webhook_url = "https://elsewhere.example/telegram"  # getUpdates: 409 Conflict
    await asyncio.wait_for(rig.task, timeout=10)
    response = await rig.web.get("/healthz")
    assert response.status_code == 503
    assert response.json()["telegram_poller"] is False
    assert "telegram poller stopped" in response.json()["reason"]


async def test_healthz_fails_when_the_poller_makes_no_progress(rig: Polling) -> None:
    """getUpdates failing for longer than the stall limit makes /healthz 503 (and /metrics
    shows the poll age), though the poller task is still alive."""
    rig.stand_in.fail(server_error(), method="getUpdates", times=1000)
    await asyncio.sleep(0.5)
    rig.clock.now += timedelta(seconds=61)
    rig.app.last_tick_at[:] = [rig.clock()]
    response = await rig.web.get("/healthz")
    assert response.status_code == 503
    assert "telegram poller stalled" in response.json()["reason"]
    metrics = (await rig.web.get("/metrics")).text
    age = next(
        line for line in metrics.splitlines() if line.startswith("checkin_telegram_poll_age")
    )
    assert float(age.split()[1]) >= 61
    assert not rig.task.done()


async def test_the_librarys_own_parse_failure_log_carries_no_update(rig: Polling) -> None:
    """python-telegram-bot logs a whole batch it cannot parse at CRITICAL: the record keeps
    its wording but not the canary's name or text (the autouse fixture reads every record)."""
    rig.stop.set()
    await asyncio.wait_for(rig.task, timeout=10)  # the test calls getUpdates itself
    bad = rig.bad({"chat": {"id": CANARY_CHAT, "type": "private", "first_name": CANARY_NAME,
                            "title": ["a list"]}, "date": "never"})  # fmt: skip
    rig.stand_in.queue_update(bad)
    bot = rig.app.channels["telegram"].bot  # type: ignore[attr-defined]
    with pytest.raises(Exception):  # noqa: B017 -- whatever the library raises
        await bot.get_updates(timeout=0)

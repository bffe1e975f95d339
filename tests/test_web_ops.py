"""/metrics and /healthz, scraped from the real Starlette app over httpx, on real databases."""

from __future__ import annotations

import io
import re
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import update

from bot.app.conversations.inbox import Inbound
from bot.bootstrap import App, build
from bot.config import Clinic, Settings
from bot.storage.database import Database
from bot.storage.repository import Repository
from bot.storage.tables import OutboundMessage
from bot.web.app import create_app
from scheduler.loop import tick
from tests.test_services import T0, SimClock, add_patient

PHQ9_WITH_Q9 = ["1", "2", "0", "1", "0", "1", "0", "0", "2", "not difficult"]


@dataclass
class Rig:
    app: App
    web: httpx.AsyncClient
    clock: SimClock

    async def scrape(self) -> dict[str, float]:
        response = await self.web.get("/metrics")
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
        return parse(response.text)


def parse(text: str) -> dict[str, float]:
    """`name{labels}` -> value, for every sample line; checks each family is typed once."""
    samples: dict[str, float] = {}
    typed = [line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")]
    assert len(typed) == len(set(typed))
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            family = name.split("{")[0]
            assert family in typed or re.sub(r"_(bucket|sum|count)$", "", family) in typed
            samples[name] = float(value)
    return samples


@pytest.fixture
async def rig(db: Database) -> AsyncIterator[Rig]:
    clock = SimClock()
    url = db.url.render_as_string(hide_password=False)
    app = build(Settings(database_url=url, clinic=Clinic()), clock=clock, console=io.StringIO())
    transport = httpx.ASGITransport(app=create_app(app))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8080") as web:
        try:
            yield Rig(app, web, clock)
        finally:
            await app.close()


async def test_metrics_follow_a_check_in_from_queue_to_alert(rig: Rig, db: Database) -> None:
    """Counts move with activity: queued, sent, answered, completed, an open alert, a dead
    message; the outbox lateness grows with the clock; no patient data in the output."""
    before = await rig.scrape()
    assert before["checkin_answers_total"] == 0 and before["checkin_outbox_depth"] == 0
    assert before["checkin_scheduler_tick_age_seconds"] == float("inf")
    assert before['checkin_checkins{status="completed"}'] == 0
    assert before["checkin_turn_seconds_count"] == 0
    assert before['checkin_turn_seconds_bucket{le="+Inf"}'] == 0
    patient_id = await add_patient(db, "pat-metrics")
    await rig.app.services.asking.ask(patient_id, ["phq9"])
    assert (await rig.scrape())['checkin_checkins{status="pending"}'] == 1
    await rig.app.services.starting.start_due()
    rig.clock.now = T0 + timedelta(seconds=90)
    queued = await rig.scrape()
    assert queued["checkin_outbox_depth"] >= 1
    assert queued["checkin_outbox_oldest_due_seconds"] == 90
    assert queued['checkin_checkins{status="sent"}'] == 1
    await tick(rig.app)
    for n, text in enumerate(PHQ9_WITH_Q9):
        inbound = Inbound("console", f"m{n}", "pat-metrics", text, rig.clock.now)
        assert await rig.app.services.inbox.handle_inbound(inbound)
    await tick(rig.app)
    rig.clock.now += timedelta(seconds=7)
    async with db.transaction() as session:
        await session.exec(
            update(OutboundMessage).where(OutboundMessage.id == 1).values(status="dead")
        )  # type: ignore[call-overload]
    after = await rig.scrape()
    assert after["checkin_answers_total"] == 10
    assert after['checkin_checkins{status="completed"}'] == 1
    assert after['checkin_checkins{status="sent"}'] == 0
    assert sum(v for k, v in after.items() if k.startswith("checkin_alerts_open")) >= 1
    assert after["checkin_outbox_depth"] == 0 and after["checkin_outbox_oldest_due_seconds"] == 0
    assert after["checkin_delivery_failures"] == 1
    assert after['checkin_outbox_messages{status="dead"}'] == 1
    assert after["checkin_scheduler_tick_age_seconds"] == 7
    assert after["checkin_inbound_waiting"] == 0 and after["checkin_inbound_set_aside"] == 0
    # each answer's turn timed once, in buckets that only grow, all of them under +Inf
    assert after["checkin_turn_seconds_count"] == len(PHQ9_WITH_Q9)
    assert after["checkin_turn_seconds_sum"] > 0
    buckets = [v for k, v in after.items() if k.startswith("checkin_turn_seconds_bucket")]
    assert buckets == sorted(buckets) and buckets[-1] == len(PHQ9_WITH_Q9)
    names = list(after)  # in the order scraped: the +Inf bucket, then the sum
    assert names[names.index("checkin_turn_seconds_sum") - 1] == (
        'checkin_turn_seconds_bucket{le="+Inf"}'
    )
    late = Inbound("console", "m-late", "pat-metrics", "1", rig.clock.now)
    recorded = await rig.app.services.inbox.receive(late)  # recorded, not processed yet
    assert recorded is not None and (await rig.scrape())["checkin_inbound_waiting"] == 1
    async with db.transaction() as session:
        await Repository(session).count_failure(recorded, rig.clock.now, "KeyError", 1)
    given_up = await rig.scrape()
    assert (given_up["checkin_inbound_waiting"], given_up["checkin_inbound_set_aside"]) == (0, 1)
    text = (await rig.web.get("/metrics")).text
    assert "pat-metrics" not in text and "Pat" not in text


async def test_healthz_is_503_with_a_reason_when_the_tick_is_stale(rig: Rig) -> None:
    """No tick yet, then a fresh tick (200), then a tick older than the limit (503)."""
    never = await rig.web.get("/healthz")
    assert never.status_code == 503
    assert never.json()["reason"] == "scheduler has not ticked yet"
    await tick(rig.app)
    fresh = await rig.web.get("/healthz")
    assert fresh.status_code == 200 and fresh.json() == {
        "ok": True, "database": True, "scheduler": True,
    }  # fmt: skip
    rig.clock.now += timedelta(minutes=5)
    stale = await rig.web.get("/healthz")
    assert stale.status_code == 503
    assert stale.json() == {
        "ok": False, "database": True, "scheduler": False,
        "reason": "scheduler tick stale (300s ago, limit 30s)",
    }  # fmt: skip


async def test_healthz_and_metrics_are_503_when_the_database_is_unreachable() -> None:
    """A database server that refuses connections: /healthz names it, /metrics refuses to
    guess. (PostgreSQL on a closed port: asyncpg fails at once, with no driver thread left
    behind as a failed aiosqlite open can leave.)"""
    clock = SimClock()
    url = "postgresql://checkin@127.0.0.1:9/unreachable"
    app = build(Settings(database_url=url), clock=clock, console=io.StringIO())
    app.last_tick_at[:] = [clock()]
    transport = httpx.ASGITransport(app=create_app(app))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://x") as web:
            health = await web.get("/healthz")
            assert health.status_code == 503
            assert health.json() == {
                "ok": False, "database": False, "scheduler": True,
                "reason": "database unreachable",
            }  # fmt: skip
            scraped = await web.get("/metrics")
            assert scraped.status_code == 503 and scraped.text == "database unavailable\n"
    finally:
        await app.close()


async def test_healthz_and_metrics_answer_while_a_writer_holds_the_sqlite_lock(
    sqlite_db: Database,
) -> None:
    """With another connection holding SQLite's write lock (a burst of writers), /healthz
    says the database is fine and /metrics answers: neither queues for the write lock."""
    clock = SimClock()
    url = sqlite_db.url.render_as_string(hide_password=False)
    app = build(Settings(database_url=url), clock=clock, console=io.StringIO())
    app.last_tick_at[:] = [clock()]
    writer = sqlite3.connect(sqlite_db.url.database or "", isolation_level=None)
    transport = httpx.ASGITransport(app=create_app(app))
    try:
        writer.execute("BEGIN IMMEDIATE")
        async with httpx.AsyncClient(transport=transport, base_url="http://x") as web:
            health = await web.get("/healthz")
            scraped = await web.get("/metrics")
        assert health.status_code == 200 and health.json()["database"] is True
        assert scraped.status_code == 200 and "checkin_outbox_depth 0" in scraped.text
    finally:
        writer.close()
        await app.close()

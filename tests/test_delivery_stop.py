"""Stopping delivery (SIGTERM, Ctrl-C, a deploy) without sending anything twice.

A send the provider has taken but the database has not yet recorded goes again after its
lease. Stopping therefore claims nothing more and starts no send, lets the sends in
flight finish and commit, for `[scheduler] stop_grace_s` at most, then cancels what is
left (the lease brings it back, as after a crash). Before this, every restart cut the
sends in flight off and the next process sent them again. What the process leased but
never began to send is handed back at the stop, to go at once from another worker or the
next process; a second SIGTERM or Ctrl-C cuts the grace short.

The real python-telegram-bot client sends to the Bot API stand-in, which holds its answer
to sendMessage for a moment (or for longer than the grace); the courier runs in this
process, and `checkin worker` / `checkin run` run as processes of their own.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy.engine import make_url

from bot.app.outbox.delivery import Deliverer
from bot.bootstrap import App, build, utc_now
from bot.config import Clinic, Scheduler, Settings, Telegram
from bot.storage import outbox
from bot.storage.database import Database
from bot.storage.repository import Repository
from bot.storage.tables import OutboundMessage
from scheduler.loop import courier, stop_scheduler, tick
from tests.standins.server import Fault, serve, serve_in_thread
from tests.standins.telegram import TelegramStandIn
from tests.standins.workers import Process
from tests.statements import statements
from tests.test_cli_service import free_port
from tests.test_delivery_handoff import asked_first_question
from tests.test_services import rows
from tests.test_telegram import CHAT as PATIENT_CHAT
from tests.test_telegram import Rig, rig  # noqa: F401  (rig: a fixture)

CHAT = 830_001
ANSWER_S = 1.0  # how long the stand-in holds a sendMessage: well inside the grace
NEVER_S = 15.0  # ... and well beyond it
CONFIG = """
[clinic]
quiet_hours_start_local = "00:00"
quiet_hours_end_local = "00:00"

[server]
port = {port}

[scheduler]
tick_s = 0.3
stop_grace_s = {grace}

[telegram]
token = "{token}"
api_base_url = "{url}/bot"
bot_username = "checkin_test_bot"
rate_per_s = 100000
"""


@pytest.fixture(autouse=True)
def _ptb_timedelta(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PTB_TIMEDELTA", "true")


async def _queue(
    db: Database,
    bodies: list[str],
    chat: int = CHAT,
    now: datetime | None = None,
    priority: int = outbox.ROUTINE,
) -> None:
    """Messages to `chat`, due `now` (the real clock's), in this order. (A claim takes a
    routine line's head alone, a reply's line whole.)"""
    due = utc_now() if now is None else now
    async with db.transaction() as session:
        await Repository(session).enqueue([
            OutboundMessage(
                channel="telegram", recipient_kind="patient", recipient_id=chat,
                address=str(chat), body=body, payload={}, idempotency_key=f"stop:{body}",
                next_attempt_at=due, priority=priority,
            )
            for body in bodies
        ])  # fmt: skip


async def _until(condition: object, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.02)


async def _stop_during_first_send(app: App, stand_in: TelegramStandIn) -> float:
    """Run the courier until the stand-in has the first send, then leave its block (the
    process stopping): how long leaving took, in seconds."""
    async with courier(app):
        app.kick()
        await _until(lambda: stand_in.calls_to("sendMessage"))
        started = time.monotonic()
    return time.monotonic() - started


def _settings(db: Database, stand_in: TelegramStandIn, url: str, grace_s: float) -> Settings:
    return Settings(
        database_url=db.url.render_as_string(hide_password=False),
        clinic=Clinic(name="Lakeside"),
        scheduler=Scheduler(stop_grace_s=grace_s),
        telegram=Telegram(token=stand_in.token, api_base_url=f"{url}/bot", rate_per_s=100_000),
    )


async def test_a_send_in_flight_at_the_stop_finishes_and_is_recorded(db: Database) -> None:
    """The courier is stopped while the provider holds its answer to the first of two
    messages: the first is recorded sent, with the provider's id, and the second, not yet
    sent, is not sent at all (it waits for the next process)."""
    stand_in = TelegramStandIn()
    stand_in.fail(Fault.slow(ANSWER_S), method="sendMessage")
    async with serve(stand_in.app) as url:
        app = build(_settings(db, stand_in, url, grace_s=5.0))
        try:
            await _queue(db, ["first", "second"])
            stopped_s = await _stop_during_first_send(app, stand_in)
        finally:
            await app.close()
    first, second = await rows(db, OutboundMessage)
    (message,) = stand_in.messages(CHAT)
    assert (first.status, first.provider_id) == ("sent", str(message["message_id"]))
    assert second.status != "sent" and second.provider_id is None
    assert len(stand_in.calls_to("sendMessage")) == 1
    assert stopped_s < ANSWER_S + 1.0  # it waited for the answer, not for the grace


async def test_what_was_claimed_and_not_begun_is_handed_back_at_the_stop(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    """The courier is stopped while the provider holds the first of a chat's three
    messages, claimed together: the two behind it, never begun, are queued again (no
    lease, their attempt uncounted), and another worker sends them at once rather than
    after the 30 s lease (on PostgreSQL nobody takes a live lease sooner)."""
    stand_in = TelegramStandIn()
    stand_in.fail(Fault.slow(ANSWER_S), method="sendMessage")
    caplog.set_level(logging.INFO, logger="scheduler.loop")
    async with serve(stand_in.app) as url:
        app = build(_settings(db, stand_in, url, grace_s=5.0))
        other = build(_settings(db, stand_in, url, grace_s=5.0))  # another worker
        try:
            await _queue(db, ["first", "second", "third"], priority=outbox.REPLY)
            await _stop_during_first_send(app, stand_in)
            first, *behind = await rows(db, OutboundMessage)
            assert first.status == "sent"
            assert [(m.status, m.lease_until, m.attempts) for m in behind] == [
                ("queued", None, 0),
                ("queued", None, 0),
            ]
            assert (await other.deliverer.drain()).sent == 2
        finally:
            await app.close()
            await other.close()
    assert stand_in.sent_texts(CHAT) == ["first", "second", "third"]
    assert "0 left to their lease, 2 not begun handed back" in caplog.text


async def test_handing_back_leaves_what_is_no_longer_ours(db: Database) -> None:
    """The hand-back at the stop touches only rows still being sent under the lease this
    process holds: one sent meanwhile and one another worker claimed after our lease ran
    out keep their state; only the third is queued again."""
    await _queue(db, ["sent"], chat=CHAT)
    await _queue(db, ["reclaimed"], chat=CHAT + 1)
    await _queue(db, ["ours"], chat=CHAT + 2)
    now, lease = utc_now(), timedelta(seconds=30)
    async with db.transaction() as session:
        claimed = await Repository(session).claim_outbox(now, 10, lease)
    ids = sorted(m.id for m in claimed)
    held = claimed[0].lease_until
    assert held is not None and len(ids) == 3
    async with db.transaction() as session:
        repo = Repository(session)
        await repo.mark_sent_all([(ids[0], "tg-1", now)])
        await repo.renew_leases([ids[1]], held, held + lease)  # as another worker's claim
    async with db.transaction() as session:
        assert await outbox.hand_back(session, {held: ids}) == 1
    sent, reclaimed, ours = await rows(db, OutboundMessage)
    assert sent.status == "sent"
    assert (reclaimed.status, reclaimed.lease_until) == ("sending", held + lease)
    assert (ours.status, ours.lease_until, ours.attempts) == ("queued", None, 0)


async def test_a_provider_that_never_answers_holds_the_stop_for_the_grace_only(
    db: Database,
) -> None:
    """The stand-in does not answer within the grace: the courier stops once the grace is
    over, and the message is left to its lease (sent again when it runs out)."""
    stand_in = TelegramStandIn()
    stand_in.fail(Fault.slow(NEVER_S), method="sendMessage")
    async with serve(stand_in.app, graceful_shutdown_s=1) as url:
        app = build(_settings(db, stand_in, url, grace_s=0.5))
        try:
            await _queue(db, ["unanswered"])
            stopped_s = await _stop_during_first_send(app, stand_in)
        finally:
            await app.close()
    (message,) = await rows(db, OutboundMessage)
    assert 0.5 <= stopped_s < 0.5 + 1.0
    assert message.status == "sending" and message.provider_id is None
    assert message.lease_until is not None and message.lease_until > utc_now()


async def test_while_stopping_a_turn_leases_nothing_to_the_courier(db: Database) -> None:
    """During the grace a turn's rows are not handed to the stopping courier (which would
    not send them): they stay queued, for another worker or the next process."""
    stand_in = TelegramStandIn()
    stand_in.fail(Fault.slow(NEVER_S), method="sendMessage")
    async with serve(stand_in.app, graceful_shutdown_s=1) as url:
        app = build(_settings(db, stand_in, url, grace_s=1.0))
        try:
            await _queue(db, ["unanswered"])
            block = courier(app)
            await block.__aenter__()
            app.kick()
            await _until(lambda: stand_in.calls_to("sendMessage"))
            assert app.deliverer.claiming() is not None
            stopping = asyncio.create_task(block.__aexit__(None, None, None))
            await asyncio.sleep(0.2)
            assert not stopping.done() and app.deliverer.claiming() is None
            await stopping
        finally:
            await app.close()


async def test_a_patients_answer_during_the_grace_is_left_for_the_next_process(
    rig: Rig,  # noqa: F811
    db: Database,
) -> None:
    """A patient answers through the webhook while the courier is stopping (another chat's
    send still in flight): the turn is recorded, but its two messages (the next question,
    the edit of the one answered) are neither sent nor leased by the stopping process;
    they stay queued, and the next process (a fresh deliverer) sends them at once."""
    await asked_first_question(rig)
    other_chat = PATIENT_CHAT + 1
    await _queue(rig.app.db, ["in flight"], chat=other_chat, now=rig.clock())
    rig.stand_in.fail(Fault.slow(ANSWER_S), method="sendMessage", chat_id=other_chat)
    block = courier(rig.app)
    await block.__aenter__()
    rig.app.kick()
    await _until(lambda: len(rig.stand_in.calls_to("sendMessage")) == 2)
    stopping = asyncio.create_task(block.__aexit__(None, None, None))
    await asyncio.sleep(0.1)
    assert not stopping.done()  # the grace: the other chat's send is still in flight
    calls = len(rig.stand_in.calls)
    with statements(rig.app.db) as seen:
        answer = rig.stand_in.text_update(PATIENT_CHAT, "0")
        assert (await rig.post(answer)).status_code == 200
    (queued,) = [s for s in seen if "INSERT INTO OUTBOUND_MESSAGE" in s.upper()]  # (PostgreSQL:
    # with the step and the answer, bot/storage/steps.py)
    assert "CASE WHEN" not in queued  # not inserted leased to this process (a hand-off)
    await stopping
    assert rig.stand_in.calls[calls:] == []  # nothing sent by the stopping process
    replies = (await rows(db, OutboundMessage))[-2:]
    assert [(m.status, m.lease_until, m.attempts) for m in replies] == [("queued", None, 0)] * 2
    assert "1/9" in rig.texts()[-1]  # the first question is still the last one sent
    following = Deliverer(db, rig.app.channels, rig.clock)
    assert (await following.drain()).sent == 2
    assert rig.texts()[-1].startswith("2/9")
    assert len(rig.stand_in.calls_to("editMessageText")) == 1


# ---- `checkin worker` and `checkin run`, stopped with SIGTERM -----------------------------


@pytest.fixture
def stand_in() -> Iterator[tuple[TelegramStandIn, str]]:
    fake = TelegramStandIn()
    with serve_in_thread(fake.app) as url:
        yield fake, url


def _start(
    url: str, tmp_path: Path, fake: TelegramStandIn, base: str, command: str, grace_s: float
) -> Process:
    config = tmp_path / "clinic.toml"
    text = CONFIG.format(port=free_port(), grace=grace_s, token=fake.token, url=base)
    config.write_text(text)
    return Process(url, config, tmp_path / f"{command}.log", command)


def _sent_to(fake: TelegramStandIn) -> int:
    return len(fake.calls_to("sendMessage"))


def _wait(what: str, condition: object, log: Path, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
            raise AssertionError(f"timed out waiting for {what}; log:\n{tail}")
        time.sleep(0.05)


async def _queued(url: str, bodies: list[str]) -> None:
    async with Database(url) as db:
        await _queue(db, bodies)


async def _outbox(url: str) -> list[OutboundMessage]:
    async with Database(url) as db:
        return await rows(db, OutboundMessage)


@pytest.mark.parametrize("command", ["worker", "run"])
def test_sigterm_mid_send_records_it_and_the_next_start_does_not_send_it_again(
    command: str,
    migrated_sqlite_url: str,
    tmp_path: Path,
    stand_in: tuple[TelegramStandIn, str],
) -> None:
    """SIGTERM while the provider holds its answer: the process exits 0 once the answer
    is in, the message is recorded sent with its provider id, and a new process started
    on the same file (which takes over whatever a stopped process left under a lease)
    does not send it again."""
    fake, base = stand_in
    fake.fail(Fault.slow(ANSWER_S), method="sendMessage")
    asyncio.run(_queued(migrated_sqlite_url, ["question"]))
    url = f"sqlite:///{make_url(migrated_sqlite_url).database}"
    log = tmp_path / f"{command}.log"
    first = _start(url, tmp_path, fake, base, command, grace_s=5.0)
    try:
        _wait("the send", lambda: _sent_to(fake) == 1, log)
    finally:
        assert first.terminate() == 0
    (message,) = asyncio.run(_outbox(migrated_sqlite_url))
    (received,) = fake.messages(CHAT)
    assert (message.status, message.provider_id) == ("sent", str(received["message_id"]))
    assert "delivery stopped: 1 sends in flight finished, 0 left to their lease" in log.read_text()
    second = _start(url, tmp_path, fake, base, command, grace_s=5.0)
    try:
        ready = "worker ticking" if command == "worker" else "serving on"
        _wait("the second start", lambda: log.read_text().count(ready) == 2, log)
        time.sleep(1.0)  # ticks every 0.3 s: a message released at start would go by now
    finally:
        assert second.terminate() == 0
    assert "took over" not in log.read_text()
    assert _sent_to(fake) == 1


@pytest.mark.postgres
def test_sigterm_mid_send_on_postgresql_records_it(
    postgres_url: str, tmp_path: Path, stand_in: tuple[TelegramStandIn, str]
) -> None:
    """The same stop of a `checkin worker` on PostgreSQL: the message is recorded sent, so
    no worker sends it again when the lease would have run out."""
    from bot.storage.migrate import upgrade_async

    fake, base = stand_in
    fake.fail(Fault.slow(ANSWER_S), method="sendMessage")
    asyncio.run(upgrade_async(postgres_url))
    asyncio.run(_queued(postgres_url, ["question"]))
    worker = _start(postgres_url, tmp_path, fake, base, "worker", grace_s=5.0)
    try:
        _wait("the send", lambda: _sent_to(fake) == 1, tmp_path / "worker.log")
    finally:
        assert worker.terminate() == 0
    (message,) = asyncio.run(_outbox(postgres_url))
    assert message.status == "sent" and message.provider_id is not None


def test_sigterm_with_a_provider_that_never_answers_exits_within_the_grace(
    migrated_sqlite_url: str, tmp_path: Path, stand_in: tuple[TelegramStandIn, str]
) -> None:
    """The provider does not answer: `checkin worker` still exits 0 soon after its grace,
    says it left the send to its lease, and the message is still leased (the next process,
    or the lease's end, sends it again)."""
    fake, base = stand_in
    fake.fail(Fault.slow(NEVER_S), method="sendMessage")
    asyncio.run(_queued(migrated_sqlite_url, ["question"]))
    url = f"sqlite:///{make_url(migrated_sqlite_url).database}"
    log = tmp_path / "worker.log"
    worker = _start(url, tmp_path, fake, base, "worker", grace_s=1.0)
    try:
        _wait("the send", lambda: _sent_to(fake) == 1, log)
        started = time.monotonic()
    finally:
        assert worker.terminate() == 0
    stopped_s = time.monotonic() - started
    assert 1.0 <= stopped_s < 1.0 + 3.0
    assert "delivery stopped: 0 sends in flight finished, 1 left to their lease" in log.read_text()
    (message,) = asyncio.run(_outbox(migrated_sqlite_url))
    assert message.status == "sending" and message.provider_id is None
    assert message.lease_until is not None
    assert message.lease_until > utc_now() - timedelta(seconds=1)


@pytest.mark.parametrize("command", ["worker", "run"])
def test_a_second_sigterm_cuts_the_grace_short(
    command: str,
    migrated_sqlite_url: str,
    tmp_path: Path,
    stand_in: tuple[TelegramStandIn, str],
) -> None:
    """The provider does not answer and the grace is long: a first SIGTERM starts the
    stop and the process waits for the send; a second one ends the wait at once (exit 0),
    says so, and the send is left to its lease as when the grace runs out."""
    fake, base = stand_in
    fake.fail(Fault.slow(NEVER_S), method="sendMessage")
    asyncio.run(_queued(migrated_sqlite_url, ["question"]))
    url = f"sqlite:///{make_url(migrated_sqlite_url).database}"
    log = tmp_path / f"{command}.log"
    process = _start(url, tmp_path, fake, base, command, grace_s=NEVER_S + 5.0)
    try:
        _wait("the send", lambda: _sent_to(fake) == 1, log)
        process.process.send_signal(signal.SIGTERM)
        time.sleep(1.0)
        assert process.process.poll() is None  # waiting for the send, within its grace
        process.process.send_signal(signal.SIGTERM)
        cut = time.monotonic()
        assert process.process.wait(timeout=NEVER_S) == 0
        assert time.monotonic() - cut < 3.0
    finally:
        process.kill()
    text = log.read_text()
    assert "second stop signal: cutting the delivery grace short" in text
    assert "delivery stopped: 0 sends in flight finished, 1 left to their lease" in text
    (message,) = asyncio.run(_outbox(migrated_sqlite_url))
    assert message.status == "sending" and message.provider_id is None


async def test_a_tick_still_running_at_the_stop_sends_nothing(db: Database) -> None:
    """APScheduler neither waits for nor cancels a tick that is running when it shuts
    down. Once the process stops (`stop_scheduler`), such a tick's delivery stage sends
    nothing: the message stays queued for the next process instead of being cut off half
    way. The same tick in a running process sends it."""
    stand_in = TelegramStandIn()
    async with serve(stand_in.app) as url:
        app = build(_settings(db, stand_in, url, grace_s=1.0))
        try:
            await _queue(db, ["due"])
            scheduler = AsyncIOScheduler(timezone="UTC")
            scheduler.start()
            stop_scheduler(app, scheduler)
            assert app.stopping
            await tick(app)  # the tick that was still running reaches its delivery stage
            assert stand_in.calls_to("sendMessage") == []
            (message,) = await rows(db, OutboundMessage)
            assert message.status == "queued"
            app.stopping = False  # a process that is not stopping
            await tick(app)
            assert len(stand_in.calls_to("sendMessage")) == 1
        finally:
            await app.close()

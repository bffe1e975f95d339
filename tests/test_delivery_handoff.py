"""A turn hands the rows it queued to its own process's courier: leased in the turn's
transaction, sent without being claimed back, and never lost when the process dies
between the commit and the send.

The real python-telegram-bot client sends to the Bot API stand-in; answers reach the real
webhook through httpx; SQL statements are counted on the engine (both dialects).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlmodel import select

from bot.app.outbox.delivery import Deliverer
from bot.app.outbox.takeover import release_dead_leases
from bot.storage import database as database_module
from bot.storage import outbox
from bot.storage.database import Database
from bot.storage.tables import OutboundMessage, Patient
from scheduler.loop import courier, tick
from tests.standins.server import Fault
from tests.statements import statements
from tests.test_services import SimClock
from tests.test_telegram import CHAT, Rig, rig, table  # noqa: F401  (rig: a fixture)

LEASE = timedelta(seconds=30)  # [scheduler] send_lease_s


@pytest.fixture(autouse=True)
def _ptb_timedelta(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PTB_TIMEDELTA", "true")


def claims(seen: Sequence[str]) -> list[str]:
    """The claim statements among `seen` (the due-message query names its rows so)."""
    return [s for s in seen if "candidate" in s]


async def asked_first_question(rig: Rig) -> None:  # noqa: F811
    """An active Telegram patient with a PHQ-9 open and its first question delivered."""
    async with rig.app.db.transaction() as session:
        patient = Patient(
            display_name="P", timezone="UTC", channel="telegram", address=str(CHAT), status="active"
        )
        session.add(patient)
    (patient,) = await table(rig.app.db, Patient)
    await rig.app.services.asking.ask(patient.id, ["phq9"])
    await tick(rig.app)
    assert len(rig.stand_in.calls_to("sendMessage")) == 1  # question 1 below the introduction


async def until(condition: Any, timeout_s: float = 10.0) -> None:
    for _ in range(int(timeout_s / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("timed out")


async def test_a_turns_replies_go_to_the_courier_without_a_claim(
    rig: Rig,  # noqa: F811
    db: Database,
) -> None:
    """Answering a question by its button: the edit showing the choice and the next question
    leave from the courier, in order, marked sent, and no claim statement runs; the turn's
    transaction leased them (status 'sending', one attempt) before it committed. The
    question the edit changes was read with the patient: no statement of its own."""
    await asked_first_question(rig)
    async with courier(rig.app):
        await until(lambda: rig.app.deliverer.hands_off)  # the courier task has started
        with statements(rig.app.db) as seen:
            question = rig.last_question()
            update = rig.stand_in.callback_update(CHAT, question["message_id"], "phq9.q1=0")
            assert (await rig.post(update)).status_code == 200
            await until(lambda: len(rig.stand_in.calls_to("sendMessage")) == 2)
            sent = await all_sent(rig, 3)
    assert claims(seen) == []
    assert not [s for s in seen if s.lstrip().startswith("SELECT outbound_message.provider_id")]
    assert [m.status for m in sent] == ["sent"] * 3
    assert [m.attempts for m in sent] == [1] * 3
    edited = rig.stand_in.calls_to("editMessageText")
    assert len(edited) == 1 and edited[0].params["message_id"] == question["message_id"]
    assert rig.last_question()["message_id"] != question["message_id"]  # question 2 now
    leased = [s for s in seen if "INSERT INTO OUTBOUND_MESSAGE" in s.upper()]  # (PostgreSQL:
    # with the step and the answer, bot/storage/steps.py)
    assert len(leased) == 1 and "CASE WHEN" in leased[0]


async def test_the_courier_is_idle_once_what_a_turn_handed_it_is_sent_and_recorded(
    rig: Rig,  # noqa: F811
    db: Database,
) -> None:
    """`Deliverer.idle` (what bench/turn_cost.py waits for): False from the moment a turn
    hands rows over until they are sent and marked so, then True."""
    await asked_first_question(rig)
    async with courier(rig.app):
        await until(lambda: rig.app.deliverer.hands_off)
        assert rig.app.deliverer.idle
        update = rig.stand_in.text_update(CHAT, "0")
        assert (await rig.post(update)).status_code == 200
        assert not rig.app.deliverer.idle  # handed over, not sent yet
        await until(lambda: rig.app.deliverer.idle)
        rows = await table(rig.app.db, OutboundMessage)
    assert len(rows) == 3 and [m.status for m in rows] == ["sent"] * 3


async def all_sent(rig: Rig, n: int) -> list[OutboundMessage]:  # noqa: F811
    """The outbox once its `n` rows are all marked sent (within ten seconds)."""
    for _ in range(500):
        rows = await table(rig.app.db, OutboundMessage)
        if len(rows) == n and all(m.status == "sent" for m in rows):
            return rows
        await asyncio.sleep(0.02)
    raise AssertionError(f"not all sent: {[m.status for m in rows]}")


async def test_without_a_courier_the_turn_queues_and_the_tick_claims(
    rig: Rig,  # noqa: F811
    db: Database,
) -> None:
    """No courier in the process (a webhook-only process): nothing is leased by the turn;
    the tick claims the rows (one claim for the recipient's two messages) and sends them."""
    await asked_first_question(rig)
    with statements(rig.app.db) as seen:
        await rig.tap("phq9.q1=0")  # posts, then runs a tick
    assert len(claims(seen)) >= 1
    assert [m.status for m in await table(db, OutboundMessage)] == ["sent"] * 3
    assert len(rig.stand_in.calls_to("editMessageText")) == 1


class DiedAfterCommit:
    """This process's deliverer, killed between the turn's commit and the send: it leases
    as the real one does, then never sends what it is handed."""

    def __init__(self, deliverer: Deliverer) -> None:
        self.deliverer = deliverer
        self.handed: list[outbox.Outgoing] = []

    def claiming(self) -> outbox.Claiming | None:
        now = self.deliverer.clock()
        return outbox.Claiming(self.deliverer.clock, now + LEASE, frozenset({"telegram"}))

    def take(
        self, claimed: Sequence[outbox.Outgoing], edits: Mapping[int, str | None], more: bool
    ) -> None:
        self.handed += claimed


async def test_rows_handed_to_a_process_that_died_are_sent_after_their_lease(
    rig: Rig,  # noqa: F811
    db: Database,
    dialect: str,
) -> None:
    """Nothing is lost: the rows a dead process was handed stay leased to it; another
    deliverer leaves them alone until the lease runs out (on PostgreSQL that process may
    be alive), then sends them, in order. On SQLite, a process taking over the scheduler
    lock releases them at once."""
    await asked_first_question(rig)
    dead = DiedAfterCommit(rig.app.deliverer)
    rig.app.services.context.handoff = dead
    await rig.post(rig.stand_in.text_update(CHAT, "0"))
    assert [m.status for m in await table(db, OutboundMessage)][1:] == ["sending", "sending"]
    assert len(dead.handed) == 2
    other = Deliverer(db, rig.app.channels, rig.clock, lease=LEASE)
    assert (await other.drain()).sent == 0  # still leased
    if dialect == "sqlite":
        assert await release_dead_leases(db, rig.clock) == 2
    else:
        rig.clock.now += LEASE
    assert (await other.drain()).sent == 2
    sent = await table(db, OutboundMessage)
    assert [m.status for m in sent] == ["sent"] * 3
    assert [m.attempts for m in sent][1:] == [2, 2]  # the dead process's attempt counted
    texts = rig.texts()
    assert len(texts) == 2 and texts[-1].startswith("2/9")  # the next question, last


class TickingClock(SimClock):
    """A clock that moves on a millisecond every time it is read, as a real one does: a
    turn reads it more than once, and the rows it queues are due a moment after it began."""

    def __call__(self) -> datetime:
        self.now += timedelta(milliseconds=1)
        return self.now


async def test_the_hand_off_works_with_a_clock_that_moves(
    rig: Rig,  # noqa: F811
) -> None:
    """With the rig's standing clock a turn's rows are due exactly when it began; with a
    real one they are due a little later, and were once never handed off (each was
    claimed back instead)."""
    await asked_first_question(rig)
    rig.clock.__class__ = TickingClock  # the app holds this very object as its clock
    async with courier(rig.app):
        await until(lambda: rig.app.deliverer.hands_off)
        with statements(rig.app.db) as seen:
            question = rig.last_question()
            update = rig.stand_in.callback_update(CHAT, question["message_id"], "phq9.q1=0")
            assert (await rig.post(update)).status_code == 200
            await until(lambda: len(rig.stand_in.calls_to("sendMessage")) == 2)
            await all_sent(rig, 3)
    assert claims(seen) == []


async def test_the_next_question_leaves_before_the_edit_of_the_last(
    rig: Rig,  # noqa: F811
    db: Database,
) -> None:
    """What the patient waits for goes first: the next question is sent, then the answered
    question is edited to show the choice (when the provider's limit binds, the edit queues
    behind other patients' next questions instead of ahead of them)."""
    await asked_first_question(rig)
    async with courier(rig.app):
        await until(lambda: rig.app.deliverer.hands_off)
        before = len(rig.stand_in.calls)
        question = rig.last_question()
        update = rig.stand_in.callback_update(CHAT, question["message_id"], "phq9.q1=0")
        assert (await rig.post(update)).status_code == 200
        await all_sent(rig, 3)
    methods = [c.method for c in rig.stand_in.calls[before:] if c.method != "answerCallbackQuery"]
    assert methods == ["sendMessage", "editMessageText"]
    edited = rig.stand_in.calls_to("editMessageText")[0]
    assert edited.params["message_id"] == question["message_id"]  # still the answered one
    assert "✓" in edited.params["text"]  # the choice shown


async def _hold_a_write_turn(db: Database, release: asyncio.Event) -> None:
    """A transaction that takes this process's turn to write and keeps it until `release`."""
    async with db.transaction() as session:
        await session.exec(select(Patient.id).limit(1))  # BEGIN IMMEDIATE: the turn
        await release.wait()


@pytest.mark.parametrize("dialect", ["sqlite"], indirect=True)  # one writer: turns queue
async def test_handed_rows_leave_while_the_courier_waits_to_claim(
    rig: Rig,  # noqa: F811
) -> None:
    """Fifty simultaneous answers queue fifty turns for SQLite's one writer; a claim the
    courier asks for meanwhile waits behind them (the turns are served in order). What
    the turns hand over leaves at once all the same: before, it waited for that claim,
    and crisis messages committed a second after the first ones were held until every
    turn was done (1.4-1.8 s, fifty crises at once). Here: a turn queued behind a held
    transaction, then a second held transaction, then the courier's claim; the first
    transaction ends, the turn commits and hands its rows over, and they are sent while
    the claim still waits behind the second."""
    await asked_first_question(rig)
    first, second = asyncio.Event(), asyncio.Event()
    async with courier(rig.app):
        await until(lambda: rig.app.deliverer.hands_off)
        holders = [asyncio.create_task(_hold_a_write_turn(rig.app.db, first))]
        await asyncio.sleep(0.1)  # the first holds the turn
        question = rig.last_question()
        update = rig.stand_in.callback_update(CHAT, question["message_id"], "phq9.q1=0")
        answered = asyncio.create_task(rig.post(update))
        await asyncio.sleep(0.1)  # the turn waits behind it
        holders.append(asyncio.create_task(_hold_a_write_turn(rig.app.db, second)))
        await asyncio.sleep(0.1)  # ... and the second behind the turn
        rig.app.kick()  # the courier claims: it waits behind the second
        await asyncio.sleep(0.1)
        first.set()
        try:
            assert (await answered).status_code == 200
            await until(lambda: len(rig.stand_in.calls_to("sendMessage")) == 2, timeout_s=3)
            assert not second.is_set() and not holders[1].done()  # the claim still waits
        finally:
            second.set()
            await asyncio.gather(*holders)
        await all_sent(rig, 3)


@pytest.mark.parametrize("dialect", ["sqlite"], indirect=True)
async def test_sends_under_way_finish_when_the_drains_claim_fails(
    rig: Rig,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Rows handed over while the drain waits to claim are sent by that drain. When the
    claim then fails (here: it waits for SQLite's lock past the busy timeout, shortened
    to 0.3 s), the sends under way still finish and are recorded; before, the failed
    drain cancelled them, and a question the provider already had went again after its
    30 s lease."""
    monkeypatch.setattr(database_module, "WRITE_TURN_WAIT_S", 0.3)
    monkeypatch.setattr(database_module, "SQLITE_BUSY_TIMEOUT_MS", 300)
    await asked_first_question(rig)
    rig.stand_in.fail(Fault(delay_s=1.5), method="sendMessage")  # the next question: slow
    first, second = asyncio.Event(), asyncio.Event()
    async with courier(rig.app):
        await until(lambda: rig.app.deliverer.hands_off)
        holders = [asyncio.create_task(_hold_a_write_turn(rig.app.db, first))]
        await asyncio.sleep(0.05)
        question = rig.last_question()
        update = rig.stand_in.callback_update(CHAT, question["message_id"], "phq9.q1=0")
        answered = asyncio.create_task(rig.post(update))
        await asyncio.sleep(0.05)
        holders.append(asyncio.create_task(_hold_a_write_turn(rig.app.db, second)))
        await asyncio.sleep(0.05)
        rig.app.kick()  # the claim waits behind the second holder, and gives up
        first.set()
        try:
            assert (await answered).status_code == 200
            await asyncio.sleep(0.9)  # the claim has failed; the question is still out
            assert len(rig.stand_in.calls_to("sendMessage")) == 2
        finally:
            second.set()
            await asyncio.gather(*holders)
        sent = await all_sent(rig, 3)
    assert [m.attempts for m in sent] == [1, 1, 1]  # none went twice

"""The roll of senders (PostgreSQL): a worker alone on its database paces itself with no
statement per send; as soon as another joins, both share the limit, and the newcomer's
first shared send waits until what the other sent alone has left the window and the
chats' buckets (bot/app/outbox/roll.py, bot/storage/send_roll.py)."""

from __future__ import annotations

import asyncio
import time

import pytest
from sqlalchemy import text

from bot.app.outbox.pacing import Pacer
from bot.app.outbox.roll import Roll
from bot.app.outbox.shared_pacing import SharedPacer
from bot.bootstrap import default_pacers, shared_pacers
from bot.config import Settings
from bot.storage.database import Database
from bot.storage.send_allowance import SendAllowance
from bot.storage.send_roll import Beat, SendRoll
from tests.statements import statements

pytestmark = pytest.mark.postgres

BEAT_S, VALID_S, SETTLE_S = 0.05, 0.15, 0.3  # short, so the tests take a second or so
WINDOW_S = 0.3  # the test pacers' window: SETTLE_S covers it


@pytest.fixture
async def db(pg_db: Database) -> Database:
    """The module's database with nobody on the roll and no places or chats held."""
    async with pg_db.engine.begin() as connection:
        for table in ("send_worker", "send_slot", "send_chat"):
            await connection.execute(text(f"DELETE FROM {table}"))
    return pg_db


def store(db: Database, beat_s: float = BEAT_S) -> SendRoll:
    return SendRoll(db, valid_s=VALID_S, settle_s=SETTLE_S, beat_s=beat_s)


def roll(db: Database) -> Roll:
    return Roll(store(db))


async def is_alone(worker: Roll) -> bool:
    """`alone()` as a question only: a send it allowed alone is answered at once."""
    if answer := await worker.alone():
        worker.answered()
    return answer


def pacer(db: Database, on_roll: Roll | None) -> SharedPacer:
    """5 places in 0.3 s, and per chat 3 at once then 10 a second: what a send leaves in
    either is gone within SETTLE_S."""
    rate = 5 / WINDOW_S
    local = Pacer(
        rate_per_s=rate, per_chat_rate_per_s=10.0, per_chat_burst=3, window_s=WINDOW_S,
        unspaced_from=1,
    )  # fmt: skip
    allowance = SendAllowance(
        db, "telegram", 5, window_s=WINDOW_S, hold_s=30.0, interval_s=0.1, burst=3
    )
    return SharedPacer(local, allowance, roll=on_roll)


async def test_a_worker_alone_sends_with_no_statement_of_the_shared_limit(db: Database) -> None:
    """Alone on the database: after its first beat, a send costs no statement at all
    (with the shared limit it costs two: tests/test_send_limits.py)."""
    alone = roll(db)
    shared = pacer(db, alone)
    try:
        async with shared.turn("patient:0") as answered:  # the first send beats
            answered()
        with statements(db, quick=True) as seen:
            for n in range(3):
                async with shared.turn(f"patient:{n + 1}") as answered:
                    answered()
        limit = [s for s in seen if "send_slot" in s or "send_chat" in s]
        assert [s for s in limit if "send_worker" not in s] == []  # (beats may fall between)
        assert await is_alone(alone)
    finally:
        await shared.close()
        await alone.close()


async def test_two_workers_starting_together_never_both_go_alone(
    db: Database, second_worker: Database
) -> None:
    """Two first beats at once: one waits for the other's lock, so the first finds itself
    alone and the second sees it; the second then waits for the first to stop, and from
    then on both share."""
    first, second = roll(db), roll(second_worker)
    try:
        answers = await asyncio.gather(is_alone(first), is_alone(second))
        assert sorted(answers) == [False, True]
        await asyncio.sleep(3 * BEAT_S)  # the first one's next beats see the other
        assert not await is_alone(first) and not await is_alone(second)
    finally:
        await first.close()
        await second.close()


async def test_a_newcomer_shares_only_after_the_lone_worker_stopped_and_settle_passed(
    db: Database, second_worker: Database
) -> None:
    """Worker A sends alone as fast as it can; B joins. A stops sending alone at its
    next beat, and B's first shared send comes at least `settle_s` after A's last send
    alone: what A sent unrecorded has left the window before B counts on the tables."""
    a = roll(db)
    alone_at: list[float] = []
    stop = asyncio.Event()

    async def a_sends() -> None:
        while not stop.is_set():
            if await a.alone():
                alone_at.append(time.monotonic())
                a.answered()
            await asyncio.sleep(0.005)

    sending = asyncio.create_task(a_sends())
    b = roll(second_worker)
    try:
        await asyncio.sleep(0.2)
        assert alone_at  # A is alone
        assert not await is_alone(b)
        b_shared_at = time.monotonic()
        await asyncio.sleep(0.05)
        stop.set()
        await sending
        assert b_shared_at - alone_at[-1] >= SETTLE_S
        assert not await is_alone(a)  # and A shares from then on
    finally:
        stop.set()
        await a.close()
        await b.close()


async def test_sends_across_the_change_keep_to_the_window_and_the_chats_burst(
    db: Database, second_worker: Database
) -> None:
    """End to end: A, alone, spends the window (5 places in 0.3 s) and patient:1's burst
    (3, then 10 a second); B joins and at once asks to send the same. No 0.3 s ever sees
    more than 5 sends, and patient:1 never more than 3 in a tenth of a second."""
    a, b = roll(db), roll(second_worker)
    first, second = pacer(db, a), pacer(second_worker, b)
    spans: list[tuple[str, float]] = []
    chats = ["patient:1"] * 3 + ["patient:2", "patient:3"]

    async def send(shared: SharedPacer, chat: str) -> None:
        async with shared.turn(chat, priority=1) as answered:  # replies: no spacing
            spans.append((chat, time.monotonic()))
            answered()

    try:
        await asyncio.gather(*(send(first, chat) for chat in chats))
        assert await is_alone(a)
        await asyncio.gather(*(send(second, chat) for chat in chats))
    finally:
        for shared in (first, second):
            await shared.close()
        await a.close()
        await b.close()
    times = sorted(at for _, at in spans)
    assert len(times) == 10
    assert max(sum(1 for t in times if start <= t < start + WINDOW_S) for start in times) <= 5
    chat = sorted(at for name, at in spans if name == "patient:1")
    assert max(sum(1 for t in chat if start <= t < start + 0.1) for start in chat) <= 3


async def test_a_worker_that_stops_beating_leaves_the_other_alone(
    db: Database, second_worker: Database
) -> None:
    """A worker that dies stops beating: once it is no longer live, the other goes alone.
    One that stops cleanly leaves the roll: the other goes alone once the leaver's last
    sends have left the window (`settle_s`), not `live_s` after its last beat."""
    a, b = roll(db), roll(second_worker)
    try:
        await asyncio.gather(is_alone(a), is_alone(b))
        await asyncio.sleep(2 * BEAT_S)
        assert not await is_alone(a) and not await is_alone(b)
        assert b._loop is not None
        b._loop.cancel()  # b dies: no more beats, no leave
        await asyncio.sleep(VALID_S + SETTLE_S + 3 * BEAT_S)
        assert await is_alone(a)
    finally:
        await a.close()
        await b.close()
    c, d = roll(db), roll(second_worker)
    try:
        await asyncio.gather(is_alone(c), is_alone(d))
        await asyncio.sleep(2 * BEAT_S)
        assert not await is_alone(c)
        await d.close()
        await asyncio.sleep(BEAT_S)
        assert not await is_alone(c)  # d's last sends may still be in the window
        await asyncio.sleep(SETTLE_S + 3 * BEAT_S)
        assert await is_alone(c)
    finally:
        await c.close()
        await d.close()


class CountedBeats:
    """The real roll's statements, counted; `down`: refused (the database unreachable)."""

    def __init__(self, store: SendRoll) -> None:
        self.store, self.beats, self.down = store, 0, False
        self.valid_s, self.settle_s, self.beat_s = store.valid_s, store.settle_s, store.beat_s

    async def beat(self, worker: str, holding: bool) -> Beat:
        if self.down:
            raise ConnectionRefusedError
        self.beats += 1
        return await self.store.beat(worker, holding)

    async def leave(self, worker: str) -> None:
        await self.store.leave(worker)


async def test_a_send_after_the_answer_ran_out_waits_for_a_beat(db: Database) -> None:
    """A worker whose event loop stalled past its last answer's validity (its background
    beats could not run) beats before its next send, never relying on an old answer."""
    counted = CountedBeats(store(db, beat_s=3600.0))  # (no background beat in the test)
    now = [100.0]
    stalled = Roll(counted, monotonic=lambda: now[0])
    try:
        assert await is_alone(stalled)
        assert counted.beats == 1
        now[0] += VALID_S / 2
        assert await is_alone(stalled) and counted.beats == 1
        now[0] += VALID_S  # past the answer's validity
        assert await is_alone(stalled) and counted.beats == 2
    finally:
        await stalled.close()


async def test_leaving_ends_the_time_alone_so_a_newcomer_waits_only_the_settle(
    db: Database, second_worker: Database
) -> None:
    """A worker that was alone and stops: a worker starting right after waits
    `settle_s` from the stop, not the rest of the old answer's validity."""
    a = roll(db)
    assert await is_alone(a)
    await a.close()
    left = time.monotonic()
    b = roll(second_worker)
    try:
        assert not await is_alone(b)
        assert time.monotonic() - left >= SETTLE_S
        assert time.monotonic() - left < SETTLE_S + VALID_S
    finally:
        await b.close()


async def test_the_service_puts_every_channel_on_one_roll_with_the_longest_settle(
    db: Database,
) -> None:
    """Telegram's chat burst of 3 at one a second is the longest memory of a send: the
    process's one roll waits 3 s for it."""
    pacers = shared_pacers(default_pacers(Settings()), db, 30.0)
    rolls = {p.roll for p in pacers.values() if isinstance(p, SharedPacer)}
    assert len(rolls) == 1
    (the_roll,) = rolls
    assert the_roll is not None and the_roll.settle_s == 3.0


async def test_while_beats_fail_a_send_goes_alone_only_as_long_as_the_last_answer_holds(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    """The database goes away: the last answer still holds for `valid_s`, then a send
    fails (as its statements would) rather than guess; the outage is logged once, and
    the roll recovers when the database is back."""
    outage = CountedBeats(store(db))
    now = [100.0]
    lone = Roll(outage, monotonic=lambda: now[0])
    try:
        assert await is_alone(lone)
        outage.down = True
        now[0] += VALID_S / 2
        assert await is_alone(lone)  # the answer still holds
        now[0] += VALID_S
        for _ in range(3):
            with pytest.raises(ConnectionRefusedError):
                await is_alone(lone)
        assert sum("beats are failing" in r.getMessage() for r in caplog.records) == 1
        outage.down = False
        assert await is_alone(lone)
    finally:
        await lone.close()


async def test_a_worker_that_learns_it_is_not_alone_keeps_its_time_alone_open_one_beat(
    db: Database,
) -> None:
    """The beat that tells a lone worker of another began while it was still allowing
    sends alone: that beat keeps its time alone open (it may have allowed one since the
    statement left); its next beat, begun while sharing, ends it."""
    roll_of = store(db)
    first = await roll_of.beat("w1", holding=False)
    assert first.alone
    joined = await roll_of.beat("w2", holding=False)
    assert not joined.alone and joined.others_alone_until == pytest.approx(
        first.now + VALID_S, abs=0.001
    )
    learned = await roll_of.beat("w1", holding=True)  # was alone as it began
    assert not learned.alone
    after = await roll_of.beat("w2", holding=False)
    assert after.others_alone_until == pytest.approx(learned.now + VALID_S, abs=0.001)  # moved on
    await roll_of.beat("w1", holding=False)  # sharing, nothing alone in flight
    ended = await roll_of.beat("w2", holding=False)
    assert ended.others_alone_until is not None and ended.others_alone_until <= ended.now


async def test_a_newcomer_waits_for_the_answer_of_a_send_made_alone(
    db: Database, second_worker: Database
) -> None:
    """A lone worker allowed a send whose answer is slow to come (a provider taking its
    time): a worker joining meanwhile does not share until that answer is in, and
    `settle_s` after it."""
    a, b = roll(db), roll(second_worker)
    try:
        assert await a.alone()  # allowed alone, not answered yet
        joining = asyncio.create_task(b.alone())
        await asyncio.sleep(VALID_S + SETTLE_S + 4 * BEAT_S)  # past any answer's validity
        assert not joining.done()
        answered_at = time.monotonic()
        a.answered()
        assert await asyncio.wait_for(joining, 3.0) is False
        assert time.monotonic() - answered_at >= SETTLE_S
    finally:
        await a.close()
        await b.close()


async def test_a_place_still_held_by_a_send_keeps_a_lone_worker_sharing(db: Database) -> None:
    """A worker that stalled mid-send (or died) holds its place and its chat until the
    send lease runs out: a worker left on its own shares until they are free, since what
    that send does is in the tables only."""
    held = SendAllowance(db, "telegram", 5, window_s=WINDOW_S, hold_s=30.0, interval_s=0.1)
    await held.prepare()
    taken = await held.take("patient:9")
    lone = roll(db)
    try:
        assert not await is_alone(lone)
        await held.release(taken)  # given back: free once the window has passed
        await asyncio.sleep(WINDOW_S + 3 * BEAT_S)
        assert await is_alone(lone)
    finally:
        await lone.close()

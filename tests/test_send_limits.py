"""Send limits: the per-chat allowance in config.toml, the stand-in that enforces
Telegram's limits, and the limits shared by every worker on one PostgreSQL database."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, text

from bot.app.outbox.pacing import Pacer
from bot.app.outbox.shared_pacing import SharedPacer
from bot.bootstrap import default_pacers, shared_pacers
from bot.config import Settings
from bot.config.sections import settings_from_mapping
from bot.domain.errors import ConfigError
from bot.storage.database import Database
from bot.storage.send_allowance import Refused, SendAllowance, Taken
from tests.standins.limits import ProviderLimits, most_in_any_second
from tests.statements import statements

# ---- configuration ----------------------------------------------------------------------


def telegram(**keys: Any) -> Settings:
    return settings_from_mapping({"telegram": keys}, Path("config.toml"))


def test_the_per_chat_allowance_defaults_to_a_burst_of_three_at_one_a_second() -> None:
    settings = telegram()
    assert (settings.telegram.per_chat_burst, settings.telegram.per_chat_rate_per_s) == (3, 1.0)
    pacer = default_pacers(settings)["telegram"]
    assert (pacer.per_chat_burst, pacer.per_chat_rate_per_s, pacer.per_window) == (3, 1.0, 30)


def test_the_allowance_is_read_from_the_file() -> None:
    settings = telegram(per_chat_burst=5, per_chat_rate_per_s=0.5)
    assert (settings.telegram.per_chat_burst, settings.telegram.per_chat_rate_per_s) == (5, 0.5)


@pytest.mark.parametrize(
    ("key", "value", "words"),
    [
        ("per_chat_burst", 0, "from 1 to 20"),
        ("per_chat_burst", 21, "from 1 to 20"),
        ("per_chat_burst", 2.5, "must be an integer"),
        ("per_chat_burst", "3", "must be an integer"),
        ("per_chat_burst", True, "must be an integer"),
        ("per_chat_rate_per_s", 0, "must be a positive number"),
        ("per_chat_rate_per_s", -1, "must be a positive number"),
        ("per_chat_rate_per_s", "1", "must be a positive number"),
    ],
)
def test_a_bad_allowance_names_the_file_and_the_key(key: str, value: object, words: str) -> None:
    with pytest.raises(ConfigError) as raised:
        telegram(**{key: value})
    assert f"config.toml: telegram.{key}: " in str(raised.value)
    assert words in str(raised.value)


def test_the_example_config_documents_the_allowance() -> None:
    example = Path(__file__).resolve().parent.parent / "config.example.toml"
    text = example.read_text()
    assert "per_chat_burst = 3" in text and "per_chat_rate_per_s = 1" in text


async def test_sqlite_paces_in_process(sqlite_db: Database) -> None:
    """One process on SQLite: the pacers are not shared through the database."""
    pacers = shared_pacers(default_pacers(Settings()), sqlite_db, 30.0)
    assert all(isinstance(p, Pacer) for p in pacers.values())


# ---- the stand-in's limits ----------------------------------------------------------------


class Ticks:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_stand_in_refuses_the_31st_send_in_a_sliding_second() -> None:
    clock = Ticks()
    limits = ProviderLimits(per_s=30, per_chat_rate_per_s=None, clock=clock)
    for n in range(30):
        assert limits.check("sendMessage", f"chat{n}") is None
        clock.now += 0.03
    assert limits.check("editMessageText", "another") == 1  # 0.9 s after the first
    clock.now = 101.0  # the first left the window
    assert limits.check("sendMessage", "another") is None
    assert limits.check("getMe", "x") is None  # not a message: not counted
    assert (len(limits.accepted), limits.refused) == (31, 1)


def test_the_stand_in_takes_a_chats_burst_then_one_a_second() -> None:
    clock = Ticks()
    limits = ProviderLimits(per_s=30, per_chat_burst=3, per_chat_rate_per_s=1.0, clock=clock)
    assert [limits.check("sendMessage", "a") for _ in range(4)] == [None, None, None, 1]
    assert limits.check("sendMessage", "b") is None  # another chat has its own bucket
    clock.now += 0.5
    assert limits.check("sendMessage", "a") == 1
    clock.now += 0.5
    assert limits.check("sendMessage", "a") is None
    assert limits.check("sendMessage", "a") == 1


def test_most_in_any_second_slides() -> None:
    assert most_in_any_second([0.0, 0.5, 0.99, 1.0, 1.2, 1.6]) == 4  # 0.5 .. 1.2 ... 1.0..1.6
    assert most_in_any_second([]) == 0


# ---- shared by the workers of one PostgreSQL database ------------------------------------


def allowance(db: Database, **kwargs: Any) -> SendAllowance:
    settings: dict[str, Any] = {"per_window": 3, "window_s": 1.0, "hold_s": 30.0}
    settings |= {"interval_s": 1.0, "burst": 3}
    return SendAllowance(db, "telegram", **(settings | kwargs))


@pytest.mark.postgres
async def test_two_workers_share_the_places_of_the_window(
    pg_db: Database, second_worker: Database
) -> None:
    """Three places a second between two workers: while the first holds all three, the
    second is told to wait for a place (not the chat), whatever chat it sends to."""
    first, second = allowance(pg_db), allowance(second_worker)
    await first.prepare()
    taken = [await first.take(f"patient:{n}") for n in range(3)]
    assert all(isinstance(t, Taken) for t in taken)
    refused = await second.take("patient:9")
    assert isinstance(refused, Refused) and not refused.chat
    assert refused.wait_s > 1.0  # held in flight: not before their answers
    for t in taken:
        assert isinstance(t, Taken)
        await first.release(t)
    refused = await second.take("patient:9")
    assert isinstance(refused, Refused) and 0.0 < refused.wait_s <= 1.0  # a window from now


@pytest.mark.postgres
async def test_a_chats_burst_is_shared_by_the_workers(
    pg_db: Database, second_worker: Database
) -> None:
    """Three to one chat from the first worker spend its burst: the second worker's fourth
    waits for the chat's next token, about a second."""
    first, second = allowance(pg_db, per_window=30), allowance(second_worker, per_window=30)
    await first.prepare()
    for _ in range(3):
        taken = await first.take("patient:1")
        assert isinstance(taken, Taken)
        await first.release(taken)
    refused = await second.take("patient:1")
    assert isinstance(refused, Refused) and refused.chat
    assert 0.5 < refused.wait_s <= 1.0
    assert isinstance(await second.take("patient:2"), Taken)


@pytest.mark.postgres
async def test_a_send_costs_two_statements_and_no_transaction(pg_db: Database) -> None:
    """The allowance is paid per send: one statement takes the chat's token and a place,
    one gives both back, each its own transaction (no BEGIN and COMMIT round trips)."""
    shared = allowance(pg_db)
    await shared.prepare()
    commits: list[object] = []

    def committed(connection: object) -> None:
        commits.append(connection)

    engines = [pg_db.engine.sync_engine, pg_db.quick_engine.sync_engine]
    for engine in engines:
        event.listen(engine, "commit", committed)
    try:
        with statements(pg_db) as transactions, statements(pg_db, quick=True) as seen:
            taken = await shared.take("patient:1")
            assert isinstance(taken, Taken) and taken.slot is not None
            await shared.release(taken)
    finally:
        for engine in engines:
            event.remove(engine, "commit", committed)
    assert len(seen) == 2, seen
    assert transactions == []  # none on the transactions' pool (see the test below)
    assert commits == []


@pytest.mark.postgres
async def test_a_send_does_not_wait_for_a_connection_the_turns_are_holding(
    pg_db: Database,
) -> None:
    """Every connection of the transactions' pool is held (fifty turns at once hold them
    all): a send still takes its place and gives it back, on a pool of its own."""
    shared = allowance(pg_db)
    await shared.prepare()
    pool = pg_db.engine.sync_engine.pool
    capacity = pool.size() + pool._max_overflow  # type: ignore[attr-defined]
    async with contextlib.AsyncExitStack() as held:
        for _ in range(capacity):
            connection = await held.enter_async_context(pg_db.engine.connect())
            await connection.execute(text("SELECT 1"))
        assert pool.checkedout() == capacity
        taken = await asyncio.wait_for(shared.take("patient:1"), 10)  # the pool waits 30 s
        assert isinstance(taken, Taken) and taken.slot is not None
        await asyncio.wait_for(shared.release(taken), 10)


@pytest.mark.postgres
async def test_the_quick_pool_is_closed_with_the_database(pg_db: Database) -> None:
    """`dispose()` closes the quick pool's connections too (a worker's shutdown)."""
    other = Database(pg_db.url)
    async with other.quick() as connection:
        pid = (await connection.execute(text("SELECT pg_backend_pid()"))).scalar_one()
    await other.dispose()
    alive = 1
    for _ in range(100):  # the server ends the backend just after the client hangs up
        async with pg_db.engine.connect() as connection:
            found = await connection.execute(
                text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid}
            )
            alive = found.scalar_one()
        if not alive:
            break
        await asyncio.sleep(0.05)
    assert alive == 0


@pytest.mark.postgres
async def test_a_chat_refused_takes_no_place(pg_db: Database) -> None:
    """Two places; one chat with a burst of one sends, then is refused for its chat: the
    second place is still there for another chat, and only then is the window full."""
    shared = allowance(pg_db, per_window=2, burst=1)
    await shared.prepare()
    first = await shared.take("patient:1")
    assert isinstance(first, Taken) and first.due_before == 0.0
    await shared.release(first)
    refused = await shared.take("patient:1")
    assert isinstance(refused, Refused) and refused.chat and 0.5 < refused.wait_s <= 1.0
    other = await shared.take("patient:2")
    assert isinstance(other, Taken) and other.slot is not None and other.slot != first.slot
    full = await shared.take("patient:3")
    assert isinstance(full, Refused) and not full.chat


@pytest.mark.postgres
async def test_with_no_per_chat_limit_only_the_places_are_shared(pg_db: Database) -> None:
    """`interval_s` None: one chat may take every place, and no chat is marked held."""
    shared = allowance(pg_db, interval_s=None)
    await shared.prepare()
    taken = [await shared.take("patient:1") for _ in range(3)]
    assert all(isinstance(t, Taken) and t.chat is None for t in taken)
    assert {t.slot for t in taken if isinstance(t, Taken)} == {0, 1, 2}
    refused = await shared.take("patient:1")
    assert isinstance(refused, Refused) and not refused.chat
    for t in taken:
        assert isinstance(t, Taken)
        await shared.release(t)
    async with pg_db.engine.connect() as connection:
        chats = (await connection.execute(text("SELECT count(*) FROM send_chat"))).scalar()
    assert chats == 0


@pytest.mark.postgres
async def test_a_worker_that_dies_mid_send_frees_its_place_after_the_hold(
    pg_db: Database, second_worker: Database
) -> None:
    """One place; the first worker takes it and never answers (it died). The second gets
    it once `hold_s` has run out, not before."""
    dead, alive = allowance(pg_db, per_window=1, hold_s=0.5), allowance(second_worker)
    await dead.prepare()
    assert isinstance(await dead.take("patient:1"), Taken)
    await pg_db.dispose()  # its connections are gone
    first_try = await alive.take("patient:1")
    assert isinstance(first_try, Refused)
    while isinstance(answer := await alive.take("patient:1"), Refused):
        await asyncio.sleep(min(answer.wait_s, 0.05))
    assert isinstance(answer, Taken) and answer.slot == 0


@pytest.mark.postgres
async def test_two_shared_pacers_never_exceed_the_window_together(
    pg_db: Database, second_worker: Database
) -> None:
    """Two workers' pacers, 5 a second each in process but 5 between them: of 20 sends
    (round trips of 0 to 20 ms), no more than 5 can have arrived in any second."""
    spans: list[tuple[float, float]] = []

    def pacer(db: Database) -> SharedPacer:
        local = Pacer(rate_per_s=5, per_chat_rate_per_s=1.0, per_chat_burst=3)
        return SharedPacer(local, allowance(db, per_window=5))

    async def send(shared: SharedPacer, chat: str, rtt: float) -> None:
        async with shared.turn(chat) as answered:
            left = time.monotonic()
            await asyncio.sleep(rtt)
            answered()
            spans.append((left, time.monotonic()))

    first, second = pacer(pg_db), pacer(second_worker)
    await asyncio.gather(
        *(send(first if n % 2 else second, f"patient:{n % 7}", (n % 3) * 0.01) for n in range(20))
    )
    await first.close()
    await second.close()
    # the worst case: a window opening at an answer, every send arriving late in its span
    worst = max(
        sum(1 for left, answered in spans if answered >= start and left < start + 1.0)
        for start in (answered for _, answered in spans)
    )
    assert len(spans) == 20 and worst <= 5


@pytest.mark.postgres
async def test_a_chats_next_send_waits_for_its_last_release_not_a_poll(pg_db: Database) -> None:
    """An answer's edit then its next question, to one chat from one worker: the second
    waits for the first's release (its chat is marked held until then) rather than be
    refused and ask again: four statements."""
    local = Pacer(rate_per_s=30, per_chat_rate_per_s=1.0, per_chat_burst=3)
    shared = SharedPacer(local, allowance(pg_db, per_window=30))
    async with shared.turn("patient:0") as answered:  # (the first turn prepares the places)
        answered()
    await shared.close()
    with statements(pg_db, quick=True) as seen:
        for _ in range(2):
            async with shared.turn("patient:1") as answered:
                await asyncio.sleep(0.05)  # the provider's round trip: past the local spacing
                answered()
        await shared.close()
    assert len(seen) == 4, [s.split()[1] for s in seen]


@pytest.mark.postgres
async def test_a_rate_far_above_any_provider_shares_only_the_chats(pg_db: Database) -> None:
    """Tests lift the limit with rates of 100,000 a second: no window rows for those."""
    settings = telegram(rate_per_s=100_000)
    shared = shared_pacers(default_pacers(settings), pg_db, 30.0)["telegram"]
    assert isinstance(shared, SharedPacer)
    assert shared.allowance.per_window == 0 and shared.allowance.interval_s == 1.0
    await shared.allowance.prepare()
    for _ in range(3):  # no places to take, but the chat's burst is still shared
        taken = await shared.allowance.take("patient:1")
        assert isinstance(taken, Taken) and taken.slot is None
        await shared.allowance.release(taken)
    refused = await shared.allowance.take("patient:1")
    assert isinstance(refused, Refused) and refused.chat
    limited = shared_pacers(default_pacers(telegram()), pg_db, 30.0)["telegram"]
    assert isinstance(limited, SharedPacer) and limited.allowance.per_window == 30

"""The send limits shared by every worker on one PostgreSQL database: ``send_slot`` and
``send_chat``.

A channel's rate is ``per_window`` rows of ``send_slot``: a place in the provider's sliding
window. A send takes a free place (``frees_at`` passed) before it leaves and holds it
until ``window_s`` after its answer, as the in-process ``Pacer`` does; so no more than
``per_window`` requests can arrive at the provider within any window, whichever worker
sent them. A chat's burst allowance is its row of ``send_chat``: ``due`` is the time its
token bucket is full again (GCRA), moved on by one interval from each answer.

While a send is in flight its place and its chat are marked held for ``hold_s``: a worker
that dies mid-send frees both when that runs out (the outbox's send lease), and another
worker reading the chat in the moment between the answer and its recording waits.

A send costs two statements, each its own transaction (no BEGIN or COMMIT round trips):
:meth:`SendAllowance.take` reads the chat's bucket and, only if it has a token, takes a
free place and marks both held (``FOR UPDATE SKIP LOCKED``: a place another worker is
taking is passed over, not waited for); :meth:`SendAllowance.release` gives both back.
Both run on `Database.quick()`, a pool apart from the transactions', so turns holding
every connection never hold back their replies.

Every time is the database's clock (seconds since the epoch), so workers on hosts whose
clocks differ still agree. Chats are named by their recipient (``patient:12``), never by
an address. SQLite has one process, which paces itself: these tables stay empty there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import text
from sqlmodel import Field, SQLModel

import bot.storage.naming  # noqa: F401  (constraint names: set before any table is defined)
from bot.storage.database import Database


class SendSlot(SQLModel, table=True):
    __tablename__ = "send_slot"

    channel: str = Field(primary_key=True)
    n: int = Field(primary_key=True)  # 0 .. per_window - 1
    frees_at: float = 0.0  # database clock, epoch seconds


class SendChat(SQLModel, table=True):
    __tablename__ = "send_chat"

    channel: str = Field(primary_key=True)
    chat: str = Field(primary_key=True)  # the recipient: "patient:12", "clinician:3"
    due: float = 0.0  # database clock, epoch seconds: the chat's bucket is full again


# one statement (no transaction around it), every time by the database's clock read once:
# the chat's `due` before this send and how long it must wait (<= 0: it may go; no row:
# never sent to, or long ago); if it may, the free place that freed first is taken (when
# the channel has places) and the chat marked held (when it has a limit); and how long
# until the next place frees. A chat refused takes no place.
_TAKE = text("""
WITH clock AS (
    SELECT extract(epoch FROM clock_timestamp())::float8 AS now
), chat AS (
    SELECT coalesce(send_chat.due, 0.0) AS due,
           CASE WHEN CAST(:per_chat AS boolean)
                THEN coalesce(send_chat.due, 0.0) - :tolerance_s - clock.now ELSE 0.0 END
           AS wait_s
    FROM clock LEFT JOIN send_chat ON send_chat.channel = :channel AND send_chat.chat = :chat
), free AS (
    SELECT n FROM send_slot
    WHERE CAST(:places AS boolean) AND channel = :channel
      AND frees_at <= (SELECT now FROM clock) AND (SELECT wait_s FROM chat) <= 0
    ORDER BY frees_at, n LIMIT 1 FOR UPDATE SKIP LOCKED
), taken AS (
    UPDATE send_slot SET frees_at = clock.now + :hold_s
    FROM free, clock WHERE send_slot.channel = :channel AND send_slot.n = free.n
    RETURNING send_slot.n
), held AS (
    INSERT INTO send_chat (channel, chat, due)
    SELECT :channel, :chat, clock.now + :hold_s
    FROM chat, clock
    WHERE CAST(:per_chat AS boolean) AND chat.wait_s <= 0
      AND (EXISTS (SELECT FROM taken) OR NOT CAST(:places AS boolean))
    ON CONFLICT (channel, chat) DO UPDATE SET due = greatest(send_chat.due, excluded.due)
)
SELECT (SELECT n FROM taken) AS n, chat.due, chat.wait_s AS chat_wait_s,
       (SELECT min(frees_at) FROM send_slot WHERE channel = :channel) - clock.now
       AS place_wait_s
FROM chat, clock
""")
# one statement: the place frees `window_s` after the answer and the chat spends a token
# from it (a NULL place or chat matches no row: nothing to give back there)
_RELEASE = text("""
WITH answered AS (
    SELECT extract(epoch FROM clock_timestamp())::float8 - :ago_s AS at
), place AS (
    UPDATE send_slot SET frees_at = answered.at + :window_s
    FROM answered WHERE send_slot.channel = :channel AND send_slot.n = CAST(:n AS integer)
)
UPDATE send_chat
SET due = greatest(CAST(:before AS float8), answered.at) + CAST(:interval_s AS float8)
FROM answered
WHERE send_chat.channel = :channel AND send_chat.chat = CAST(:chat AS text)
""")
_SLOTS = text("""
INSERT INTO send_slot (channel, n, frees_at)
SELECT :channel, g, 0 FROM generate_series(0, :count - 1) AS g
ON CONFLICT (channel, n) DO NOTHING
""")
_EXTRA_SLOTS = text("DELETE FROM send_slot WHERE channel = :channel AND n >= :count")
_FULL_CHATS = text("""
DELETE FROM send_chat
WHERE channel = :channel AND due < extract(epoch FROM clock_timestamp())::float8 - 60
""")


@dataclass(frozen=True)
class Taken:
    """A place in the window and a chat's token, held until :meth:`SendAllowance.release`."""

    slot: int | None  # None: the channel has no rate
    chat: str | None  # None: no per-chat allowance
    due_before: float  # the chat's `due` before this send


@dataclass(frozen=True)
class Refused:
    """Not yet: try again in `wait_s`; `chat` says the chat's allowance is what is spent
    (another chat could go now), otherwise every place in the window is taken."""

    wait_s: float
    chat: bool


@dataclass
class SendAllowance:
    """One channel's shared limits: `per_window` places in `window_s`, and per chat a
    burst of `burst` then one every `interval_s` (None: no per-chat limit)."""

    db: Database
    channel: str
    per_window: int
    window_s: float
    hold_s: float
    interval_s: float | None = None
    burst: int = 1

    async def prepare(self) -> None:
        """Make the channel's places (as many as this worker's settings say; every
        worker of one database is meant to share them) and forget long-full chats."""
        params = {"channel": self.channel, "count": self.per_window}
        async with self.db.engine.begin() as connection:
            await connection.execute(_SLOTS, params)
            await connection.execute(_EXTRA_SLOTS, params)
            await connection.execute(_FULL_CHATS, params)

    async def take(self, chat: str) -> Taken | Refused:
        """A token of `chat`'s bucket and a place in the window (both held until
        :meth:`release`), or how long to wait. One statement: a chat whose allowance is
        spent takes no place, and a place freeing is retaken one round trip later."""
        per_chat = self.interval_s is not None
        if not self.per_window and not per_chat:
            return Taken(None, None, 0.0)  # nothing shared to take
        params = {
            "channel": self.channel,
            "chat": chat,
            "hold_s": self.hold_s,
            "per_chat": per_chat,
            "places": self.per_window > 0,
            "tolerance_s": (self.burst - 1) * (self.interval_s or 0.0),
        }
        async with self.db.quick() as connection:
            row = (await connection.execute(_TAKE, params)).one()
        if row.chat_wait_s > 0:
            return Refused(float(row.chat_wait_s), chat=True)
        if self.per_window and row.n is None:
            return Refused(max(0.0, float(row.place_wait_s or 0.0)), chat=False)
        slot = int(row.n) if row.n is not None else None
        return Taken(slot, chat if per_chat else None, float(row.due))

    async def release(self, taken: Taken, answered_at: Callable[[], float] | None = None) -> None:
        """The send was answered: its place frees `window_s` after the answer, its chat
        spends a token from the answer. One statement, by the database's clock: its time
        when the statement runs, less the seconds since the answer by `answered_at` (a
        local clock's "seconds ago", measured just before; never more than really passed)."""
        if taken.slot is None and taken.chat is None:
            return
        ago = answered_at() if answered_at is not None else 0.0
        params = {
            "channel": self.channel,
            "ago_s": max(0.0, ago),
            "n": taken.slot,
            "window_s": self.window_s,
            "chat": taken.chat,
            "before": taken.due_before,
            "interval_s": self.interval_s,
        }
        async with self.db.quick() as connection:
            await connection.execute(_RELEASE, params)

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

Every time is the database's clock (seconds since the epoch), so workers on hosts whose
clocks differ still agree. Chats are named by their recipient (``patient:12``), never by
an address. SQLite has one process, which paces itself: these tables stay empty there.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection
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


# every time here is the database's clock: extract(epoch FROM clock_timestamp())
_CHAT = text(
    "SELECT extract(epoch FROM clock_timestamp())::float8 AS now, "
    "(SELECT due FROM send_chat WHERE channel = :channel AND chat = :chat) AS due"
)
# one statement (no transaction around it): take the free place that freed first, mark
# the chat held if asked to, and say how long until the next place frees if none is free
_TAKE = text("""
WITH free AS (
    SELECT n FROM send_slot
    WHERE channel = :channel AND frees_at <= extract(epoch FROM clock_timestamp())::float8
    ORDER BY frees_at, n LIMIT 1 FOR UPDATE SKIP LOCKED
), taken AS (
    UPDATE send_slot SET frees_at = extract(epoch FROM clock_timestamp())::float8 + :hold_s
    FROM free WHERE send_slot.channel = :channel AND send_slot.n = free.n
    RETURNING send_slot.n
), held AS (
    INSERT INTO send_chat (channel, chat, due)
    SELECT :channel, :chat, extract(epoch FROM clock_timestamp())::float8 + :hold_s
    FROM taken WHERE CAST(:per_chat AS boolean)
    ON CONFLICT (channel, chat) DO UPDATE SET due = greatest(send_chat.due, excluded.due)
)
SELECT (SELECT n FROM taken) AS n,
       (SELECT min(frees_at) FROM send_slot WHERE channel = :channel)
       - extract(epoch FROM clock_timestamp())::float8 AS wait_s
""")
_HOLD_CHAT = text("""
INSERT INTO send_chat (channel, chat, due)
VALUES (:channel, :chat, extract(epoch FROM clock_timestamp())::float8 + :hold_s)
ON CONFLICT (channel, chat) DO UPDATE SET due = greatest(send_chat.due, excluded.due)
""")
_FREE_SLOT = text("""
UPDATE send_slot
SET frees_at = extract(epoch FROM clock_timestamp())::float8 - :ago_s + :window_s
WHERE channel = :channel AND n = :n
""")
_SPEND_CHAT = text("""
UPDATE send_chat
SET due = greatest(:before, extract(epoch FROM clock_timestamp())::float8 - :ago_s)
    + :interval_s
WHERE channel = :channel AND chat = :chat
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
        """A place in the window and a token of `chat`'s bucket, or how long to wait."""
        waiting = await self.chat_wait(chat)
        if isinstance(waiting, Refused):
            return waiting
        return await self.take_place(chat, waiting)

    async def chat_wait(self, chat: str) -> Refused | float:
        """Whether `chat` has a token: how long to wait, else its `due` (for the send)."""
        async with self._autocommit() as connection:
            row = (await connection.execute(_CHAT, {"channel": self.channel, "chat": chat})).one()
        due_before = float(row.due) if row.due is not None else 0.0
        tolerance = (self.burst - 1) * (self.interval_s or 0.0)
        if self.interval_s is not None and due_before - tolerance > row.now:
            return Refused(due_before - tolerance - row.now, chat=True)
        return due_before

    async def take_place(self, chat: str, due_before: float) -> Taken | Refused:
        """A place in the window (`chat` marked held); or how long until one frees. One
        statement: a place freeing is retaken one round trip later."""
        per_chat = self.interval_s is not None
        params = {"channel": self.channel, "chat": chat, "hold_s": self.hold_s}
        slot = None
        async with self._autocommit() as connection:
            if self.per_window:
                row = (await connection.execute(_TAKE, params | {"per_chat": per_chat})).one()
                if row.n is None:
                    return Refused(max(0.0, float(row.wait_s or 0.0)), chat=False)
                slot = int(row.n)
            elif per_chat:
                await connection.execute(_HOLD_CHAT, params)
        return Taken(slot, chat if per_chat else None, due_before)

    @contextlib.asynccontextmanager
    async def _autocommit(self) -> AsyncIterator[AsyncConnection]:
        """A connection whose every statement is its own transaction (no BEGIN, no COMMIT
        round trips)."""
        async with self.db.engine.connect() as connection:
            yield await connection.execution_options(isolation_level="AUTOCOMMIT")

    async def release(self, taken: Taken, answered_at: Callable[[], float] | None = None) -> None:
        """The send was answered: its place frees `window_s` after the answer, its chat
        spends a token from the answer. By the database's clock: its time when the
        statement runs, less the seconds since the answer by `answered_at` (a local
        clock's "seconds ago", measured just before; never more than really passed)."""
        ago = answered_at() if answered_at is not None else 0.0
        params = {"channel": self.channel, "ago_s": max(0.0, ago)}
        async with self.db.engine.begin() as connection:
            if taken.slot is not None:
                await connection.execute(
                    _FREE_SLOT, params | {"n": taken.slot, "window_s": self.window_s}
                )
            if taken.chat is not None:
                spend = {
                    "chat": taken.chat,
                    "before": taken.due_before,
                    "interval_s": self.interval_s,
                }
                await connection.execute(_SPEND_CHAT, params | spend)

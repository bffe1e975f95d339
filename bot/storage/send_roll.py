"""The roll of the workers sending on one PostgreSQL database: ``send_worker``.

A worker that finds itself the only one on the roll paces itself (its in-process
``Pacer``) and leaves the shared send limit (bot/storage/send_allowance.py) alone: the
two statements a send costs there are a third of a Telegram turn's. As soon as a second
worker is on the roll, both share the limit through the database again.

A row per worker (a random id per process): ``seen_at``, the database's clock at its
last beat; ``alone_until``, the latest time it may send without recording its sends in the
shared tables (NULL: it never did). A worker is *live* while its last beat is younger
than ``live_s``. A beat, about once a second:

* puts the worker on the roll (or refreshes it) and reads the others;
* finds it alone when no other worker is live and no place or chat is held by a send in
  flight (one a worker that stalled mid-send may still make): its ``alone_until`` moves
  to ``valid_s`` from now, and it may decide to send unrecorded until then by its own
  clock;
* otherwise reports the latest ``alone_until`` of the others; a worker may use the shared
  tables only ``settle_s`` after that (the window and a chat's bucket, counted from a
  send's answer: what another worker sent alone is in no table, and must have left both
  before this one counts on the tables);
* ends the worker's own time alone (``alone_until`` no later than now) only when it was
  not alone as the beat began and none of the sends it decided alone is still waiting
  for its answer (`holding`); until then each beat moves it on by ``valid_s``. So a
  worker that learns from a beat that it is no longer alone, or that still has a slow
  answer coming, is waited for.

Beats run in a transaction holding an advisory lock, one at a time: two workers starting
together each see the other's row, never both find themselves alone. A beat waits at most
2 s for the lock, and the server ends a beat whose worker stalled half way (its lock
freed). ``live_s`` exceeds ``valid_s`` by ``settle_s``: a worker that stopped beating has
stopped deciding sends for ``settle_s`` before another may go alone. A worker that stops
leaves: it stays live for ``settle_s`` more, no longer. Every time is the database's
clock, so hosts whose clocks differ still agree (a step of that clock, at a failover to a
server whose clock is off, can make a live worker look gone: keep the servers' clocks
synchronised). SQLite has one process: the table stays empty there.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import text
from sqlmodel import Field, SQLModel

import bot.storage.naming  # noqa: F401  (constraint names: set before any table is defined)
from bot.storage.database import Database

ROLL_LOCK = 0x6D62_6300_0001  # the advisory lock beats take (an arbitrary, fixed key)
FORGET_S = 3600.0  # a worker gone this long (and not alone since) leaves the roll


class SendWorker(SQLModel, table=True):
    __tablename__ = "send_worker"

    worker: str = Field(primary_key=True)  # a random id per process
    seen_at: float = 0.0  # database clock, epoch seconds: its last beat
    alone_until: float | None = None  # ... the latest it may send unrecorded (None: never)


# after the lock: the others' state, places or chats still held by a send in flight
# (taken and not given back: held `hold_s`, longer than `settle_s`), this worker's row
# written by it, long-gone rows forgotten (a worker that never sent alone, or not for an
# hour)
_BEAT = text("""
WITH clock AS (
    SELECT extract(epoch FROM clock_timestamp())::float8 AS now
), others AS (
    SELECT count(*) FILTER (WHERE seen_at > clock.now - :live_s) AS live,
           max(alone_until) AS alone_until
    FROM send_worker, clock
    WHERE worker <> :worker
), held AS (
    SELECT EXISTS (SELECT FROM send_slot WHERE frees_at > clock.now + :settle_s)
        OR EXISTS (SELECT FROM send_chat WHERE due > clock.now + :settle_s) AS any
    FROM clock
), verdict AS (
    SELECT others.live = 0 AND NOT held.any AS alone FROM others, held
), gone AS (
    DELETE FROM send_worker USING clock
    WHERE worker <> :worker AND seen_at < clock.now - :forget_s
      AND coalesce(alone_until, 0.0) < clock.now - :forget_s
), me AS (
    INSERT INTO send_worker (worker, seen_at, alone_until)
    SELECT :worker, clock.now,
           CASE WHEN verdict.alone OR CAST(:holding AS boolean) THEN clock.now + :valid_s END
    FROM clock, verdict
    ON CONFLICT (worker) DO UPDATE SET
        seen_at = excluded.seen_at,
        alone_until = CASE
            WHEN excluded.alone_until IS NOT NULL THEN excluded.alone_until
            WHEN send_worker.alone_until IS NULL THEN NULL
            ELSE least(send_worker.alone_until, excluded.seen_at)
        END
)
SELECT clock.now, verdict.alone, others.alone_until AS others_alone_until
FROM clock, verdict, others
""")
# a beat waits this long at most for another's beat to end, and a beat stuck half way
# (its worker stalled) is ended by the server after this long, its lock freed
_LOCK = text("""
SELECT set_config('lock_timeout', :timeout, true),
       set_config('idle_in_transaction_session_timeout', :timeout, true),
       pg_advisory_xact_lock(:key)
""")
BEAT_TIMEOUT = "2s"
# leaving: off the roll if it never sent alone; otherwise alone no longer, from now. Its
# beat is set back so that it stays live `linger_s` more: what it sent last must leave the
# window before another worker may go alone (alone, one counts on no table)
_LEAVE = text("""
WITH clock AS (
    SELECT extract(epoch FROM clock_timestamp())::float8 AS now
)
UPDATE send_worker
SET seen_at = least(seen_at, clock.now - :live_s + :linger_s),
    alone_until = CASE WHEN alone_until IS NULL THEN NULL ELSE least(alone_until, clock.now) END
FROM clock
WHERE worker = :worker
""")


@dataclass(frozen=True)
class Beat:
    """What a beat found, by the database's clock."""

    now: float
    alone: bool  # no other worker is live: this one may send unrecorded for `valid_s`
    others_alone_until: float | None  # the latest another may still have sent unrecorded

    def shared_wait_s(self, settle_s: float) -> float:
        """How long from `now` before the shared tables count every other worker's sends."""
        if self.alone or self.others_alone_until is None:
            return 0.0
        return max(0.0, self.others_alone_until + settle_s - self.now)


@dataclass(frozen=True)
class SendRoll:
    """The roll's statements for one database (times in seconds): an answer holds
    `valid_s`; what a send leaves in the window and the chats' buckets is gone `settle_s`
    after its answer; a running worker beats every `beat_s`."""

    db: Database
    valid_s: float
    settle_s: float
    beat_s: float

    @property
    def live_s(self) -> float:
        """How long a worker counts as live after its last beat: its answer's validity,
        then `settle_s` for what it sent last, and a beat's slack."""
        return self.valid_s + self.settle_s + self.beat_s

    async def beat(self, worker: str, holding: bool) -> Beat:
        """Put `worker` on the roll, find whether it is alone (see the module). `holding`:
        it may still be sending alone (it was alone when this beat began, or a send it
        made alone is not answered yet), so its time alone must not end yet."""
        params = {
            "worker": worker,
            "live_s": self.live_s,
            "valid_s": self.valid_s,
            "settle_s": self.settle_s,
            "holding": holding,
            "forget_s": FORGET_S,
        }
        async with self.db.quick_engine.connect() as connection:
            connection = await connection.execution_options(isolation_level="READ COMMITTED")
            async with connection.begin():
                await connection.execute(_LOCK, {"key": ROLL_LOCK, "timeout": BEAT_TIMEOUT})
                row = (await connection.execute(_BEAT, params)).one()
        others = None if row.others_alone_until is None else float(row.others_alone_until)
        return Beat(float(row.now), bool(row.alone), others)

    async def leave(self, worker: str) -> None:
        """`worker` has stopped sending: the others need not wait for its beats to run out,
        only `settle_s` (what its last sends leave in the window and the chats' buckets)."""
        params = {"worker": worker, "live_s": self.live_s, "linger_s": self.settle_s}
        async with self.db.quick() as connection:
            await connection.execute(_LEAVE, params)

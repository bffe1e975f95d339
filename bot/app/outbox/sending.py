"""One delivery attempt: send a claimed message through its channel and record the outcome.

The claims, their leases and why delivery is at least once and in order per recipient are
:mod:`bot.app.outbox.delivery`, which calls :meth:`Sender.send` for each message it claimed (once
:mod:`bot.app.outbox.pacing` lets it leave). The provider is called outside any transaction; the
outcome is recorded after it, in a short transaction (one for all the sends of a recipient's line
when the caller holds them back: :meth:`Sender.record`; on PostgreSQL, unless a delivery receipt
may be waiting for one of them, a single statement on `Database.quick()`: :class:`_GroupCommit`).

Failures: a permanent one (opted out, blocked, invalid number) marks the message dead and
lets the recipient's next message go; a clinician's alert message's alerts go at once to
the next clinician in line, in the same transaction (``Alerting.undelivered``, in a savepoint:
``bot.app.alerts.rerouting``, so that a failure there cannot undo the mark). So does an
exception the channel did not translate (a bug: retrying it would fail the same way each
time and hold every later message to that recipient behind it), recorded as
``unexpected error (<type>)``. Anything else is retried with exponential backoff, never
sooner than the provider's Retry-After, for as long as it takes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.app.alerts.alerting import Alerting
from bot.app.alerts.rerouting import reroute_undelivered
from bot.app.outbox.places import Place
from bot.app.outbox.receipts import apply_early
from bot.app.outbox.unreachable import mark_unreachable
from bot.app.ports import Channel, Clock
from bot.domain.errors import DeliveryFailed
from bot.rendering.renderer import Button, Rendered
from bot.storage.database import Database
from bot.storage.early_receipts import CHANNELS as RECEIPT_CHANNELS
from bot.storage.outbox import Outgoing
from bot.storage.prebuilt import mark_sent_on
from bot.storage.repository import Repository

log = logging.getLogger(__name__)
# How long a line's sends wait to be recorded with the next one's: a provider answering
# later than this (or a chat's pacing holding the next send) has them recorded meanwhile.
HOLD_S = 0.5


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff from `base_s` to `cap_s`, never sooner than Retry-After; a send
    that timed out after it left (maybe delivered) waits at least `maybe_sent_s`: a provider
    answering a few seconds late would otherwise get the same message again and again
    (with a 10 s client timeout and 2 s backoff, three copies of each question)."""

    base_s: float = 2.0
    cap_s: float = 900.0
    maybe_sent_s: float = 20.0

    def delay(
        self, attempts: int, retry_after_s: float | None, maybe_sent: bool = False
    ) -> timedelta:
        backoff = min(self.cap_s, self.base_s * 2 ** max(0, attempts - 1))
        floor = max(retry_after_s or 0.0, self.maybe_sent_s if maybe_sent else 0.0)
        return timedelta(seconds=max(backoff, floor))


@dataclass(frozen=True)
class Report:
    sent: int = 0
    retried: int = 0
    dead: int = 0

    def __add__(self, other: Report) -> Report:
        return Report(self.sent + other.sent, self.retried + other.retried, self.dead + other.dead)


@dataclass(frozen=True)
class Sent:
    """A send the provider accepted, its outcome to be recorded."""

    message_id: int
    provider_id: str | None
    at: datetime
    channel: str = ""  # SMS and WhatsApp sends may have a delivery receipt waiting


@dataclass
class Sender:
    """Sends one claimed message at a time and records what happened to it. `lease` is how
    long a claim holds its messages (a third of it before its end, a send is given up).

    A send is *unsettled* from the moment it goes to the provider until its outcome is
    committed (or fails to be): killed then, the process leaves the message to be sent
    again, so it may reach its recipient twice. At most `most_unsettled` sends are unsettled
    at once: a send first takes a place (:meth:`place`), which it gives back once settled.
    Without that bound, a database slower to commit than the provider is to answer (a
    stalled disk, a failover) let unrecorded sends pile up without end, and a kill then
    doubled all of them. Once `stop` is set no send starts (the message keeps its lease),
    and :meth:`settled` returns when those under way are settled: a process stopping waits
    for that."""

    db: Database
    clock: Clock
    policy: RetryPolicy
    lease: timedelta
    alerting: Alerting | None = None  # tells the clinician when a patient turns unreachable
    most_unsettled: int = 32

    def __post_init__(self) -> None:
        self._marks = _GroupCommit(self.db, self.alerting)
        self.stop: asyncio.Event | None = None  # the courier's, while one runs
        self.began: Callable[[Outgoing], None] | None = None  # told as each send begins
        self.unsettled = 0
        self._settled = asyncio.Event()
        self._settled.set()
        self._places = asyncio.Semaphore(self.most_unsettled)

    @property
    def stopping(self) -> bool:
        return self.stop is not None and self.stop.is_set()

    async def settled(self) -> None:
        """Return once no send is unsettled."""
        await self._settled.wait()

    def _settle(self, count: int) -> None:
        self.unsettled -= count
        for _ in range(count):
            self._places.release()
        if self.unsettled == 0:
            self._settled.set()

    def place(self) -> Place:
        """A place for one send among the `most_unsettled`: the send that goes keeps it
        until settled; one that does not go gives it back at the block's end."""
        return Place(self._places)

    async def send(
        self,
        message: Outgoing,
        channels: Mapping[str, Channel],
        edits: Mapping[int, str | None],
        answered: Callable[[], None],
        held: list[Sent] | None = None,
        place: Place | None = None,
    ) -> Report:
        """Send one message; `answered` is called as soon as the provider has answered.
        With `held`, a send that went is added to it rather than recorded: the caller
        records it (`record`), with the sends of the same line. `place`: one the caller
        took already (else the send waits for one here). Stopping: nothing is sent."""
        if place is None:
            async with self.place() as own:
                return await self.send(message, channels, edits, answered, held, own)
        if self.stopping:
            return Report()  # it keeps its lease until the stop hands it back
        if self.began is not None:
            self.began(message)  # it may reach the provider from now on: it stays leased
        place.keep()  # given back when the send is settled (`_settle`)
        self.unsettled += 1
        self._settled.clear()
        kept = False
        try:
            sent = await self._attempt(message, channels, edits, answered)
            if isinstance(sent, Report):
                return sent
            if held is None:
                await self._marks.record([sent])
            else:
                held.append(sent)
                kept = True  # settled when the caller records it
            return Report(sent=1)
        finally:
            if not kept:
                self._settle(1)

    async def _attempt(
        self,
        message: Outgoing,
        channels: Mapping[str, Channel],
        edits: Mapping[int, str | None],
        answered: Callable[[], None],
    ) -> Sent | Report:
        """The provider call: what it accepted, or the failure recorded (or nothing tried)."""
        assert message.id is not None
        channel = channels.get(message.channel)
        try:
            if channel is None:
                raise DeliveryFailed(f"channel {message.channel!r} is not configured")
            payload = dict(message.payload)
            # whose message it is, by record id (for the console, which prints them all)
            payload["recipient"] = f"{message.recipient_kind} {message.recipient_id}"
            if message.id in edits:
                payload["edit_message_id"] = edits[message.id]
            if self._lease_ending(message):
                return Report()  # paced past our lease: another worker may own it now
            try:
                provider_id = await channel.send(message.address, _rendered(message), payload)
            finally:
                answered()
        except DeliveryFailed as failure:
            return await self._failed(message, failure)
        except Exception as exc:  # a channel's bug: stop here rather than block the line
            log.error("outbound %s: the channel raised %s", message.id, type(exc).__name__)
            unexpected = DeliveryFailed(f"unexpected error ({type(exc).__name__})", permanent=True)
            return await self._failed(message, unexpected)
        return Sent(message.id, provider_id, self.clock(), message.channel)

    async def record(self, held: Sequence[Sent]) -> None:
        """Record sends held back, in one transaction (shared with others arriving at the
        same time); raise if it failed (their leases run out: sent again). Either way they
        are settled."""
        if held:
            try:
                await self._marks.record(held)
            finally:
                self._settle(len(held))

    async def meanwhile(self, sending: Awaitable[Report], held: list[Sent]) -> Report:
        """Await `sending` (a line's next send); the sends `held` are recorded meanwhile if
        it takes over HOLD_S, so holding them widens the window in which a crash sends them
        twice by that at most. A failure to record stops the send (if it has not left, it
        never does; if it has, its lease runs out as theirs do: sent again, in order)."""
        if not held:
            return await sending
        send = asyncio.ensure_future(sending)
        try:
            done, _ = await asyncio.wait({send}, timeout=HOLD_S)
            if not done:
                early = held[:]
                held.clear()  # the send, when it goes, is held alone
                await self.record(early)
            return await send
        finally:
            if not send.done():
                send.cancel()
                with contextlib.suppress(BaseException):
                    await send

    def _lease_ending(self, message: Outgoing) -> bool:
        """Sending this close to the lease's end could race a worker that re-claims it."""
        if message.lease_until is None:
            return False
        return self.clock() >= message.lease_until - self.lease / 3

    async def _failed(self, message: Outgoing, failure: DeliveryFailed) -> Report:
        assert message.id is not None
        async with self.db.transaction() as session:
            repo = Repository(session)
            if failure.recipient_gone and message.recipient_kind == "patient":
                await mark_unreachable(repo, message, self.clock(), self.alerting)
            if failure.permanent:
                await repo.mark_dead(message.id, failure.reason)
                log.warning("outbound %s dead: %s", message.id, failure.reason)
                if message.recipient_kind == "clinician" and self.alerting is not None:
                    await reroute_undelivered(self.alerting, repo, message, self.clock())
                return Report(dead=1)
            delay = self.policy.delay(message.attempts, failure.retry_after_s, failure.maybe_sent)
            retry_at = self.clock() + delay
            await repo.mark_retry(message.id, failure.reason, retry_at)
        log.info("outbound %s retry at %s: %s", message.id, retry_at.isoformat(), failure.reason)
        return Report(retried=1)


class _GroupCommit:
    """Records "sent" outcomes, several to a transaction when they arrive together.

    Each caller waits until its own outcomes are committed, as if they had a transaction
    of their own; but while one commit runs, the outcomes arriving behind it queue up and
    the next commit takes them all. One chat at a time commits alone; fifty sends
    finishing together take a few transactions, not fifty (SQLite has a single writer).
    A caller's outcomes (one line's) always share a transaction, and so do the delivery
    receipts that arrived for them before it (``bot.app.outbox.receipts.apply_early``).

    On PostgreSQL a commit with no SMS or WhatsApp send (no receipt to apply) is one
    UPDATE run for each outcome (``executemany``) on `Database.quick()`, outside any
    transaction of ours: no BEGIN and COMMIT, two round trips fewer. That is safe: each
    mark is a fact on its own, which no other row's change needs to go with, and the
    ``executemany`` is still one atomic batch (asyncpg sends every set of parameters, then
    one Sync: PostgreSQL keeps them all or none), so a failure still fails the whole batch.
    """

    def __init__(self, db: Database, alerting: Alerting | None = None) -> None:
        self._db = db
        self._alerting = alerting
        self._pending: list[tuple[Sequence[Sent], asyncio.Future[None]]] = []
        self._lock = asyncio.Lock()

    async def record(self, outcomes: Sequence[Sent]) -> None:
        """Return once these outcomes are committed; raise if their transaction failed
        (the leases then run out and the messages are sent again: at least once)."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (outcomes, done)
        self._pending.append(entry)
        try:
            async with self._lock:
                if not done.done():
                    with contextlib.suppress(Exception):  # every future of the batch carries it
                        await self._commit()
        except BaseException:  # cancelled (the stop's grace ran out): nobody awaits `done`
            self._forget(entry)
            raise
        await done

    def _forget(self, entry: tuple[Sequence[Sent], asyncio.Future[None]]) -> None:
        """A caller that will not await its outcome: taken out of the queue if no commit has
        them yet (as if its own transaction were rolled back: the leases run out, sent
        again), and its future's failure, now or later, is nobody's to report."""
        if any(pending is entry for pending in self._pending):
            self._pending = [pending for pending in self._pending if pending is not entry]
        done = entry[1]
        if done.done():
            _retrieve(done)
        else:  # in the batch a commit under way took: it settles the future later
            done.add_done_callback(_retrieve)

    async def _commit(self) -> None:
        batch, self._pending = self._pending, []
        try:
            sents = [sent for outcomes, _ in batch for sent in outcomes]
            marks = [(s.message_id, s.provider_id, s.at) for s in sents]
            receivable = _receivable(sents)
            if receivable or self._db.dialect != "postgresql":
                async with self._db.transaction() as session:
                    await Repository(session).mark_sent_all(marks)
                    if receivable:
                        at = max(s.at for s in sents)
                        await apply_early(session, receivable, at, self._alerting)
            else:
                async with self._db.quick() as connection:  # one statement, autocommitted
                    await mark_sent_on(connection, marks)
        except BaseException as exc:
            failure = exc if isinstance(exc, Exception) else RuntimeError("commit cancelled")
            for _, done in batch:
                done.set_exception(failure)
            raise
        for _, done in batch:
            done.set_result(None)


def _retrieve(future: asyncio.Future[None]) -> None:
    """Mark a failed future's exception as seen (no "never retrieved" warning)."""
    if not future.cancelled():
        future.exception()


def _receivable(sents: Sequence[Sent]) -> dict[tuple[str, str], int]:
    """The sends a delivery receipt may have come for already, by (channel, provider id)."""
    return {
        (s.channel, s.provider_id): s.message_id
        for s in sents
        if s.channel in RECEIPT_CHANNELS and s.provider_id
    }


def _rendered(message: Outgoing) -> Rendered:
    buttons = tuple(Button(label, data) for label, data in message.payload.get("buttons", []))
    return Rendered(message.body, buttons, html=bool(message.payload.get("html")))

"""Outbox delivery: claim due messages, send them through their channel, record the outcome.

Messages reach the outbox in the same transaction as the change that caused them; this is
the only place that sends. No transaction is held open while a provider is called: a claim
(with a lease) is one short transaction, each outcome another. A worker that dies mid-send
leaves a lease that runs out, and another worker (or the restarted one) sends the message
again: delivery is at least once, in order per recipient.

Failures: a permanent one (opted out, blocked, invalid number) marks the message dead and
lets the recipient's next message go; anything else is retried with exponential backoff,
never sooner than the provider's Retry-After, for as long as it takes.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import heapq
import itertools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.app.ports import Channel, Clock
from bot.domain.errors import DeliveryFailed
from bot.rendering.renderer import Button, Rendered
from bot.storage import outbox
from bot.storage.database import Database
from bot.storage.repository import Repository
from bot.storage.tables import OutboundMessage

log = logging.getLogger(__name__)
URGENT_ROOM = 20  # claimed beyond a full batch in flight when something urgent may be due


@dataclass(frozen=True)
class RetryPolicy:
    base_s: float = 2.0
    cap_s: float = 900.0

    def delay(self, attempts: int, retry_after_s: float | None) -> timedelta:
        backoff = min(self.cap_s, self.base_s * 2 ** max(0, attempts - 1))
        return timedelta(seconds=max(backoff, retry_after_s or 0.0))


@dataclass(frozen=True)
class Report:
    sent: int = 0
    retried: int = 0
    dead: int = 0

    def __add__(self, other: Report) -> Report:
        return Report(self.sent + other.sent, self.retried + other.retried, self.dead + other.dead)


class Pacer:
    """At most `rate_per_s` sends a second on a channel, and `gap_s` between two to one address.

    A provider counts requests when they arrive, and we only know that a request arrived
    somewhere between leaving and its answer. So a send holds its place in the sliding
    `window_s` from the moment it leaves until `window_s` after it is answered: no more
    than ``rate_per_s * window_s`` sends can then ever arrive within one window, however
    the network or a busy event loop delays them (a cold connection alone was seen to
    make a request arrive 27 ms late and draw a 429). The price is one round trip a
    window: on a local provider about 1 %, against a provider 100 ms away about 9 %.
    Sends are also spaced ``1 / rate_per_s`` apart so a window does not leave as a burst.

    The per-address gap is waited out before taking a channel slot, so a chat in its
    gap never holds up the others, and runs from the answer to the previous send to that
    address. Two sends to one address go one after the other.

    In-process: with several workers each paces itself (a shared limit needs a shared
    store). Time and sleeping are injectable so the schedule is tested without waiting.
    """

    def __init__(
        self,
        rate_per_s: float | None = None,
        gap_s: float = 0.0,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        window_s: float = 1.0,
    ) -> None:
        self.interval = 1.0 / rate_per_s if rate_per_s else 0.0
        self.gap_s = gap_s
        self.window_s = window_s
        # (the epsilon: 30 * 1.0 must be 30, not 29 after rounding)
        self.per_window = max(1, int(rate_per_s * window_s + 1e-9)) if rate_per_s else 0
        self._monotonic = monotonic
        self._sleep = sleep
        self._next = 0.0
        self._slots = _PriorityLock()
        self._closing: collections.deque[float] = collections.deque()  # when each place frees
        self._flying: list[object] = []  # a token per send not yet answered
        self._an_answer = asyncio.Event()  # set whenever one of them is answered
        self._chats: dict[str, _Chat] = {}
        self._sweep_at = 1024

    @contextlib.asynccontextmanager
    async def turn(self, address: str, priority: int = 0) -> AsyncIterator[Callable[[], None]]:
        """Wait until a send to `address` may leave, then hold its place while it is in
        flight. Yields `answered`: call it when the provider has answered (leaving the
        block does it too), so that the time spent recording the outcome is not counted."""
        chat = self._chat(address)
        chat.users += 1
        try:
            async with chat.lock:
                await self._until(chat.free_at)
                flying = await self._take_slot(priority)
                answered = False

                def done() -> None:
                    nonlocal answered
                    if answered:
                        return
                    answered = True
                    end = self._monotonic()
                    chat.free_at = end + self.gap_s
                    if flying is not None:
                        self._flying.remove(flying)
                        self._closing.append(end + self.window_s)
                        self._an_answer.set()

                try:
                    yield done
                finally:
                    done()
        finally:
            chat.users -= 1

    async def _until(self, at: float) -> None:
        delay = at - self._monotonic()
        if delay > 0:
            await self._sleep(delay)

    async def _take_slot(self, priority: int) -> object | None:
        """Wait for the channel's next slot and a free place in the window; take both.
        Sends waiting for a slot are served highest `priority` first, then in turn."""
        async with self._slots.held(priority):
            while True:
                now = self._monotonic()
                if now < self._next:
                    await self._sleep(self._next - now)
                    continue
                if not self.per_window:
                    self._next = self._following(now)
                    return None
                # (a microsecond's slack: a sleep may end a hair early, and must not spin)
                while self._closing and self._closing[0] <= now + 1e-6:
                    self._closing.popleft()
                if len(self._closing) + len(self._flying) < self.per_window:
                    break
                if self._closing:  # answered sends free their places first
                    await self._sleep(self._closing[0] - now)
                else:  # every place is in flight: wait for any answer, then look again
                    self._an_answer.clear()
                    await self._an_answer.wait()
            self._next = self._following(now)
            flying = object()
            self._flying.append(flying)
            return flying

    def _following(self, now: float) -> float:
        """The slot after one taken at `now`. Slots keep to their schedule: sleeps end a
        little late, and spacing each from the last actual leave lost one send a second
        to the drift. A send later than a whole slot lets one more catch up at once."""
        return max(self._next, now - self.interval) + self.interval

    def _chat(self, address: str) -> _Chat:
        chat = self._chats.get(address)
        if chat is None:
            if len(self._chats) >= self._sweep_at:  # forget chats whose gap is long over
                now = self._monotonic()
                self._chats = {a: c for a, c in self._chats.items() if c.users or c.free_at > now}
                self._sweep_at = max(1024, 2 * len(self._chats))
            chat = self._chats[address] = _Chat()
        return chat


class _PriorityLock:
    """A lock whose waiters get it highest priority first, then first come first served:
    a crisis message queued behind a wave's routine sends takes the next send slot."""

    def __init__(self) -> None:
        self._held = False
        self._waiting: list[tuple[int, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    @contextlib.asynccontextmanager
    async def held(self, priority: int) -> AsyncIterator[None]:
        if self._held or self._waiting:
            turn = asyncio.get_running_loop().create_future()
            heapq.heappush(self._waiting, (-priority, next(self._order), turn))
            try:
                await turn
            except BaseException:
                if turn.done() and not turn.cancelled():
                    self._release()  # handed the lock just as we were cancelled
                else:
                    self._waiting = [w for w in self._waiting if w[2] is not turn]
                    heapq.heapify(self._waiting)
                raise
        else:
            self._held = True
        try:
            yield
        finally:
            self._release()

    def _release(self) -> None:
        while self._waiting:
            *_, turn = heapq.heappop(self._waiting)
            if not turn.done():
                turn.set_result(None)  # ownership passes straight to the next waiter
                return
        self._held = False


@dataclass
class _Chat:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    free_at: float = 0.0
    users: int = 0


@dataclass
class Deliverer:
    db: Database
    channels: Mapping[str, Channel]
    clock: Clock
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    batch: int = 200
    lease: timedelta = timedelta(seconds=30)  # longer than any provider timeout
    concurrency: int = 16
    pacers: Mapping[str, Pacer] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._marks = _GroupCommit(self.db)

    async def run_once(self) -> Report:
        """Send one claim of due messages; returns what happened to them."""
        sending = _Sending(asyncio.Semaphore(self.concurrency), self.clock() + self.lease / 3)
        try:
            await self._claim(sending, self.batch)
            while sending.running:
                await self._finished(sending, None)
                await self._renew_if_due(sending)
        finally:
            await sending.cancel()
        return sending.report

    async def drain(self, wake: asyncio.Event | None = None) -> Report:
        """Deliver until nothing is due now (messages waiting on a retry delay stay queued).

        The drain claims again whenever what it has sent may have let something urgent
        through, not only when a whole claim is done: when a reply or an urgent message
        is sent (the next one in that recipient's line, such as a clinician's second
        alert, may now be due), when `wake` is set (something was queued), when half of a
        full claim is gone, and when nothing is left in flight. A paced claim of 200
        routine messages takes seven seconds at 30 a second; an alert queued meanwhile
        is taken at once and, urgent, is sent next."""
        sending = _Sending(asyncio.Semaphore(self.concurrency), self.clock() + self.lease / 3)
        try:
            await self._claim(sending, self.batch, wake)
            while sending.running:
                finished = await self._finished(sending, wake)
                await self._renew_if_due(sending)
                room = self.batch - len(sending.running)
                woken = wake is not None and wake.is_set()
                if woken or any(m.priority >= outbox.REPLY for m in finished):
                    # something may be urgent: claim it even if the batch is in flight,
                    # up to twice the batch at most
                    extra = min(URGENT_ROOM, room + self.batch)
                    await self._claim(sending, max(room, extra), wake)
                elif not sending.running or (sending.full and room >= self.batch // 2):
                    await self._claim(sending, room, wake)
        finally:
            await sending.cancel()
        return sending.report

    async def _claim(
        self, sending: _Sending, limit: int, wake: asyncio.Event | None = None
    ) -> None:
        """Claim up to `limit` due messages and start sending each."""
        if limit <= 0:
            return
        if wake is not None:
            wake.clear()  # what it announced is due now: this claim sees it
        async with self.db.transaction() as session:
            claimed = await Repository(session).claim_outbox(self.clock(), limit, self.lease)
            edits = await _edit_targets(session, claimed)
        sending.full = len(claimed) == limit
        for message in claimed:  # most urgent first: they reach the pacer in this order
            task = asyncio.create_task(self._one(message, edits, sending.gate))
            sending.running[task] = message

    async def _one(
        self, message: OutboundMessage, edits: Mapping[int, str | None], gate: asyncio.Semaphore
    ) -> Report:
        # wait for the send slot before taking a connection: a message waiting out its
        # chat's one-second gap must not hold a place other chats could use
        pacer = self.pacers.get(message.channel)
        if pacer is None:
            async with gate:
                return await self._deliver(message, edits, _nothing)
        async with pacer.turn(message.address, message.priority) as answered, gate:
            return await self._deliver(message, edits, answered)

    async def _finished(
        self, sending: _Sending, wake: asyncio.Event | None
    ) -> list[OutboundMessage]:
        """Wait until at least one send is done, `wake` is set or the leases are due for
        renewal; the messages done."""
        waiting: set[asyncio.Future[Any]] = set(sending.running)
        woken: asyncio.Future[Any] | None = None
        if wake is not None:
            woken = asyncio.ensure_future(wake.wait())
            waiting.add(woken)
        until_renewal = (sending.renew_at - self.clock()).total_seconds()
        try:
            done, _ = await asyncio.wait(
                waiting, timeout=max(0.01, until_renewal), return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            if woken is not None and not woken.done():
                woken.cancel()
        finished = []
        for task in done:
            if task is woken:
                continue
            message = sending.running.pop(task)
            finished.append(message)
            if task.cancelled() or task.exception() is not None:
                # a channel bug: the lease runs out and the message is sent again
                problem = "cancelled" if task.cancelled() else type(task.exception()).__name__
                log.error("outbound %s failed unexpectedly (%s)", message.id, problem)
                continue
            sending.report += task.result()
        return finished

    async def _renew_if_due(self, sending: _Sending) -> None:
        """Every third of a lease, extend the leases of the messages still in flight.

        A lease is what lets another worker take over the messages of one that died; a
        worker that is alive but slow (a busy machine, a provider answering late) must not
        lose them while a send is under way, or the message goes out twice. Each renewal
        is one UPDATE per claim, and only extends a lease still ours: one that ran out
        and was claimed by another worker stays theirs, and ours is not sent."""
        now = self.clock()
        if now < sending.renew_at or not sending.running:
            return
        sending.renew_at = now + self.lease / 3
        claims: dict[datetime, list[OutboundMessage]] = {}
        for message in sending.running.values():
            if message.lease_until is not None and message.id is not None:
                claims.setdefault(message.lease_until, []).append(message)
        renewed = now + self.lease
        try:
            async with self.db.transaction() as session:
                repo = Repository(session)
                for held, messages in claims.items():
                    ids = [m.id for m in messages if m.id is not None]
                    kept = await repo.renew_leases(ids, held, renewed)
                    for message in messages:
                        if message.id in kept:
                            message.lease_until = renewed
        except Exception as exc:  # the leases may run out: at least once, as after a crash
            log.warning("could not renew outbox leases (%s)", type(exc).__name__)

    async def _deliver(
        self,
        message: OutboundMessage,
        edits: Mapping[int, str | None],
        answered: Callable[[], None],
    ) -> Report:
        """Send one message; `answered` is called as soon as the provider has answered."""
        assert message.id is not None
        channel = self.channels.get(message.channel)
        try:
            if channel is None:
                raise DeliveryFailed(f"channel {message.channel!r} is not configured")
            payload = dict(message.payload)
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
        await self._marks.sent(message.id, provider_id, self.clock())
        return Report(sent=1)

    def _lease_ending(self, message: OutboundMessage) -> bool:
        """Sending this close to the lease's end could race a worker that re-claims it."""
        if message.lease_until is None:
            return False
        return self.clock() >= message.lease_until - self.lease / 3

    async def _failed(self, message: OutboundMessage, failure: DeliveryFailed) -> Report:
        assert message.id is not None
        async with self.db.transaction() as session:
            repo = Repository(session)
            if failure.recipient_gone and message.recipient_kind == "patient":
                await mark_unreachable(repo, message, self.clock())
            if failure.permanent:
                await repo.mark_dead(message.id, failure.reason)
                log.warning("outbound %s dead: %s", message.id, failure.reason)
                return Report(dead=1)
            retry_at = self.clock() + self.policy.delay(message.attempts, failure.retry_after_s)
            await repo.mark_retry(message.id, failure.reason, retry_at)
        log.info("outbound %s retry at %s: %s", message.id, retry_at.isoformat(), failure.reason)
        return Report(retried=1)


@dataclass
class _Sending:
    """One drain's sends in flight (a task each, with its message) and their outcomes."""

    gate: asyncio.Semaphore  # at most `concurrency` provider calls at once
    renew_at: datetime  # when the leases of what is in flight are extended next
    running: dict[asyncio.Future[Report], OutboundMessage] = field(default_factory=dict)
    report: Report = field(default_factory=Report)
    full: bool = False  # the last claim took all it asked for: more may be due

    async def cancel(self) -> None:
        """Stop what is still in flight (the drain was cancelled or failed): those
        messages' leases run out and they are sent later."""
        for task in self.running:
            task.cancel()
        await asyncio.gather(*self.running, return_exceptions=True)


class _GroupCommit:
    """Records "sent" outcomes, several to a transaction when they arrive together.

    Each send waits until its own outcome is committed, as if it had its own transaction;
    but while one commit runs, the outcomes arriving behind it queue up and the next
    commit takes them all. One chat at a time commits alone; fifty sends finishing
    together take a few transactions, not fifty (SQLite has a single writer).
    """

    def __init__(self, db: Database) -> None:
        self._db = db
        self._pending: list[tuple[int, str | None, datetime, asyncio.Future[None]]] = []
        self._lock = asyncio.Lock()

    async def sent(self, message_id: int, provider_id: str | None, at: datetime) -> None:
        """Return once this outcome is committed; raise if its transaction failed (the
        lease then runs out and the message is sent again: at least once)."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((message_id, provider_id, at, done))
        async with self._lock:
            if not done.done():
                try:
                    await self._commit()
                except Exception:  # noqa: S110 -- every future of the batch carries it
                    pass
                except BaseException:
                    done.exception()  # retrieved: the cancellation is what propagates
                    raise
        await done

    async def _commit(self) -> None:
        batch, self._pending = self._pending, []
        try:
            async with self._db.transaction() as session:
                repo = Repository(session)
                for message_id, provider_id, at, _ in batch:
                    await repo.mark_sent(message_id, provider_id, at)
        except BaseException as exc:
            failure = exc if isinstance(exc, Exception) else RuntimeError("commit cancelled")
            for *_, done in batch:
                done.set_exception(failure)
            raise
        for *_, done in batch:
            done.set_result(None)


async def _edit_targets(
    session: AsyncSession, claimed: list[OutboundMessage]
) -> dict[int, str | None]:
    """For each claimed edit, the provider's id of the question it edits (None: unknown)."""
    targets: dict[int, str | None] = {}
    for message in claimed:
        item = message.payload.get("item")
        if message.payload.get("edit") and isinstance(item, str) and message.id is not None:
            targets[message.id] = await last_question_id(session, message, item)
    return targets


async def last_question_id(
    session: AsyncSession, message: OutboundMessage, item: str
) -> str | None:
    """The provider's id of the most recent question about `item` sent to the same
    recipient before `message`. Only the columns needed are read: a whole row would
    decrypt its address and body for nothing."""
    statement = (
        select(OutboundMessage.provider_id, OutboundMessage.payload)
        .where(
            OutboundMessage.recipient_kind == message.recipient_kind,
            OutboundMessage.recipient_id == message.recipient_id,
            OutboundMessage.status == "sent",
            col(OutboundMessage.id) < (message.id or 0),
        )
        .order_by(col(OutboundMessage.id).desc())
        .limit(50)
    )
    for provider_id, payload in (await session.exec(statement)).all():
        if payload.get("intent") == "Ask" and payload.get("item") == item:
            return provider_id
    return None


async def mark_unreachable(repo: Repository, message: OutboundMessage, now: datetime) -> None:
    """The patient blocked the bot (or opted out at the carrier): visible to the operator."""
    patient = await repo.get_patient(message.recipient_id)
    if patient is None or patient.status in ("blocked", "opted_out", "discharged"):
        return
    patient.status = "opted_out" if message.channel == "sms" else "blocked"
    await repo.add(patient)
    await repo.audit(
        now, "system", f"patient_{patient.status}", f"patient:{patient.id}", channel=message.channel
    )


def _nothing() -> None:
    pass


def _rendered(message: OutboundMessage) -> Rendered:
    buttons = tuple(Button(label, data) for label, data in message.payload.get("buttons", []))
    return Rendered(message.body, buttons, html=bool(message.payload.get("html")))


async def deliver_when_woken(
    deliverer: Deliverer, wake: asyncio.Event, stop: asyncio.Event
) -> None:
    """Drain the outbox each time `wake` is set, until `stop`: the webhook process sends a
    reply the moment it is committed. Safe beside the tick and other workers (claims are
    leased); a failed drain is logged and left to the tick."""
    while not stop.is_set():
        await wake.wait()
        wake.clear()
        try:
            await deliverer.drain(wake)
        except Exception as exc:
            log.error("delivery on wake failed (%s); the tick retries", type(exc).__name__)

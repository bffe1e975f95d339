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
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.domain.errors import DeliveryFailed
from bot.ports import Channel, Clock
from bot.rendering import Button, Rendered
from bot.storage.database import Database
from bot.storage.repository import Repository
from bot.storage.tables import OutboundMessage

log = logging.getLogger(__name__)


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

    Two rules together: sends are spaced ``1 / rate_per_s`` apart, and no more than
    ``rate_per_s`` (rounded down) leave in any sliding ``window_s``, counted when they
    actually leave. Spacing alone is not enough: a busy event loop wakes several spaced
    sends at once, and a provider counting in a sliding second sees a burst (429). A
    `window_s` a little over a second keeps the arrivals inside the limit.

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
        self.per_window = max(1, int(rate_per_s * window_s)) if rate_per_s else 0
        self._monotonic = monotonic
        self._sleep = sleep
        self._next = 0.0
        self._last: dict[str, float] = {}
        self._lock = asyncio.Lock()
        self._window_lock = asyncio.Lock()
        self._left: collections.deque[float] = collections.deque()

    def reserve(self, address: str) -> float:
        """Book the next send slot for `address`; how long to wait for it."""
        now = self._monotonic()
        last = self._last.get(address)
        start = max(now, self._next, last + self.gap_s if last is not None else now)
        self._next = start + self.interval
        self._last[address] = start
        return start - now

    async def wait(self, address: str) -> None:
        async with self._lock:
            delay = self.reserve(address)
        if delay > 0:
            await self._sleep(delay)
        if self.per_window:
            await self._window()

    async def _window(self) -> None:
        async with self._window_lock:
            while True:
                now = self._monotonic()
                # (a microsecond's slack: a sleep may end a hair early, and must not spin)
                while self._left and self._left[0] + self.window_s <= now + 1e-6:
                    self._left.popleft()
                if len(self._left) < self.per_window:
                    self._left.append(now)
                    return
                await self._sleep(self._left[0] + self.window_s - now)


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
        """Send one batch of due messages; returns what happened to them."""
        async with self.db.transaction() as session:
            claimed = await Repository(session).claim_outbox(self.clock(), self.batch, self.lease)
            edits = await _edit_targets(session, claimed)
        if not claimed:
            return Report()
        gate = asyncio.Semaphore(self.concurrency)

        async def one(message: OutboundMessage) -> Report:
            # wait for the send slot before taking a connection: a message waiting out its
            # chat's one-second gap must not hold a place other chats could use
            pacer = self.pacers.get(message.channel)
            if pacer is not None:
                await pacer.wait(message.address)
            async with gate:
                return await self._deliver(message, edits)

        reports = await asyncio.gather(*(one(m) for m in claimed), return_exceptions=True)
        total = Report()
        for message, outcome in zip(claimed, reports, strict=True):
            if isinstance(outcome, BaseException):  # a channel bug: its lease runs out, retried
                log.error(
                    "outbound %s failed unexpectedly (%s)", message.id, type(outcome).__name__
                )
                continue
            total += outcome
        return total

    async def drain(self, max_rounds: int = 1000) -> Report:
        """Deliver until nothing is due now (messages waiting on a retry delay stay queued)."""
        total = Report()
        for _ in range(max_rounds):
            report = await self.run_once()
            total += report
            if report == Report():
                break
        return total

    async def _deliver(self, message: OutboundMessage, edits: Mapping[int, str | None]) -> Report:
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
            provider_id = await channel.send(message.address, _rendered(message), payload)
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
            await deliverer.drain()
        except Exception as exc:
            log.error("delivery on wake failed (%s); the tick retries", type(exc).__name__)

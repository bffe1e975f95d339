"""Outbox delivery: claim due messages, send them through their channel, record the outcome.

Messages reach the outbox in the same transaction as the change that caused them; this is
the only place that sends. No transaction is held open while a provider is called: a claim
(with a lease) is one short transaction, each outcome another. A worker that dies mid-send
leaves a lease that runs out, and another worker (or the restarted one) sends the message
again: delivery is at least once, in order per recipient. A recipient's messages sent
together record their outcomes together, in one transaction.

This module is the pump: claims, the sends in flight, their leases renewed. A recipient's
messages taken together (a *line*) go one after the other from one task; one not sent
stops the rest, which follow it at its retry. The rows a turn of this process queued
are handed to it (:meth:`Deliverer.take`), leased in the turn's own transaction: no
claim reads them back. One send and its outcome: :mod:`bot.app.outbox.sending`; how
fast sends may leave: :mod:`bot.app.outbox.pacing`.

Stopping (the courier's `stop`, on SIGTERM) claims and starts nothing more; the sends the
provider has finish and are recorded, for ``[scheduler] stop_grace_s`` at most. Only what
is cut off then can reach a recipient twice (it stays leased); what was leased to this
process and never begun is handed back (:mod:`bot.app.outbox.leases`), to go at once from
another worker or the next process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from bot.app.alerts.alerting import Alerting
from bot.app.outbox import leases
from bot.app.outbox.edits import edit_targets, pacing_priority
from bot.app.outbox.pacing import Pacing
from bot.app.outbox.places import Call
from bot.app.outbox.sending import Report, RetryPolicy, Sender, Sent
from bot.app.outbox.watching import Watch
from bot.app.ports import Channel, Clock
from bot.storage import outbox
from bot.storage.database import Database
from bot.storage.outbox import Outgoing
from bot.storage.repository import Repository

log = logging.getLogger(__name__)
URGENT_ROOM = 20  # claimed beyond a full batch in flight when something urgent may be due
HAND_OFF_CHANNELS = ("telegram", "sms", "console")  # WhatsApp may hold a row for its window


@dataclass
class Deliverer:
    db: Database
    channels: Mapping[str, Channel]
    clock: Clock
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    batch: int = 200
    lease: timedelta = timedelta(seconds=30)  # renewed every third of it while sending
    concurrency: int = 16
    pacers: Mapping[str, Pacing] = field(default_factory=dict)
    alerting: Alerting | None = None  # a patient found unreachable raises opted_out
    before_claim: Callable[[], Awaitable[object]] | None = None  # alert digests' fold

    def __post_init__(self) -> None:
        # at most `concurrency` sends at the provider, and as many answered and not yet
        # recorded: what a kill can make go twice (see Sender)
        self._sender = Sender(
            self.db, self.clock, self.policy, self.lease, self.alerting, 2 * self.concurrency
        )
        self._wake: asyncio.Event | None = None  # the courier's, while one runs
        self._arrived = asyncio.Event()  # set when something is handed over
        self._handed: list[tuple[list[Outgoing], Mapping[int, str | None]]] = []
        self._draining: _Sending | None = None  # the courier's drain under way, if any
        self._watch: Watch | None = None  # the courier's waits (see bot.app.outbox.watching)
        self._not_begun = leases.NotBegun()  # handed back at the stop
        self._sender.began = self._not_begun.begin
        names = frozenset(self.channels)
        self._hand_off_channels = names.intersection(HAND_OFF_CHANNELS)

    async def courier(self, wake: asyncio.Event, stop: asyncio.Event) -> None:
        """See :func:`deliver_when_woken`."""
        self._wake = wake  # turns hand this process their rows from now on
        self._sender.stop = stop
        self._watch = Watch()  # its waits' tasks, kept from one wait to the next
        try:
            while not stop.is_set():
                claim = await self._woken(wake, stop)
                if stop.is_set():
                    break
                try:
                    await self.drain(wake, claim)
                except Exception as exc:
                    log.error("delivery on wake failed (%s); the tick retries", type(exc).__name__)
        finally:
            self._wake = None
            self._sender.stop = None  # a drain without a courier (the tick's) sends again
            self._watch.close()
            self._watch = None

    @property
    def idle(self) -> bool:
        """Nothing handed over waits or is in flight, and no drain of the courier runs."""
        return self._draining is None and not self._handed and self._sender.unsettled == 0

    @property
    def in_flight(self) -> int:
        """Sends given to the provider whose outcome is not committed yet."""
        return self._sender.unsettled

    async def _woken(self, wake: asyncio.Event, stop: asyncio.Event) -> bool:
        """Wait for `wake` (cleared, True: claim), a hand-off (False: send it) or `stop`."""
        if not wake.is_set() and not self._arrived.is_set() and not stop.is_set():
            watch = self._watch or Watch()
            try:
                await asyncio.wait(
                    watch.of((wake, self._arrived, stop)), return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                if watch is not self._watch:
                    watch.close()
        claim = wake.is_set()
        wake.clear()
        return claim

    @property
    def hands_off(self) -> bool:
        """A courier runs: turns hand it their rows and wake it themselves."""
        return self._wake is not None

    def claiming(self) -> outbox.Claiming | None:
        """How a turn starting now leases its rows to this process (None: no courier, or
        it is stopping: the rows stay queued, for another worker or the next process)."""
        if self._wake is None or self._sender.stopping:
            return None
        now = self.clock()
        return outbox.Claiming(self.clock, now + self.lease, self._hand_off_channels)

    def take(
        self, claimed: Sequence[Outgoing], edits: Mapping[int, str | None], more: bool
    ) -> None:
        """Rows a committed transaction leased to us (`claiming`), in id order; `more`:
        it also queued rows a claim must take."""
        if claimed:
            self._not_begun.hold(claimed)
            self._handed += [(line, edits) for line in _lines(claimed)]
            self._arrived.set()
            if self._draining is not None:  # now, even while it waits to claim
                self._start_handed(self._draining)
        if more and self._wake is not None:
            self._wake.set()

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

    async def drain(self, wake: asyncio.Event | None = None, claim: bool = True) -> Report:
        """Deliver until nothing is due now (messages waiting on a retry delay stay queued).

        The drain claims again whenever what it has sent may have let something urgent
        through, not only when a whole claim is done: when a reply or an urgent message
        is sent (the next one in that recipient's line, such as a clinician's second
        alert, may now be due), when `wake` is set (something was queued), when half of a
        full claim is gone, and when nothing is left in flight. A paced claim of 200
        routine messages takes seven seconds at 30 a second; an alert queued meanwhile
        is taken at once and, urgent, is sent next. Rows handed over are sent as they come;
        `claim` False (the courier was woken by a hand-off alone): no claim unless `wake`
        is set meanwhile. Stopping, the drain ends once the sends under way are settled."""
        sending = _Sending(asyncio.Semaphore(self.concurrency), self.clock() + self.lease / 3)
        self._draining = sending if wake is not None else None
        try:
            self._start_handed(sending)
            if claim:
                await self._claim(sending, self.batch, wake)
            while sending.running:
                if self._sender.stopping:
                    await self._sender.settled()  # the rest wait for a turn: none is sent
                    break
                finished = await self._finished(sending, wake)
                self._start_handed(sending)
                await self._renew_if_due(sending)
                room = self.batch - len(sending.running)
                woken = wake is not None and wake.is_set()
                if woken or any(m.priority >= outbox.REPLY for m in finished):
                    # something may be urgent: claim it even if the batch is in flight,
                    # up to twice the batch at most
                    extra = min(URGENT_ROOM, room + self.batch)
                    await self._claim(sending, max(room, extra), wake)
                elif sending.claimed and (
                    not sending.running or (sending.full and room >= self.batch // 2)
                ):
                    await self._claim(sending, room, wake)
        except Exception:  # a claim failed: the sends under way still go (cut off, they
            self._draining = None  # would go again after their lease)
            await asyncio.gather(*sending.running, return_exceptions=True)
            raise
        finally:
            self._draining = None
            await sending.cancel()
        return sending.report

    async def _claim(
        self, sending: _Sending, limit: int, wake: asyncio.Event | None = None
    ) -> None:
        """Claim up to `limit` due messages and start sending each."""
        if limit <= 0 or self._sender.stopping:
            return
        if self.before_claim is not None:
            try:
                await self.before_claim()  # a digest whose window closed is claimed now
            except Exception as exc:  # held notices still go alone after their fallback
                log.error("folding alert digests failed (%s)", type(exc).__name__)
        if wake is not None:
            wake.clear()  # what it announced is due now: this claim sees it
        async with self.db.transaction() as session:
            claimed = await Repository(session).claim_outbox(self.clock(), limit, self.lease)
            edits = await edit_targets(session, claimed)
        sending.full, sending.claimed = len(claimed) == limit, True
        self._not_begun.hold(claimed)
        for line in _lines(claimed):  # most urgent first: they reach the pacer in this order
            task = asyncio.create_task(self._line(line, edits, sending.gate))
            sending.running[task] = line

    def _start_handed(self, sending: _Sending) -> None:
        """Start sending what turns handed over (their leases are renewed with the rest)."""
        if self._sender.stopping:  # they wait under their leases, as claimed rows do
            return
        handed, self._handed = self._handed, []
        self._arrived.clear()
        for line, edits in handed:
            task = asyncio.create_task(self._line(line, edits, sending.gate))
            sending.running[task] = line
            sending.handed.add(task)

    async def _line(
        self, line: list[Outgoing], edits: Mapping[int, str | None], gate: asyncio.Semaphore
    ) -> Report:
        """Send one recipient's messages in order; stop at one not sent (nor given up on).
        The rest of the line is handed back when it is to be retried (they follow it at its
        retry); otherwise (a lease about to end) they keep the lease and wait it out.

        The sends that went are recorded together when the line ends, in one transaction:
        the next message leaves without waiting for the last one's commit. A crash before
        that commit sends them all again when their leases run out (at least once, still
        in order); the window for that grows by the provider's answer to the next message,
        half a second at most (`Sender.meanwhile`). A line that fails or is cancelled
        still records what went."""
        report, held = Report(), list[Sent]()
        try:
            for n, message in enumerate(line):
                sending = self._one(message, edits, gate, held)
                outcome = await self._sender.meanwhile(sending, held)
                report += outcome
                if outcome.sent or outcome.dead:
                    continue
                rest = line[n + 1 :]
                if outcome.retried and rest and rest[0].lease_until is not None:
                    await leases.hand_back_rest(self.db, rest, rest[0].lease_until)
                break
        except (Exception, asyncio.CancelledError):
            with contextlib.suppress(Exception):
                await self._sender.record(held)
            raise
        finally:
            if not self._sender.stopping:  # stopping: what is left is handed back then
                self._not_begun.forget(line)
        await self._sender.record(held)
        return report

    async def _one(
        self,
        message: Outgoing,
        edits: Mapping[int, str | None],
        gate: asyncio.Semaphore,
        held: list[Sent],
    ) -> Report:
        # the send slot first, then a place among the sends unsettled, then one at the
        # gate: a message waiting for its chat's allowance must not hold a place other
        # chats could use. The pacer serves the most urgent first; the places after it
        # are a queue in order (taken first, an alert queued behind a wave waited for
        # every routine send before it). A send waiting for the database to catch up
        # holds its slot of the limit: the limit is not what holds it up then.
        send = self._sender
        pacer = self.pacers.get(message.channel)
        if pacer is None:
            async with send.place() as place, Call(gate) as call:
                return await send.send(message, self.channels, edits, call.release, held, place)
        chat = f"{message.recipient_kind}:{message.recipient_id}"  # one name in every worker
        priority = pacing_priority(message)
        async with (
            pacer.turn(chat, priority) as answered,
            send.place() as place,
            Call(gate) as call,
        ):

            def done() -> None:  # the gate is for provider calls: recording needs none
                answered()
                call.release()

            return await send.send(message, self.channels, edits, done, held, place)

    async def hand_back_unsent(self) -> int:
        """Once the courier has stopped: queue again the messages leased to this process
        whose send never began (claimed, handed over, or behind a send in their line), so
        another worker or the next process sends them at once instead of after their
        lease; how many (see :class:`bot.app.outbox.leases.NotBegun`)."""
        self._handed = []  # not ours to send any more
        self._arrived.clear()
        return await self._not_begun.hand_back(self.db)

    async def _finished(self, sending: _Sending, wake: asyncio.Event | None) -> list[Outgoing]:
        """Wait until a line is done, `wake` or `stop` is set, something is handed over or
        the leases are due for renewal; the claimed messages done (not the handed ones)."""
        waiting: set[asyncio.Future[Any]] = set(sending.running)
        watch = self._watch or Watch()  # (the courier's, while one runs)
        events = watch.of((self._arrived, wake, self._sender.stop))
        until_renewal = (sending.renew_at - self.clock()).total_seconds()
        try:
            done, _ = await asyncio.wait(
                waiting | events,
                timeout=max(0.01, until_renewal),
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            if watch is not self._watch:
                watch.close()
        finished = []
        for task in [t for t in sending.running if t in done]:
            line = sending.running.pop(task)
            if task not in sending.handed:
                finished += line
            sending.handed.discard(task)
            if task.cancelled() or task.exception() is not None:
                # recording the outcome failed (the channel's own errors are recorded by
                # the sender): the lease runs out and the message is sent again
                problem = "cancelled" if task.cancelled() else type(task.exception()).__name__
                log.error("outbound %s failed unexpectedly (%s)", line[0].id, problem)
                continue
            sending.report += task.result()
        return finished

    async def _renew_if_due(self, sending: _Sending) -> None:
        """Every third of a lease, extend the leases of the messages still in flight."""
        now = self.clock()
        if now >= sending.renew_at and sending.running:
            sending.renew_at = now + self.lease / 3
            await leases.renew(self.db, sending.running.values(), now, self.lease)


@dataclass
class _Sending:
    """One drain's sends in flight (a task each, with its message) and their outcomes."""

    gate: asyncio.Semaphore  # at most `concurrency` provider calls at once
    renew_at: datetime  # when the leases of what is in flight are extended next
    running: dict[asyncio.Future[Report], list[Outgoing]] = field(default_factory=dict)
    report: Report = field(default_factory=Report)
    full: bool = False  # the last claim took all it asked for: more may be due
    claimed: bool = False  # this drain has claimed (else it only sends what was handed over)
    handed: set[asyncio.Future[Report]] = field(default_factory=set)  # lines handed over

    async def cancel(self) -> None:
        """Stop what is still in flight (the drain was cancelled or failed): those
        messages' leases run out and they are sent later."""
        for task in self.running:
            task.cancel()
        await asyncio.gather(*self.running, return_exceptions=True)


def _lines(messages: Sequence[Outgoing]) -> list[list[Outgoing]]:
    """One line per recipient, each in id order, in the order of their first message."""
    lines: dict[tuple[str, int], list[Outgoing]] = {}
    for message in messages:
        lines.setdefault((message.recipient_kind, message.recipient_id), []).append(message)
    return [sorted(line, key=lambda m: m.id or 0) for line in lines.values()]


async def deliver_when_woken(
    deliverer: Deliverer, wake: asyncio.Event, stop: asyncio.Event
) -> None:
    """Drain the outbox each time `wake` is set, until `stop`: the webhook process sends a
    reply the moment it is committed. Safe beside the tick and other workers (claims are
    leased); a failed drain is logged and left to the tick. Meanwhile turns of this
    process hand their rows over (`Deliverer.take`) and they are sent without a claim.
    Once `stop` is set it returns when the sends under way are settled (or is cancelled)."""
    await deliverer.courier(wake, stop)

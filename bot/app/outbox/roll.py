"""Whether this worker may pace itself alone, or must share the send limit with others.

:class:`Roll` keeps this process on the database's roll of senders
(bot/storage/send_roll.py, which says how it stays safe) and answers, before each send of a
:class:`~bot.app.outbox.shared_pacing.SharedPacer`, one question: alone (the in-process
pacer is the whole limit: no statement for the send) or shared (take a place and a token
from the database). A worker alone on its database, the usual deployment, so sends
with two statements fewer each.

Beats run in the background about once a second from the first send on, so a worker that
is running stays on the roll while it waits for patients. A send asks nothing of the
database unless the last beat's answer has run out (`valid_s` after it was sent, by a
clock that also counts a suspended host): then it waits for a beat. The sends it allows
alone are counted until their answers (`answered()`): while any is out, its beats keep its
time alone open, so a slow answer is waited for. A worker that joins a database where
another sends alone waits until that one has seen it and has no answer still to come,
then `settle_s` more: a few seconds, once per start.

What is not covered: this process's event loop stalling for longer than `valid_s`
between allowing a send alone and the send leaving (no beat runs meanwhile, so another
worker may have started sharing). The send then leaves late and unrecorded, and the
provider may refuse it (429: retried after its Retry-After, nothing lost). A send that
waits with the loop running (the provider call gate full, a slow answer) is covered: the
beats go on, and keep this worker's time alone open.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Protocol

from bot.storage.send_roll import Beat

log = logging.getLogger(__name__)

BEAT_S = 1.0  # a running worker beats this often
VALID_S = 3.0  # a beat's answer holds this long (a few beats may fail or come late)


def _boot_clock() -> float:
    """Seconds on a clock that also counts a suspended host (Linux's CLOCK_BOOTTIME; the
    monotonic clock elsewhere): a worker frozen past its answer's validity knows it."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)


CLOCK: Callable[[], float] = _boot_clock if hasattr(time, "CLOCK_BOOTTIME") else time.monotonic


class Beats(Protocol):
    """The roll's storage (`bot.storage.send_roll.SendRoll`)."""

    @property
    def valid_s(self) -> float: ...

    @property
    def settle_s(self) -> float: ...

    @property
    def beat_s(self) -> float: ...

    async def beat(self, worker: str, holding: bool) -> Beat: ...

    async def leave(self, worker: str) -> None: ...


class Roll:
    """This process on the roll of senders; `alone()` before each shared send, and
    `answered()` when a send it allowed alone has its answer."""

    def __init__(
        self,
        beats: Beats,
        *,
        monotonic: Callable[[], float] = CLOCK,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.worker = uuid.uuid4().hex
        self._beats = beats
        self.settle_s = beats.settle_s
        self._monotonic, self._sleep = monotonic, sleep
        self._valid_until = float("-inf")  # the last answer holds until then
        self._alone = False
        self._shared_from = float("inf")  # shared sends may leave from then
        self._in_flight = 0  # sends allowed alone, not answered yet
        self._beating: asyncio.Task[None] | None = None  # the beat under way
        self._loop: asyncio.Task[None] | None = None  # the background beats
        self._closed = False
        self._failing = False  # the last beat failed (logged once)

    async def alone(self) -> bool:
        """True: this send needs only the in-process pacer (call `answered()` once it is
        answered). False: it must take its place and token from the database, which now
        counts every other worker's sends (this waits, the first time, for a worker that
        was alone to have stopped). Stopped, always False: the shared path is never
        wrong."""
        self._start()
        while not self._closed:
            now = self._monotonic()
            if now < self._valid_until:
                if self._alone:
                    self._in_flight += 1
                    return True
                if now >= self._shared_from:
                    return False
                await self._sleep(min(self._shared_from, self._valid_until) - now)
                continue
            await self._beat_now()
        return False

    def answered(self) -> None:
        """A send `alone()` allowed has its answer (or failed): it no longer holds this
        worker's time alone open."""
        self._in_flight -= 1

    def _start(self) -> None:
        if self._loop is None and not self._closed:
            self._loop = asyncio.create_task(self._keep_beating())

    async def _keep_beating(self) -> None:
        while True:
            with contextlib.suppress(Exception):  # (logged by `_beat`; the next one tries)
                await self._beat_now()
            await self._sleep(self._beats.beat_s)

    async def _beat_now(self) -> None:
        """One beat at a time: a caller finding one under way waits for it."""
        if self._beating is None or self._beating.done():
            self._beating = asyncio.create_task(self._beat())
            self._beating.add_done_callback(_retrieved)
        await asyncio.shield(self._beating)

    async def _beat(self) -> None:
        sent = self._monotonic()
        holding = self._alone or self._in_flight > 0  # (as the beat begins: see send_roll)
        try:
            beat = await self._beats.beat(self.worker, holding)
        except Exception as exc:
            if not self._failing:  # once, not every second of an outage
                log.warning("send roll: beats are failing (%s)", type(exc).__name__)
            self._failing = True
            raise
        if self._failing:
            log.info("send roll: beating again")
            self._failing = False
        answered = self._monotonic()
        if self._closed:
            return  # (stopped meanwhile: it stays shared)
        if beat.alone != self._alone:
            log.info("send roll: %s", "alone: pacing in-process" if beat.alone else "sharing")
        self._alone = beat.alone
        # alone until `valid_s` from the beat's start (its database time is later); shared
        # sends from `settle_s` after the others' time alone, counted from the answer
        self._valid_until = sent + self._beats.valid_s
        self._shared_from = answered + beat.shared_wait_s(self.settle_s)

    async def close(self) -> None:
        """Stop beating and leave the roll (the others need not wait for us to run out).
        From now on every send is shared."""
        self._closed, self._alone, self._valid_until = True, False, float("-inf")
        if self._loop is not None and not self._loop.done():
            self._loop.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._loop
        if self._beating is not None:  # (a statement: let it end rather than cut it)
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.shield(self._beating)
        if self._loop is not None:
            with contextlib.suppress(Exception):
                await self._beats.leave(self.worker)


def _retrieved(task: asyncio.Task[None]) -> None:
    """A beat's failure is logged by `_beat` and raised to whoever waits for it; none may
    be waiting (all cancelled): then it is read here, not reported as never retrieved."""
    if not task.cancelled():
        task.exception()

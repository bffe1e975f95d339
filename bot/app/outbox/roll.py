"""Whether this worker may pace itself alone, or must share the send limit with others.

:class:`Roll` keeps this process on the database's roll of senders
(bot/storage/send_roll.py, which says how it stays safe) and answers, before each send of a
:class:`~bot.app.outbox.shared_pacing.SharedPacer`, one question: alone (the in-process
pacer is the whole limit: no statement for the send) or shared (take a place and a token
from the database). A worker alone on its database, the usual deployment, so sends
with two statements fewer each.

Beats run in the background about once a second from the first send on, so a worker that
is running stays on the roll while it waits for patients. A send asks nothing of the
database unless the last beat's answer has run out (`valid_s` after it was sent, by this
process's monotonic clock): then it waits for a beat. A worker that joins a database where
another sends alone waits until that one has seen it (its next beat) and `settle_s` more,
a few seconds once per start.
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


def live_s(settle_s: float) -> float:
    """How long a worker stays live after its last beat (see bot/storage/send_roll.py)."""
    return VALID_S + settle_s + BEAT_S


class Beats(Protocol):
    """The roll's storage (`bot.storage.send_roll.SendRoll`)."""

    async def beat(self, worker: str) -> Beat: ...

    async def leave(self, worker: str, linger_s: float) -> None: ...


class Roll:
    """This process on the roll of senders; `alone()` before each shared send."""

    def __init__(
        self,
        beats: Beats,
        settle_s: float,
        *,
        beat_s: float = BEAT_S,
        valid_s: float = VALID_S,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.worker = uuid.uuid4().hex
        self.settle_s = settle_s
        self._beats, self._beat_s, self._valid_s = beats, beat_s, valid_s
        self._monotonic, self._sleep = monotonic, sleep
        self._valid_until = float("-inf")  # the last answer holds until then
        self._alone = False
        self._shared_from = float("inf")  # shared sends may leave from then
        self._beating: asyncio.Task[None] | None = None  # the beat under way
        self._loop: asyncio.Task[None] | None = None  # the background beats
        self._closed = False
        self._failing = False  # the last beat failed (logged once)

    async def alone(self) -> bool:
        """True: this send needs only the in-process pacer. False: it must take its place
        and token from the database, which now counts every other worker's sends (this
        waits, the first time, for a worker that was alone to have stopped)."""
        self._start()
        while True:
            now = self._monotonic()
            if now < self._valid_until:
                if self._alone:
                    return True
                if now >= self._shared_from:
                    return False
                await self._sleep(min(self._shared_from, self._valid_until) - now)
                continue
            await self._beat_now()

    def _start(self) -> None:
        if self._loop is None and not self._closed:
            self._loop = asyncio.create_task(self._keep_beating())

    async def _keep_beating(self) -> None:
        while True:
            with contextlib.suppress(Exception):  # (logged by `_beat`; the next one tries)
                await self._beat_now()
            await self._sleep(self._beat_s)

    async def _beat_now(self) -> None:
        """One beat at a time: a caller finding one under way waits for it."""
        if self._beating is None or self._beating.done():
            self._beating = asyncio.create_task(self._beat())
        await asyncio.shield(self._beating)

    async def _beat(self) -> None:
        sent = self._monotonic()
        try:
            beat = await self._beats.beat(self.worker)
        except Exception as exc:
            if not self._failing:  # once, not every second of an outage
                log.warning("send roll: beats are failing (%s)", type(exc).__name__)
            self._failing = True
            raise
        if self._failing:
            log.info("send roll: beating again")
            self._failing = False
        answered = self._monotonic()
        if beat.alone != self._alone:
            log.info("send roll: %s", "alone: pacing in-process" if beat.alone else "sharing")
        self._alone = beat.alone
        # alone until `valid_s` from the beat's start (its database time is later); shared
        # sends from `settle_s` after the others' time alone, counted from the answer
        self._valid_until = sent + self._valid_s
        self._shared_from = answered + beat.shared_wait_s(self.settle_s)

    async def close(self) -> None:
        """Stop beating and leave the roll (the others need not wait for us to run out)."""
        self._closed = True
        for task in (self._loop, self._beating):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if self._loop is not None:
            with contextlib.suppress(Exception):
                await self._beats.leave(self.worker, self.settle_s)
        self._valid_until = float("-inf")

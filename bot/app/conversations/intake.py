"""Inbound messages from a provider that will not send them again (Twilio SMS): spooled
durably first, answered at once, moved into the inbox and processed after.

* :meth:`Intake.accept` appends the message to the spool (a local file, fsynced) in a
  thread, so the event loop keeps serving; the webhook answers as soon as it returns.
  It never touches the database: an outage or a locked SQLite file cannot lose the
  message, and a burst cannot make the webhook wait behind other writers.
* :meth:`Intake.drain` moves the spool into the inbox in the order it was written (the
  inbox drops a ``MessageSid`` it already has, so a provider's repeat and a drain read
  twice after a crash record nothing), then processes what it recorded. When the
  database is away it stops at the first message it cannot record and leaves the rest
  for the next drain. The tick drains, and in the web process a task drains as soon as
  the webhook wakes it (`drain_when_woken`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from bot.app.conversations.inbox import Inbound, Inbox
from bot.app.ports import InboundSpool
from bot.storage.spool import Mark, Spooled, SpoolStatus

log = logging.getLogger(__name__)
DRAIN_BATCH = 200  # records read from the spool at a time


@dataclass(frozen=True)
class Intake:
    inbox: Inbox
    spool: InboundSpool
    _draining: asyncio.Lock = field(default_factory=asyncio.Lock, compare=False, repr=False)

    async def accept(self, inbound: Inbound) -> bool:
        """Durable when True; False when the spool is full (nothing was kept)."""
        message = Spooled(
            inbound.channel, inbound.provider_id, inbound.sender, inbound.text,
            inbound.received_at, inbound.kind,
        )  # fmt: skip
        return await asyncio.to_thread(self.spool.append, message)

    async def status(self) -> SpoolStatus:
        return await asyncio.to_thread(self.spool.status)

    async def drain(self) -> int:
        """Move every spooled message into the inbox and process it; how many were moved.
        One drain at a time in a process: while one runs (it reads to the end of the
        spool), another returns 0 at once, so a tick never waits behind a burst. Across
        processes a message may be read twice; the inbox drops the second."""
        if self._draining.locked():
            return 0
        async with self._draining:
            return await self._drain()

    async def _drain(self) -> int:
        moved = 0
        while batch := await asyncio.to_thread(self.spool.pending, DRAIN_BATCH):
            recorded, upto = await self._record(batch)
            if upto is not None:
                await asyncio.to_thread(self.spool.consume, upto)
            moved += len(recorded)
            for inbound_id in recorded:
                await self._process(inbound_id)
            if upto != batch[-1][0]:
                break  # the database is away: the rest waits for the next drain
        return moved

    async def _record(
        self, batch: list[tuple[Mark, Spooled | None]]
    ) -> tuple[list[int], Mark | None]:
        """Record `batch` in order; the new inbox ids, and the position recorded up to."""
        recorded: list[int] = []
        upto: Mark | None = None
        for position, message in batch:
            if message is not None:
                try:
                    inbound_id = await self.inbox.receive(_inbound(message))
                except Exception as exc:
                    log.warning("spool: the inbox cannot record yet (%s)", type(exc).__name__)
                    break
                if inbound_id is not None:
                    recorded.append(inbound_id)
            upto = position
        return recorded, upto

    async def _process(self, inbound_id: int) -> None:
        try:
            await self.inbox.process(inbound_id)
        except Exception as exc:  # recorded: the tick's recovery pass takes it over
            log.error("inbound %s left for recovery (%s)", inbound_id, type(exc).__name__)


async def drain_when_woken(
    intake: Intake, wake: asyncio.Event, stop: asyncio.Event, then: Callable[[], None]
) -> None:
    """Drain whenever `wake` is set, until `stop` is, and call `then` (wake the courier)
    after a drain that moved messages; a failed drain is logged, and the next wake (or
    tick) tries again."""
    while not stop.is_set():
        await wake.wait()
        wake.clear()
        try:
            if await intake.drain():
                then()
        except Exception as exc:
            log.error("spool drain failed (%s); the next tick tries again", type(exc).__name__)


def _inbound(message: Spooled) -> Inbound:
    return Inbound(
        message.channel, message.provider_id, message.sender, message.text, message.received_at,
        message.kind,
    )  # fmt: skip

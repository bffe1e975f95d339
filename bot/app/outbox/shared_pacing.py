"""One send limit for every worker on one PostgreSQL database.

Each worker keeps its own :class:`~bot.app.outbox.pacing.Pacer` (its sends' order, most
urgent first, and its own share of the window) and, before a send leaves, also takes a
place from the channel's shared window and a token from the chat's shared bucket
(:mod:`bot.storage.send_allowance`); both are given back, by the database's clock, when
the provider answers. So two workers, or four, together keep to the provider's 30 a
second and to each chat's allowance, as one does alone.

Why a shared bucket and not a lease that makes one worker the sender of a channel: every
worker keeps sending what it committed itself, so the reply to a patient leaves from the
process that took the patient's message, at once, with no hand-over to another process
and no wake-up across processes; a worker that dies takes nothing with it but the place
and the token of the send it was making, which free themselves after ``hold_s`` (the
outbox's send lease). The price is two round trips to the database per send, each one
statement with no transaction around it: before, the chat's bucket read and a place taken
together (so a freed place is retaken one round trip later); after, both given back.

A worker alone on the database (bot/app/outbox/roll.py: the roll of senders says so)
takes nothing from it: its own pacer is then the whole limit, and a send costs no
statement. The tables count again from the moment a second worker joins; the newcomer
waits until what the first sent alone has left the window and the chats' buckets.

Within one worker the shared places are asked for one send at a time, most urgent
first, so a worker's crisis message is its next send; a send whose chat has spent its
allowance at another worker steps aside while it waits, so the others ask meanwhile. A
chat's next send from the same worker (an answer's edit, then the next question) first
waits for the previous send's release, which unmarks the chat, instead of being refused.
Across workers, places go to whoever asks first once one frees.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from bot.app.outbox.pacing import Pacer, PriorityLock
from bot.app.outbox.roll import Roll
from bot.storage.send_allowance import SendAllowance, Taken

log = logging.getLogger(__name__)
POLL_S = 0.05  # longest sleep before asking again: a place frees when any send is answered
# what a send takes when this worker sends alone (bot.app.outbox.roll): nothing
ALONE = Taken(None, None, 0.0)


class SharedPacer:
    """A `Pacer` whose limits hold across every worker of one database (see the module)."""

    def __init__(
        self,
        local: Pacer,
        allowance: SendAllowance,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        roll: Roll | None = None,
    ) -> None:
        self.local = local
        self.allowance = allowance
        self.roll = roll  # None: always shared (tests of the shared path itself)
        self._sleep = sleep
        self._asking = PriorityLock()
        self._prepared = False
        self._releases: set[asyncio.Task[None]] = set()
        self._releasing: dict[str, asyncio.Task[None]] = {}  # a chat's release under way

    @contextlib.asynccontextmanager
    async def turn(self, address: str, priority: int = 0) -> AsyncIterator[Callable[[], None]]:
        """As :meth:`Pacer.turn`; `address` names the chat to every worker (a recipient)."""
        async with self.local.turn(address, priority) as local_answered:
            taken = await self._take(address, priority)
            answered = False

            def done() -> None:
                nonlocal answered
                if answered:
                    return
                answered = True
                local_answered()
                if taken is ALONE:
                    assert self.roll is not None
                    self.roll.answered()  # nothing was taken from the database
                    return
                at = time.monotonic()
                task = asyncio.create_task(self._release(taken, lambda: time.monotonic() - at))
                self._releases.add(task)
                task.add_done_callback(self._releases.discard)
                if taken.chat is not None:
                    self._releasing[taken.chat] = task
                    task.add_done_callback(lambda t: self._forget(address, t))

            try:
                yield done
            finally:
                done()

    async def _take(self, chat: str, priority: int) -> Taken:
        if self.roll is not None and await self.roll.alone():
            return ALONE  # the only worker sending: the local pacer is the whole limit
        if not self._prepared:
            await self.allowance.prepare()
            self._prepared = True
        # the chat's last send from here is marked held until its release lands: wait for
        # that (a round trip) rather than be refused and poll (a statement and up to POLL_S)
        if (releasing := self._releasing.get(chat)) is not None:
            await asyncio.wait({releasing})
        while True:
            async with self._asking.held(priority):  # one asker a worker, most urgent first
                while True:
                    answer = await self.allowance.take(chat)
                    if isinstance(answer, Taken):
                        return answer
                    if answer.chat:  # spent at another worker: let the others ask
                        break
                    # (at least a millisecond: a place another worker is taking right now
                    # counts as free until its statement ends)
                    await self._sleep(max(0.001, min(answer.wait_s, POLL_S)))
            await self._sleep(min(answer.wait_s, POLL_S))

    def _forget(self, chat: str, task: asyncio.Task[None]) -> None:
        if self._releasing.get(chat) is task:
            del self._releasing[chat]

    async def _release(self, taken: Taken, ago: Callable[[], float]) -> None:
        try:
            await self.allowance.release(taken, ago)
        except Exception as exc:  # the place and the token free themselves after hold_s
            log.warning("could not release a send place (%s)", type(exc).__name__)

    async def close(self) -> None:
        """Wait for the releases still under way (a clean stop gives places back)."""
        if self._releases:
            await asyncio.gather(*self._releases, return_exceptions=True)

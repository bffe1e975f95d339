"""Pacing: how fast sends may leave for a provider, and how many at once to one address.

The :class:`Pacer` keeps a channel's rate (a sliding window, counted from when a send
leaves until after it is answered) and a burst allowance per chat (:class:`ChatAllowance`);
waiters for a slot are served most urgent first. :mod:`bot.app.outbox.delivery` takes a
turn here for each send. Several workers on one PostgreSQL database share both limits
through :mod:`bot.app.outbox.shared_pacing`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import heapq
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Protocol

URGENT_STORM = 5  # urgent sends within the last window that make a storm of them
URGENT_FORMING = 10  # ... or one, with this many turns under way that may send more
URGENT_GRACE_S = 0.2  # in a storm, after an urgent send took a place, others wait this long
URGENT_DEFERRAL_S = 2.0  # ... but never longer than this in all
# The share of a window's places spaced sends leave to replies while replies flow: fifty
# patients answering every few seconds reply about nine times a second, and their edits,
# spaced, filled the window's last places before the next questions (p99 221 ms).
REPLY_RESERVE_SHARE = 1 / 3


class Pacing(Protocol):
    """What delivery needs of a pacer: a turn per send (`Pacer`, `SharedPacer`)."""

    def turn(
        self, address: str, priority: int = 0
    ) -> AbstractAsyncContextManager[Callable[[], None]]: ...


class ChatAllowance:
    """A token bucket for one chat, kept as the time its bucket is next full (GCRA).

    Up to `burst` sends may leave at once (the edit of a question and the next question,
    or the crisis message and the next question, answer a patient who just wrote); after
    that one more every ``1 / rate_per_s`` seconds, so a sustained flow averages at most
    `rate_per_s`. `due` ("theoretical arrival time") moves on by one interval per send,
    counted from the provider's *answer*: the provider counts a request somewhere between
    leaving and the answer, so counting from the answer can only be stricter than the
    provider's own bucket. Pure: time is an argument.
    """

    def __init__(self, rate_per_s: float, burst: int) -> None:
        self.interval = 1.0 / rate_per_s
        self.tolerance = (burst - 1) * self.interval
        self.due = float("-inf")

    def wait_s(self, now: float) -> float:
        """How long a send to this chat must wait from `now` (0: it may leave)."""
        return max(0.0, self.due - self.tolerance - now)

    def answered(self, at: float) -> None:
        """A send to this chat was answered at `at`: one token spent."""
        self.due = max(self.due, at) + self.interval


class Pacer:
    """At most `rate_per_s` sends a second on a channel, and per chat a burst of
    `per_chat_burst` then `per_chat_rate_per_s` (None: no per-chat limit).

    A provider counts requests when they arrive, and we only know that a request arrived
    somewhere between leaving and its answer. So a send holds its place in the sliding
    `window_s` from the moment it leaves until `window_s` after it is answered: no more
    than ``rate_per_s * window_s`` sends can then ever arrive within one window, however
    the network or a busy event loop delays them (a cold connection alone was seen to
    make a request arrive 27 ms late and draw a 429). The price is one round trip a
    window: on a local provider about 1 %, against a provider 100 ms away about 9 %.
    Routine sends are also spaced ``1 / rate_per_s`` apart, so a wave does not leave as a
    burst that fills the window and holds everything else for a second; sends of
    `unspaced_from` priority and above (replies and urgent messages) need only a free
    place, so fifty crisis messages at once take the window's thirty places at once
    instead of one every 1/30 s (python-telegram-bot's own AIORateLimiter lets a whole
    second's worth go at once too). The window still holds the count. While replies flow
    (one left within the last window), spaced sends leave `reply_reserve_share` of the
    window's places free for them, and wait for room in a queue of their own, not holding
    the channel's lock: a patient's next question never waits behind another patient's
    edit or a wave's reminder. With no reply in the last window they may fill it, so a
    wave alone still goes at the full rate.

    A chat's allowance is waited for before taking a channel slot, so a chat that spent
    its burst never holds up the others. Two sends to one address go one after the other.

    In-process; :class:`bot.app.outbox.shared_pacing.SharedPacer` adds the limits shared
    by every worker on one PostgreSQL database. Time and sleeping are injectable so the
    schedule is tested without waiting.
    """

    def __init__(
        self,
        rate_per_s: float | None = None,
        per_chat_rate_per_s: float | None = None,
        per_chat_burst: int = 1,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        window_s: float = 1.0,
        unspaced_from: int | None = None,
        urgent_from: int | None = None,
        reply_reserve_share: float = 0.0,
        coming: Callable[[], int] = lambda: 0,
    ) -> None:
        self.interval = 1.0 / rate_per_s if rate_per_s else 0.0
        self.unspaced_from = unspaced_from
        self.urgent_from = urgent_from
        self.coming = coming  # turns under way: urgent sends that may follow (`Underway`)
        self._urgent: collections.deque[float] = collections.deque()  # when urgent sends left
        self.per_chat_rate_per_s = per_chat_rate_per_s
        self.per_chat_burst = per_chat_burst
        self.window_s = window_s
        # (the epsilon: 30 * 1.0 must be 30, not 29 after rounding)
        self.per_window = max(1, int(rate_per_s * window_s + 1e-9)) if rate_per_s else 0
        self._monotonic = monotonic
        self._sleep = sleep
        self._next = 0.0
        self._slots = PriorityLock()
        self._spaced = PriorityLock()  # spaced sends beside replies queue here first
        self.reply_reserve = int(self.per_window * reply_reserve_share)
        self._replied_at = float("-inf")  # when a reply (an unspaced send) last left
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
                await self._allowed(chat)
                flying = await self._take_slot(priority)
                answered = False

                def done() -> None:
                    nonlocal answered
                    if answered:
                        return
                    answered = True
                    end = self._monotonic()
                    if chat.allowance is not None:
                        chat.allowance.answered(end)
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

    async def _allowed(self, chat: _Chat) -> None:
        if chat.allowance is None:
            return
        # (a microsecond's slack, as below: a sleep may end a hair early)
        while (delay := chat.allowance.wait_s(self._monotonic())) > 1e-6:
            await self._sleep(delay)

    async def _take_slot(self, priority: int) -> object | None:
        """Wait for the channel's next slot and a free place in the window; take both.
        Sends waiting for a slot are served highest `priority` first, then in turn."""
        await self._behind_urgent(priority)
        if self._unspaced(priority) or self.unspaced_from is None or not self.per_window:
            async with self._slots.held(priority):
                return await self._waited_slot(priority)
        # A spaced send beside replies: it waits for its slot and for room beyond the
        # replies' reserve holding its own queue's lock only, so a reply never finds the
        # channel's lock held by a routine send that is waiting for room kept for replies.
        async with self._spaced.held(priority):
            while True:
                await self._room(priority)
                async with self._slots.held(priority):
                    now = self._monotonic()
                    if now >= self._next - 1e-6 and self._free_places(now) > self._kept(now):
                        return self._took(now, priority)

    async def _waited_slot(self, priority: int) -> object | None:
        while True:
            now = self._monotonic()
            if now < self._next and not self._unspaced(priority):
                await self._sleep(self._next - now)
                continue
            if not self.per_window:
                self._next = self._following(now)
                return None
            # (a microsecond's slack: a sleep may end a hair early, and must not spin)
            if self._free_places(now) > 0:
                return self._took(now, priority)
            await self._a_place_frees(now)

    async def _room(self, priority: int) -> None:
        """Wait until a spaced send's slot has come and the window has a place beyond the
        ones kept for replies (`reply_reserve`, while replies are flowing)."""
        while True:
            now = self._monotonic()
            if now < self._next:
                await self._sleep(self._next - now)
                continue
            kept = self._kept(now)
            if self._free_places(now) > kept:
                return
            if kept and self._closing:  # a place frees, or replies stop: whichever first
                lapse = self._replied_at + self.window_s
                await self._sleep(max(0.0, min(self._closing[0], lapse) - now))
            else:
                await self._a_place_frees(now)

    async def _a_place_frees(self, now: float) -> None:
        if self._closing:  # answered sends free their places first
            await self._sleep(self._closing[0] - now)
        else:  # every place is in flight: wait for any answer, then look again
            self._an_answer.clear()
            await self._an_answer.wait()

    def _took(self, now: float, priority: int) -> object:
        """Take a place at `now` for a send of `priority` (it may leave)."""
        if self._unspaced(priority):
            self._replied_at = now
        else:
            # only spaced sends move the schedule: a burst of replies pushed the next
            # slot a thirtieth of a second on for each, and the edit or routine send
            # that then slept for it held the slot lock, and every reply behind it
            self._next = self._following(now)
        if self.urgent_from is not None and priority >= self.urgent_from:
            self._urgent.append(now)
            self._forget_urgent(now)
        flying = object()
        self._flying.append(flying)
        return flying

    def _kept(self, now: float) -> int:
        """Places a spaced send must leave free at `now`: the replies' reserve while they
        flow (one left within the last window), else none."""
        return self.reply_reserve if now - self._replied_at < self.window_s else 0

    async def _behind_urgent(self, priority: int) -> None:
        """In a storm of urgent sends (one less than URGENT_GRACE_S ago, and URGENT_STORM
        or more within the last window, or one with URGENT_FORMING turns under way,
        `coming`, that may send more), a less urgent send waits, for at most
        URGENT_DEFERRAL_S: the window's places are few (30 a second), and fifty crisis
        messages at once need every one of them, while the edits and next questions of
        the same turns can follow a second later. A lone crisis holds no one up: at a
        patient's pace ten turns are seldom under way at once (with four, a crisis turn
        now and then held its next question 0.2 s, and fifty chats' p99 was 16x the
        echo's instead of 2-4x). Waiting happens outside the slot lock,
        so urgent sends pass the waiters. (Waiting only once the window is two thirds
        full was tried: fifty crisis turns then filled the first second with their next
        questions, and the last crisis messages went a second later, 3.2 s instead of
        2.2 s. Counting only the urgent sends that went let the first four crisis turns'
        next questions through before the storm was seen: with the five clinicians'
        first alerts and digests, 65 messages against the two windows' 60 places, and
        the digests went in the third.)"""
        if self.urgent_from is None or priority >= self.urgent_from or not self.per_window:
            return
        began = self._monotonic()
        while True:
            now = self._monotonic()
            self._forget_urgent(now)
            urgent = len(self._urgent)
            if not urgent or (urgent < URGENT_STORM and self.coming() < URGENT_FORMING):
                return
            if now - began >= URGENT_DEFERRAL_S:
                return
            quiet_at = self._urgent[-1] + URGENT_GRACE_S
            if now >= quiet_at:
                return
            await self._sleep(min(quiet_at, began + URGENT_DEFERRAL_S) - now)

    def _free_places(self, now: float) -> int:
        """Places in the window no send holds at `now`."""
        while self._closing and self._closing[0] <= now + 1e-6:
            self._closing.popleft()
        return self.per_window - len(self._closing) - len(self._flying)

    def _forget_urgent(self, now: float) -> None:
        """Drop urgent sends older than the window (kept short however long a storm)."""
        while self._urgent and self._urgent[0] <= now - self.window_s:
            self._urgent.popleft()

    def _unspaced(self, priority: int) -> bool:
        return self.unspaced_from is not None and priority >= self.unspaced_from

    def _following(self, now: float) -> float:
        """The slot after one taken at `now`. Slots keep to their schedule: sleeps end a
        little late, and spacing each from the last actual leave lost one send a second
        to the drift. A send later than a whole slot lets one more catch up at once."""
        return max(self._next, now - self.interval) + self.interval

    def _chat(self, address: str) -> _Chat:
        chat = self._chats.get(address)
        if chat is None:
            if len(self._chats) >= self._sweep_at:  # forget chats whose bucket is full
                now = self._monotonic()
                self._chats = {a: c for a, c in self._chats.items() if c.users or c.busy(now)}
                self._sweep_at = max(1024, 2 * len(self._chats))
            chat = self._chats[address] = _Chat()
            if self.per_chat_rate_per_s:
                chat.allowance = ChatAllowance(self.per_chat_rate_per_s, self.per_chat_burst)
        return chat


class PriorityLock:
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
    allowance: ChatAllowance | None = None
    users: int = 0

    def busy(self, now: float) -> bool:
        """Its bucket is not yet full again (forgetting it would allow too much)."""
        return self.allowance is not None and self.allowance.due > now

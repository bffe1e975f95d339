"""A provider's send limits, as the Telegram stand-in enforces them when asked to.

    stand_in.limits = ProviderLimits(per_s=30, per_chat_burst=3, per_chat_rate_per_s=1)

Counted when a request arrives (``time.monotonic()`` at the stand-in), over every method
that puts a message in a chat (sends and edits):

* at most `per_s` in any sliding second: more is answered 429 with retry_after 1;
* per chat, a token bucket of `per_chat_burst` refilled at `per_chat_rate_per_s`: a
  request finding no token is answered 429 with the seconds until the next one.

A refused request is not counted. Every accepted one is kept in `accepted` as
(arrival, chat), for the benches and tests that check the limits were never exceeded.
"""

from __future__ import annotations

import collections
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

PACED_METHODS = {"sendmessage", "sendphoto", "editmessagetext", "editmessagereplymarkup"}


@dataclass
class ProviderLimits:
    per_s: int | None = 30
    per_chat_burst: int = 3
    per_chat_rate_per_s: float | None = 1.0
    clock: Callable[[], float] = time.monotonic
    accepted: list[tuple[float, str]] = field(default_factory=list)
    refused: int = 0
    _recent: collections.deque[float] = field(default_factory=collections.deque)
    _chats: dict[str, tuple[float, float]] = field(default_factory=dict)  # tokens, at

    def check(self, method: str, chat: str) -> int | None:
        """None: accepted (and counted); else the retry_after of a 429."""
        if method.lower() not in PACED_METHODS:
            return None
        now = self.clock()
        while self._recent and now - self._recent[0] >= 1.0:
            self._recent.popleft()
        if self.per_s is not None and len(self._recent) >= self.per_s:
            self.refused += 1
            return 1
        tokens = self._tokens(chat, now)
        if tokens < 1.0 - 1e-9:
            self.refused += 1
            assert self.per_chat_rate_per_s is not None
            return max(1, math.ceil((1.0 - tokens) / self.per_chat_rate_per_s))
        if self.per_chat_rate_per_s is not None:
            self._chats[chat] = (tokens - 1.0, now)
        self._recent.append(now)
        self.accepted.append((now, chat))
        return None

    def _tokens(self, chat: str, now: float) -> float:
        if self.per_chat_rate_per_s is None:
            return float(self.per_chat_burst)
        tokens, at = self._chats.get(chat, (float(self.per_chat_burst), now))
        return min(float(self.per_chat_burst), tokens + (now - at) * self.per_chat_rate_per_s)


def most_in_any_second(times: list[float]) -> int:
    """The most of `times` (seconds) inside any one sliding second."""
    ordered, first, most = sorted(times), 0, 0
    for last, at in enumerate(ordered):
        while at - ordered[first] >= 1.0:
            first += 1
        most = max(most, last - first + 1)
    return most

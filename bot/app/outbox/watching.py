"""Waiting for the first of a few events, without a new task for each at every wait.

The courier waits, between drains and within one, for the first of: rows handed over,
`wake`, `stop` (and, within a drain, the sends in flight). Waiting on an `asyncio.Event`
beside tasks takes a task of its own; made and cancelled at each wait, the three cost
about 40 calls each, at two waits a turn: a twentieth of a Telegram turn's calls. A
`Watch` keeps each event's task from one wait to the next and makes a new one only once
the last has finished. A finished task is only a wake-up: the waiter looks at the events
themselves after it. So an event set and cleared between two waits (a task made for the
second would not see it) wakes the second once, for nothing: the courier looks, finds
nothing to do, and waits again. An event set is never missed: its task is either still
waiting (and finishes) or finished already (and a new one finds it set).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable


class Watch:
    """A task waiting for each event watched, kept until it finishes or `close`."""

    def __init__(self) -> None:
        self._tasks: dict[asyncio.Event, asyncio.Future[bool]] = {}

    def of(self, events: Iterable[asyncio.Event | None]) -> set[asyncio.Future[bool]]:
        """A task waiting for each event (None: left out), the one kept if still waiting."""
        tasks = set()
        for event in events:
            if event is None:
                continue
            task = self._tasks.get(event)
            if task is None or task.done():
                task = self._tasks[event] = asyncio.ensure_future(event.wait())
            tasks.add(task)
        return tasks

    def close(self) -> None:
        """Cancel the tasks still waiting (their waiter is done with them)."""
        for task in self._tasks.values():
            task.cancel()
        self._tasks.clear()

"""The courier's waits keep their tasks (`Watch`): woken by an event set, as with a task
made for each wait; by one set and cleared between two waits at most once, for nothing
(the courier then looks at the events and waits again)."""

from __future__ import annotations

import asyncio

from bot.app.outbox.watching import Watch


async def first(tasks: set[asyncio.Future[bool]], timeout_s: float = 0.05) -> bool:
    """Whether a wait on `tasks` (as the courier's) is woken within `timeout_s`."""
    done, _ = await asyncio.wait(tasks, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    return bool(done)


async def test_a_task_still_waiting_is_kept_and_a_finished_one_replaced() -> None:
    """A wait that timed out keeps its tasks for the next; a task whose event was set is
    replaced by a new one at the next wait, which waits again once the event is cleared."""
    arrived, stop = asyncio.Event(), asyncio.Event()
    watch = Watch()
    before = watch.of((arrived, None, stop))
    assert len(before) == 2 and not await first(before)
    assert watch.of((arrived, stop)) == before  # kept: no new task for a wait
    arrived.set()
    assert await first(watch.of((arrived, stop)))
    arrived.clear()  # (the courier takes what arrived)
    after = watch.of((arrived, stop))
    assert after != before and not await first(after)  # no wake for nothing
    stop.set()
    assert await first(watch.of((arrived, stop)))
    watch.close()
    await asyncio.sleep(0)
    assert all(task.cancelled() for task in after - before)


async def test_an_event_set_before_the_wait_wakes_it_at_once() -> None:
    """Set while nobody waited (its kept task finished then), the event still wakes the
    next wait; set and cleared between two waits, it wakes the next once, then no more."""
    wake = asyncio.Event()
    watch = Watch()
    assert not await first(watch.of((wake,)))
    wake.set()
    await asyncio.sleep(0)
    assert await first(watch.of((wake,)))
    wake.clear()
    kept = watch.of((wake,))
    assert not await first(kept)  # (its task waits on the event now)
    wake.set()
    wake.clear()
    assert await first(watch.of((wake,)))  # once, for nothing
    assert not await first(watch.of((wake,)))
    watch.close()

"""A line's held sends while its next send is under way (`Sender.meanwhile`): recorded with
the next one when it is quick, recorded meanwhile when it takes over HOLD_S, and a failed
recording stops the send and is what the line sees."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest

from bot.app.outbox import sending
from bot.app.outbox.sending import Report, RetryPolicy, Sender, Sent

T0 = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
HELD = Sent(1, "p1", T0)
NEXT = Sent(2, "p2", T0)


class Recorder:
    """Stands in for `Sender.record`: what it was given, and a failure to give."""

    def __init__(self, fails: bool = False) -> None:
        self.recorded: list[list[Sent]] = []
        self.fails = fails

    async def __call__(self, held: Sequence[Sent]) -> None:
        await asyncio.sleep(0.01)
        if self.fails:
            raise ConnectionError("the commit failed")
        self.recorded.append(list(held))


class Send:
    """The next send: takes `took_s`, then holds its outcome with the others."""

    def __init__(self, held: list[Sent], took_s: float) -> None:
        self.held, self.took_s = held, took_s
        self.went = False

    async def __call__(self) -> Report:
        await asyncio.sleep(self.took_s)
        self.held.append(NEXT)
        self.went = True
        return Report(sent=1)


@pytest.fixture(autouse=True)
def _short_hold(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sending, "HOLD_S", 0.05)


def sender(recorder: Recorder) -> Sender:
    made = Sender(None, lambda: T0, RetryPolicy(), timedelta(seconds=30))  # type: ignore[arg-type]
    made.record = recorder  # type: ignore[method-assign]
    return made


async def test_a_quick_send_keeps_the_held_for_the_line_to_record() -> None:
    """Answered within HOLD_S: nothing recorded meanwhile; the line records both."""
    recorder, held = Recorder(), [HELD]
    send = Send(held, 0.0)
    assert await sender(recorder).meanwhile(send(), held) == Report(sent=1)
    assert recorder.recorded == [] and held == [HELD, NEXT]


async def test_a_slow_send_has_the_held_recorded_meanwhile() -> None:
    """Over HOLD_S: the held sends are recorded while it is under way; it is held alone."""
    recorder, held = Recorder(), [HELD]
    send = Send(held, 0.2)
    assert await sender(recorder).meanwhile(send(), held) == Report(sent=1)
    assert recorder.recorded == [[HELD]] and held == [NEXT]


async def test_a_failed_recording_stops_the_send_and_is_raised() -> None:
    """The recording fails while the send waits: the send never goes, the line gets the
    recording's error (not a cancellation), and its task is not left cancelling."""
    recorder, held = Recorder(fails=True), [HELD]
    send = Send(held, 0.5)
    with pytest.raises(ConnectionError):
        await sender(recorder).meanwhile(send(), held)
    assert not send.went
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0


async def test_a_line_cancelled_cancels_its_recording_and_send() -> None:
    """Cancelled from outside while both are under way: both stop, and it is cancelled."""
    recorder, held = Recorder(), [HELD]
    recorder_started = asyncio.Event()

    async def slow_record(batch: Sequence[Sent]) -> None:
        recorder_started.set()
        await asyncio.sleep(10)

    send = Send(held, 10)
    made = sender(recorder)
    made.record = slow_record  # type: ignore[method-assign]
    line = asyncio.create_task(made.meanwhile(send(), held))
    await recorder_started.wait()
    line.cancel()
    with pytest.raises(asyncio.CancelledError):
        await line
    assert not send.went
    pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    await asyncio.sleep(0)
    assert all(t.done() for t in pending)

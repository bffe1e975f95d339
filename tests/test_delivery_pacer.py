"""The send pacer, on virtual time: its schedule is computed, never waited for.

A provider counts a request when it arrives, somewhere between leaving and being
answered; the checks below assume the worst arrival inside that span.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import random
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import pytest

from bot.app.outbox.edits import pacing_priority
from bot.app.outbox.pacing import (
    URGENT_DEFERRAL_S,
    URGENT_FORMING,
    URGENT_GRACE_S,
    ChatAllowance,
    Pacer,
)
from bot.storage.outbox import REPLY, Outgoing


class VirtualTime:
    """A clock that jumps to the next sleeper's wake-up once every task is waiting."""

    def __init__(self, late_s: float = 0.0) -> None:
        self.now = 0.0
        self.late_s = late_s  # every sleep ends this much late, as on a busy loop
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        done = asyncio.get_running_loop().create_future()
        wake = self.now + max(seconds, 0.0) + self.late_s
        heapq.heappush(self._sleepers, (wake, next(self._order), done))
        await done

    async def run(self, *jobs: Coroutine[Any, Any, Any]) -> list[Any]:
        tasks = [asyncio.ensure_future(job) for job in jobs]
        while not all(task.done() for task in tasks):
            for _ in range(20):  # let every runnable task reach its next wait
                await asyncio.sleep(0)
            if self._sleepers:
                at, _, done = heapq.heappop(self._sleepers)
                self.now = max(self.now, at)
                done.set_result(None)
            elif not all(task.done() for task in tasks):
                raise AssertionError("deadlock: every task waits and nobody sleeps")
        return [task.result() for task in tasks]


def pacer_on(clock: VirtualTime, **kwargs: Any) -> Pacer:
    return Pacer(monotonic=clock.monotonic, sleep=clock.sleep, **kwargs)


def sender(
    clock: VirtualTime, pacer: Pacer, spans: list[tuple[str, float, float]]
) -> Callable[[str, float], Awaitable[None]]:
    """A send that takes `rtt` seconds; records (address, left, answered)."""

    async def send(address: str, rtt: float = 0.0) -> None:
        async with pacer.turn(address):
            left = clock.now
            await clock.sleep(rtt)
            spans.append((address, left, clock.now))

    return send


def most_arriving_in_one_window(spans: list[tuple[str, float, float]], window: float) -> int:
    """The most sends that could arrive within one `window`, each arriving anywhere
    between leaving and its answer (the worst case is a window opening at an answer).
    To the microsecond: the pacer allows that much for sleeps ending a hair early."""
    return max(
        sum(1 for _, left, answered in spans if answered >= start and left < start + window - 1e-6)
        for start in (answered for _, _, answered in spans)
    )


async def test_sends_are_spaced_per_channel_and_a_chat_waits_out_its_gap() -> None:
    clock = VirtualTime()
    pacer = pacer_on(clock, rate_per_s=30, per_chat_rate_per_s=1.0)
    spans: list[tuple[str, float, float]] = []
    send = sender(clock, pacer, spans)
    for address in ("a", "b", "c", "a"):
        await clock.run(send(address))
    assert [left for _, left, _ in spans] == pytest.approx([0.0, 1 / 30, 2 / 30, 1.0])
    clock.now += 5.0
    await clock.run(send("a"))
    assert spans[-1][1] == 6.0  # long after its gap: at once


async def test_sleeps_ending_late_do_not_slow_the_rate() -> None:
    """Each sleep 5 ms late: slots spaced from the last actual leave would drift to
    about 26 a second; kept to their schedule, 90 sends take three seconds."""
    clock = VirtualTime(late_s=0.005)
    pacer = pacer_on(clock, rate_per_s=30)
    spans: list[tuple[str, float, float]] = []
    send = sender(clock, pacer, spans)
    for n in range(90):
        await clock.run(send(f"chat{n}"))
    assert spans[-1][1] < 89 / 30 + 0.1
    assert most_arriving_in_one_window(spans, 1.0) <= 30


async def test_a_chat_in_its_gap_does_not_hold_up_the_others() -> None:
    """The old pacer booked the channel's next slot past a waiting chat's gap: every
    other chat then stalled behind it for most of a second."""
    clock = VirtualTime()
    pacer = pacer_on(clock, rate_per_s=30, per_chat_rate_per_s=1.0)
    spans: list[tuple[str, float, float]] = []
    send = sender(clock, pacer, spans)
    await clock.run(send("busy"))
    await clock.run(send("busy"), *(send(f"chat{n}") for n in range(5)))
    left = {address: at for address, at, _ in spans[1:]}
    assert left["busy"] == pytest.approx(1.0)
    assert max(at for address, at in left.items() if address != "busy") < 0.25


async def test_the_gap_runs_from_the_answer_and_two_sends_to_one_chat_never_overlap() -> None:
    clock = VirtualTime()
    pacer = pacer_on(clock, rate_per_s=30, per_chat_rate_per_s=1.0)
    spans: list[tuple[str, float, float]] = []
    send = sender(clock, pacer, spans)
    await clock.run(send("a", 0.3), send("a", 0.3), send("a", 0.3))
    for (_, _, answered), (_, left, _) in itertools.pairwise(spans):
        assert left - answered >= 1.0 - 1e-9


async def test_no_more_than_the_limit_can_arrive_in_any_window_whatever_the_delays() -> None:
    """Round trips of 0 to 80 ms and a stalled event loop: counted from leaving, a
    request delayed on the way could still arrive inside the next second's count."""
    clock = VirtualTime()
    pacer = pacer_on(clock, rate_per_s=10)
    spans: list[tuple[str, float, float]] = []
    send = sender(clock, pacer, spans)
    rtts = random.Random(9).choices([0.0, 0.002, 0.03, 0.08], k=80)
    stall_then = send("chat-late", 0.0)

    async def stall() -> None:
        await clock.sleep(2.0)
        clock.now += 0.5  # the loop was busy: sleepers all wake late together
        await stall_then

    await clock.run(stall(), *(send(f"chat{n}", rtt) for n, rtt in enumerate(rtts)))
    assert most_arriving_in_one_window(spans, 1.0) <= 10
    # and it still goes at about the limit: 81 sends at 10/s, a round trip per window
    assert max(answered for *_, answered in spans) < 81 / 10 * 1.1 + 0.5


async def test_the_limit_is_held_with_many_sends_in_flight_at_once() -> None:
    """Slow answers (a provider taking 1.5 s): the places are all taken in flight, and
    the next send waits for an answer rather than for the clock."""
    clock = VirtualTime()
    pacer = pacer_on(clock, rate_per_s=5)
    spans: list[tuple[str, float, float]] = []
    send = sender(clock, pacer, spans)
    await clock.run(*(send(f"chat{n}", 1.5) for n in range(12)))
    assert most_arriving_in_one_window(spans, 1.0) <= 5
    sixth = sorted(left for _, left, _ in spans)[5]
    assert sixth == pytest.approx(1.5 + 1.0)  # the first answer plus the window


async def test_an_urgent_send_takes_the_next_slot_ahead_of_a_queue_of_routine_ones() -> None:
    """Sixty routine sends are waiting for slots (two seconds' worth) when a crisis
    message arrives: it leaves next, not after them."""
    clock = VirtualTime()
    pacer = pacer_on(clock, rate_per_s=30)
    left: dict[str, float] = {}

    async def send(address: str, priority: int = 0, after: float = 0.0) -> None:
        await clock.sleep(after)
        async with pacer.turn(address, priority):
            left[address] = clock.now

    routine = [send(f"chat{n}") for n in range(60)]
    await clock.run(*routine, send("crisis", priority=2, after=0.2))
    # the send already holding the channel (asleep until its slot) goes first; then it
    assert 0.2 <= left["crisis"] < 0.2 + 3 / 30
    assert sum(1 for at in left.values() if at > left["crisis"]) > 50  # it overtook them


async def test_a_cancelled_send_gives_up_its_place_in_the_queue() -> None:
    clock = VirtualTime()
    pacer = pacer_on(clock, rate_per_s=10)
    left: list[str] = []

    async def send(address: str) -> None:
        async with pacer.turn(address):
            left.append(address)

    async def cancelled_soon() -> None:
        task = asyncio.ensure_future(send("gone"))
        await clock.sleep(0.05)
        task.cancel()

    await clock.run(*(send(f"chat{n}") for n in range(5)), cancelled_soon())
    assert left == [f"chat{n}" for n in range(5)]  # and nobody waits for "gone" forever


async def test_one_slow_answer_does_not_hold_the_channel() -> None:
    """Every place in flight, the oldest stuck for 5 s: the next send waits for the first
    answer to come back (plus the window), not for the oldest."""
    clock = VirtualTime()
    pacer = pacer_on(clock, rate_per_s=2)
    spans: list[tuple[str, float, float]] = []
    send = sender(clock, pacer, spans)

    async def later(address: str, after: float, rtt: float) -> None:
        await clock.sleep(after)
        await send(address, rtt)

    # "next" comes at 1.05 s with both places in flight; "quick" is answered at 1.1 s
    await clock.run(send("slow", 5.0), later("quick", 0.5, 0.6), later("next", 1.05, 0.0))
    left = {address: at for address, at, _ in spans}
    assert left["next"] == pytest.approx(1.1 + 1.0)


async def test_the_rate_rounds_to_whole_sends_per_window() -> None:
    assert Pacer(rate_per_s=30).per_window == 30
    assert Pacer(rate_per_s=1, window_s=1.0).per_window == 1
    assert Pacer(rate_per_s=0.5, window_s=2.0).per_window == 1
    assert Pacer().per_window == 0


async def test_chats_long_past_their_gap_are_forgotten() -> None:
    """One entry per address would otherwise grow for as long as the worker runs."""
    clock = VirtualTime()
    pacer = pacer_on(clock, rate_per_s=10_000, per_chat_rate_per_s=1.0)
    send = sender(clock, pacer, [])
    for n in range(5000):
        await clock.run(send(f"chat{n}"))
        clock.now += 0.01
    assert len(pacer._chats) < 2200  # about two sweeps' worth at most, not 5000


def conforms(arrivals: list[float], rate_per_s: float, burst: int) -> bool:
    """Whether a provider keeping a token bucket per chat (`burst` tokens, `rate_per_s`
    refill) would take every one of `arrivals`."""
    tokens, last = float(burst), float("-inf")
    for at in arrivals:
        tokens = min(float(burst), tokens + (at - last) * rate_per_s) if last > -1e18 else tokens
        last = at
        if tokens < 1.0 - 1e-9:
            return False
        tokens -= 1.0
    return True


@pytest.mark.parametrize(
    ("answers", "now", "wait"),
    [
        ([], 0.0, 0.0),  # a fresh chat: at once
        ([0.0], 0.0, 0.0),  # one spent, two left
        ([0.0, 0.0], 0.0, 0.0),  # two spent, one left
        ([0.0, 0.0, 0.0], 0.0, 1.0),  # burst spent: the next token in a second
        ([0.0, 0.0, 0.0], 0.4, 0.6),
        ([0.0, 0.0, 0.0], 5.0, 0.0),  # refilled long since
        ([0.0, 0.0, 0.0, 1.0], 1.0, 1.0),  # a steady flow: one a second
        ([0.0, 10.0], 10.0, 0.0),  # earlier sends long refilled: a full burst again
    ],
)
def test_the_chat_allowance_is_a_burst_then_the_rate(
    answers: list[float], now: float, wait: float
) -> None:
    """Burst 3 at one a second: three at once, then one a second."""
    allowance = ChatAllowance(rate_per_s=1.0, burst=3)
    for at in answers:
        allowance.answered(at)
    assert allowance.wait_s(now) == pytest.approx(wait)


async def test_a_reply_of_three_leaves_at_once_and_a_flow_keeps_to_the_rate() -> None:
    """The edit, the crisis message and the next question leave together; twenty more to
    the same chat average one a second, and a provider's bucket takes every one."""
    clock = VirtualTime()
    pacer = pacer_on(clock, rate_per_s=30, per_chat_rate_per_s=1.0, per_chat_burst=3)
    spans: list[tuple[str, float, float]] = []
    send = sender(clock, pacer, spans)
    await clock.run(*(send("a", 0.01) for _ in range(3)))
    assert spans[-1][1] < 0.1  # two channel slots (1/30 s) later, not two seconds
    await clock.run(*(send("a", 0.01) for _ in range(20)))
    lefts = [left for _, left, _ in spans]
    assert (lefts[-1] - lefts[0]) >= 20 - 3 - 1e-6  # 23 sends, 3 of them a burst: ~20 s
    assert conforms([answered for *_, answered in spans], 1.0, 3)
    assert conforms(lefts, 1.0, 3)  # wherever in its span each arrived


async def test_with_round_trips_the_allowance_counts_from_each_answer() -> None:
    """Slow answers (0.3 s): a provider counting arrivals anywhere in the span still
    finds every send within the bucket."""
    clock = VirtualTime(late_s=0.001)
    pacer = pacer_on(clock, rate_per_s=30, per_chat_rate_per_s=2.0, per_chat_burst=2)
    spans: list[tuple[str, float, float]] = []
    send = sender(clock, pacer, spans)
    await clock.run(*(send("a", 0.3) for _ in range(12)))
    assert conforms([left for _, left, _ in spans], 2.0, 2)
    assert conforms([answered for *_, answered in spans], 2.0, 2)


def prioritised(
    clock: VirtualTime, pacer: Pacer, spans: list[tuple[str, float, float]]
) -> Callable[[str, int], Awaitable[None]]:
    """A send at `priority` answered at once; records (address, left, answered)."""

    async def send(address: str, priority: int) -> None:
        async with pacer.turn(address, priority):
            spans.append((address, clock.now, clock.now))

    return send


async def test_replies_take_the_windows_places_at_once_and_routine_sends_keep_their_spacing() -> (
    None
):
    """Telegram: fifty crisis messages at once leave thirty at once (the window's places),
    the rest as places free a second later; a wave's routine sends stay 1/30 s apart."""
    clock = VirtualTime()
    pacer = pacer_on(clock, rate_per_s=30, unspaced_from=1)
    spans: list[tuple[str, float, float]] = []
    send = prioritised(clock, pacer, spans)
    await clock.run(*(send(f"chat{n}", 2) for n in range(50)))
    lefts = sorted(left for _, left, _ in spans)
    assert lefts[:30] == [0.0] * 30
    assert lefts[30] == pytest.approx(1.0) and lefts[-1] == pytest.approx(1.0)
    assert most_arriving_in_one_window(spans, 1.0) <= 30
    clock.now, routine = 10.0, []
    await clock.run(*(prioritised(clock, pacer, routine)(f"r{n}", 0) for n in range(5)))
    gaps = [b[1] - a[1] for a, b in itertools.pairwise(routine)]
    assert gaps[1:] == pytest.approx([1 / 30] * 3)  # (after a quiet spell one catches up)


async def test_in_a_storm_of_urgent_sends_replies_wait_and_a_lone_one_holds_no_one_up() -> None:
    """One crisis message holds nobody up. In a storm (five urgent sends within a
    second), a reply asked for right after one took a place waits the grace, so the next
    crisis message, a moment behind, still finds a place; once the storm is over it goes
    at once; and it never waits longer than the deferral in all."""
    clock = VirtualTime()
    pacer = pacer_on(clock, rate_per_s=30, unspaced_from=1, urgent_from=2)
    spans: list[tuple[str, float, float]] = []
    send = prioritised(clock, pacer, spans)
    await clock.run(send("crisis", 2))
    await clock.run(send("reply", 1))
    assert spans[-1][1] == 0.0  # a lone crisis: no wait
    await clock.run(*(send(f"crisis{n}", 2) for n in range(4)))
    await clock.run(send("reply", 1))
    assert spans[-1] == ("reply", pytest.approx(URGENT_GRACE_S), pytest.approx(URGENT_GRACE_S))
    clock.now = 10.0
    await clock.run(send("quiet", 1))
    assert spans[-1][1] == 10.0

    async def storm() -> None:  # an urgent send every 0.1 s for five seconds
        for n in range(50):
            await send(f"storm{n}", 2)
            await clock.sleep(0.1)

    async def patient() -> None:  # a reply one second into the storm
        await clock.sleep(1.0)
        await send("patient", 1)

    clock.now = 20.0
    await clock.run(storm(), patient())
    (left,) = [left for address, left, _ in spans if address == "patient"]
    assert left == pytest.approx(21.0 + URGENT_DEFERRAL_S, abs=0.11)


async def test_a_crisis_message_amid_turns_under_way_holds_replies_as_a_storm_does() -> None:
    """A storm is counted before its fifth crisis message has gone: one urgent send while
    URGENT_FORMING turns are under way (`coming`: each may be the next crisis) holds a
    reply for the grace, so the first crisis turns' next questions do not take places the
    crisis messages on their way need. With one turn fewer under way it goes at once (at
    a patient's pace a crisis turn's next question is not held). Turns ending mid-grace
    let it go once the urgent sends stop."""
    clock = VirtualTime()
    underway = [0]
    pacer = pacer_on(clock, rate_per_s=30, unspaced_from=1, urgent_from=2,
                     coming=lambda: underway[0])  # fmt: skip
    spans: list[tuple[str, float, float]] = []
    send = prioritised(clock, pacer, spans)
    underway[0] = URGENT_FORMING - 1
    await clock.run(send("crisis", 2), send("alert", 2), send("reply", 1))
    assert spans[-1] == ("reply", 0.0, 0.0)  # two urgent sends, nine under way: no storm
    clock.now, underway[0] = 10.0, URGENT_FORMING
    await clock.run(send("crisis", 2))
    await clock.run(send("reply", 1))
    assert spans[-1][1] == pytest.approx(10.0 + URGENT_GRACE_S)

    async def crises() -> None:  # four more turns end in crisis messages 0.1 s apart
        for n in range(4):
            await clock.sleep(0.1)
            await send(f"crisis{n}", 2)
            underway[0] -= 1

    clock.now, underway[0] = 20.0, URGENT_FORMING + 3  # then the fifth urgent send counts
    await clock.run(send("crisis", 2))
    await clock.run(crises(), send("reply", 1))
    (left,) = [left for address, left, _ in spans[-6:] if address == "reply"]
    assert left == pytest.approx(20.4 + URGENT_GRACE_S)  # the grace after the last one


def outgoing(n: int, *, edit: bool) -> Outgoing:
    payload: dict[str, object] = {"intent": "Answered" if edit else "Ask", "item": "phq9.q1"}
    if edit:
        payload["edit"] = True
    return Outgoing(n, "telegram", "patient", n, str(n), "text", payload, REPLY, 0, None)


async def test_edits_of_answered_questions_wait_behind_other_patients_next_questions() -> None:
    """With the window full, twenty edits (replies by their rows) are waiting when five
    next questions arrive: the questions leave first, the edits after them; each waits at
    the priority `pacing_priority` gives it, as delivery does."""
    clock = VirtualTime()
    pacer = pacer_on(clock, rate_per_s=30, unspaced_from=REPLY)
    left: dict[int, float] = {}

    async def send(message: Outgoing, after: float = 0.0) -> None:
        await clock.sleep(after)
        async with pacer.turn(message.address, pacing_priority(message)):
            left[message.id] = clock.now

    full = [send(outgoing(n, edit=False)) for n in range(30)]
    edits = [send(outgoing(100 + n, edit=True), after=0.01) for n in range(20)]
    questions = [send(outgoing(200 + n, edit=False), after=0.05) for n in range(5)]
    await clock.run(*full, *edits, *questions)
    first_question = min(left[200 + n] for n in range(5))
    assert first_question > 0.99  # the window was full until then
    ahead = [n for n in range(20) if left[100 + n] < first_question]
    assert len(ahead) <= 1  # only the edit already holding the channel's turn went first
    assert max(left[200 + n] for n in range(5)) < max(left[100 + n] for n in range(20))


async def test_a_burst_of_replies_does_not_push_routine_sends_nor_the_replies_behind_them() -> None:
    """Ten replies leave at once; a routine send (an edit) right after them need not wait
    out ten spacings, and a reply behind it is not held up by it."""
    clock = VirtualTime()
    pacer = pacer_on(clock, rate_per_s=30, unspaced_from=REPLY)
    spans: list[tuple[str, float, float]] = []
    send = prioritised(clock, pacer, spans)

    async def later(address: str, priority: int, after: float) -> None:
        await clock.sleep(after)
        await send(address, priority)

    burst = [send(f"reply{n}", REPLY) for n in range(10)]
    await clock.run(*burst, later("edit", 0, 0.001), later("next", REPLY, 0.002))
    left = {address: at for address, at, _ in spans}
    assert left["edit"] < 0.01
    assert left["next"] < 0.01


async def test_while_replies_flow_routine_sends_leave_room_for_the_next_reply() -> None:
    """A third of the window is kept for replies once one has left within it: thirty
    routine sends (edits, a wave's reminders) queued just after a reply take nineteen
    places in that second (thirty, less the reply's and the ten kept), and a reply at 0.99 s leaves at once instead of waiting for a place
    (it used to wait for the next second). The window's count still holds."""
    clock = VirtualTime()
    pacer = pacer_on(clock, rate_per_s=30, unspaced_from=REPLY, reply_reserve_share=1 / 3)
    assert pacer.reply_reserve == 10
    spans: list[tuple[str, float, float]] = []
    send = prioritised(clock, pacer, spans)

    async def later(address: str, priority: int, after: float) -> None:
        await clock.sleep(after)
        await send(address, priority)

    routine = [later(f"routine{n}", 0, 0.001) for n in range(30)]
    await clock.run(send("first", REPLY), *routine, later("late", REPLY, 0.99))
    left = {address: at for address, at, _ in spans}
    assert left["late"] == pytest.approx(0.99)
    assert sum(1 for n in range(30) if left[f"routine{n}"] < 1.0) == 19
    assert max(left.values()) < 1.5  # the rest follow once the first reply's place frees
    assert most_arriving_in_one_window(spans, 1.0) <= 30


async def test_with_no_reply_in_the_window_a_wave_fills_it() -> None:
    """The reserve lapses a window after the last reply: a wave alone keeps the full rate
    (thirty a second, spaced), and so does one starting a second after a reply."""
    clock = VirtualTime()
    pacer = pacer_on(clock, rate_per_s=30, unspaced_from=REPLY, reply_reserve_share=1 / 3)
    spans: list[tuple[str, float, float]] = []
    send = prioritised(clock, pacer, spans)
    await clock.run(send("reply", REPLY))
    clock.now = 1.0
    await clock.run(*(send(f"wave{n}", 0) for n in range(60)))
    lefts = sorted(left for address, left, _ in spans if address.startswith("wave"))
    assert sum(1 for left in lefts if left < 2.0) == 30
    assert lefts[-1] < 3.0
    assert most_arriving_in_one_window(spans, 1.0) <= 30

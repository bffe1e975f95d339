"""A Hypothesis state machine drives the pure conversation (begin, step, press, remind,
expire) with random replies, and checks every transition against a small model of what a
check-in should do: which items are answered or skipped, which item is asked now, BACK,
SKIP, PAUSE, STOP, invalid replies re-asking, the crisis message once, and the scores."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from bot.domain import conversation as core
from bot.domain import events as ev
from bot.instruments import load_catalog

pytestmark = pytest.mark.fault

CATALOG = load_catalog()
SETTING = core.Setting({i.key: i for i in CATALOG}, "en", show_scores=True)
BUNDLES = [("phq9",), ("phq2", "phq9"), ("phq2",)]
INVALID = ["banana", "7", "1.5", "0-1", "", "   "]
T0 = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)


@dataclass
class Model:
    """What a check-in should look like, written without the conversation's code."""

    order: list[str]
    status: str = "pending"
    current: str | None = None
    answers: dict[str, int] = field(default_factory=dict)
    skipped: set[str] = field(default_factory=set)
    invalid_streak: int = 0
    crisis_sent: bool = False

    def applies(self, key: str) -> bool:
        if key != "phq9.q10":
            return True
        return any(self.answers.get(f"phq9.q{n}", 0) >= 1 for n in range(1, 10))

    def next_item(self) -> str | None:
        done = set(self.answers) | self.skipped
        return next((k for k in self.order if k not in done and self.applies(k)), None)

    def previous_item(self) -> str | None:
        assert self.current is not None
        here = self.order.index(self.current)
        return next((k for k in reversed(self.order[:here]) if self.applies(k)), None)

    def advance(self) -> None:
        self.invalid_streak = 0
        self.current = self.next_item()
        if self.current is None:
            self.status = "completed"


def _item_keys(instruments: tuple[str, ...]) -> list[str]:
    return [item.key for key in instruments for item in SETTING.instruments[key].items]


def _of(kind: type, transition: core.Transition) -> list:  # type: ignore[type-arg]
    return [x for x in (*transition.intents, *transition.events) if isinstance(x, kind)]


class ConversationMachine(RuleBasedStateMachine):
    conv: core.Conversation
    model: Model

    def __init__(self) -> None:
        super().__init__()
        self.now = T0

    @initialize(
        bundle=st.sampled_from(BUNDLES),
        close_after=st.integers(0, 12),
        prefill=st.integers(0, 12),
        values=st.lists(st.integers(0, 3), min_size=12, max_size=12),
    )
    def start(
        self, bundle: tuple[str, ...], close_after: int, prefill: int, values: list[int]
    ) -> None:
        """Begin, then answer `prefill` items (so runs start anywhere, the safety item too)."""
        self.close_after = close_after  # answers before STOP / expiry may end the run
        self.conv = core.Conversation(bundle)
        self.model = Model(_item_keys(bundle))
        self._apply(core.begin(self.conv, SETTING, self._tick()))
        self.model.status, self.model.current = "asking", self.model.order[0]
        self.answer_run(values[:prefill])

    def _tick(self) -> datetime:
        self.now += timedelta(seconds=7)
        return self.now

    def _apply(self, transition: core.Transition) -> core.Transition:
        self.conv = transition.state
        return transition

    @property
    def is_open(self) -> bool:
        return self.model.status in ("asking", "paused")

    @property
    def may_close(self) -> bool:
        return self.is_open and len(self.model.answers) >= self.close_after

    # ---- replies -------------------------------------------------------------------------

    @precondition(lambda self: self.is_open)
    @rule(value=st.integers(0, 3), by_button=st.booleans())
    def answer(self, value: int, by_button: bool) -> None:
        """A valid answer is recorded (replacing an earlier one after BACK) and moves on."""
        model, item = self.model, self.model.current
        assert item is not None
        replaced = item in model.answers
        if by_button:
            t = self._apply(core.press(self.conv, item, value, SETTING, self._tick()))
        else:
            t = self._apply(core.step(self.conv, str(value), SETTING, self._tick()))
        recorded = _of(ev.AnswerRecorded, t)
        assert [(r.item, r.value, r.replaced) for r in recorded] == [(item, value, replaced)]
        first_crisis = item == "phq9.q9" and value >= 1 and not model.crisis_sent
        assert bool(_of(ev.CrisisResources, t)) == first_crisis
        assert bool(_of(ev.FlagRaised, t)) == (item == "phq9.q9" and value >= 1)
        model.crisis_sent |= first_crisis
        model.answers[item] = value
        model.skipped.discard(item)
        model.status = "asking"
        model.advance()
        if model.status == "completed":
            self._check_scores(t, partial=False)
            assert _of(ev.Completed, t) and _of(ev.CheckinCompleted, t)

    @precondition(lambda self: self.is_open)
    @rule(values=st.lists(st.integers(0, 3), min_size=2, max_size=8))
    def answer_run(self, values: list[int]) -> None:
        """Several answers in a row (so runs reach the safety item and the end)."""
        for value in values:
            if not self.is_open:
                return
            self.answer(value, by_button=value % 2 == 0)

    @precondition(lambda self: self.is_open)
    @rule(value=st.integers(0, 3))
    def answer_rest(self, value: int) -> None:
        """The same answer to everything left (0 throughout leaves out the PHQ-9 item 10)."""
        while self.is_open:
            self.answer(value, by_button=False)

    @precondition(lambda self: self.is_open)
    @rule()
    def stale_button(self) -> None:
        """A button for an item other than the current one changes nothing."""
        others = [k for k in self.model.order if k != self.model.current]
        before = self.conv
        t = self._apply(core.press(self.conv, others[0], 1, SETTING, self._tick()))
        assert t.state == before and t.intents == () and t.events == ()

    @precondition(lambda self: self.model.status == "asking")
    @rule(texts=st.lists(st.sampled_from(INVALID), min_size=1, max_size=4))
    def invalid(self, texts: list[str]) -> None:
        """A reply that fits no option re-asks the same item; the third in a row adds HELP."""
        for text in texts:
            t = self._apply(core.step(self.conv, text, SETTING, self._tick()))
            asks = _of(ev.Ask, t)
            assert [a.item for a in asks] == [self.model.current] and asks[0].problem is not None
            self.model.invalid_streak += 1
            helped = self.model.invalid_streak == core.INVALID_BEFORE_HELP
            assert bool(_of(ev.Help, t)) == helped
            if helped:
                self.model.invalid_streak = 0
            assert t.events == ()

    @precondition(lambda self: self.is_open)
    @rule(then=st.none() | st.integers(0, 3))
    def back(self, then: int | None) -> None:
        """BACK re-asks the applicable item before the current one; answers stand (and
        answering it again replaces the earlier answer; the crisis message is not repeated)."""
        model = self.model
        t = self._apply(core.step(self.conv, "back", SETTING, self._tick()))
        model.current = model.previous_item() or model.current
        model.status, model.invalid_streak = "asking", 0
        assert [a.item for a in _of(ev.Ask, t)] == [model.current]
        assert not _of(ev.AnswerRecorded, t)
        if then is not None:
            self.answer(then, by_button=False)

    @precondition(lambda self: self.is_open)
    @rule()
    def skip(self) -> None:
        """SKIP moves on, except on a safety item; an item answered before keeps its answer."""
        model, item = self.model, self.model.current
        assert item is not None
        t = self._apply(core.step(self.conv, "skip", SETTING, self._tick()))
        model.status, model.invalid_streak = "asking", 0
        if item == "phq9.q9":
            asks = _of(ev.Ask, t)
            assert [(a.item, a.cannot_skip) for a in asks] == [(item, True)]
            return
        assert bool(_of(ev.ItemSkipped, t)) == (item not in model.answers)
        if item not in model.answers:
            model.skipped.add(item)
        model.advance()
        if model.status == "completed":
            self._check_scores(t, partial=False)

    @precondition(lambda self: self.is_open)
    @rule()
    def pause(self) -> None:
        """PAUSE suspends at the same item."""
        t = self._apply(core.step(self.conv, "later", SETTING, self._tick()))
        self.model.status, self.model.invalid_streak = "paused", 0
        assert _of(ev.Paused, t) and _of(ev.CheckinPaused, t)

    @precondition(lambda self: self.is_open)
    @rule()
    def remind(self) -> None:
        """A reminder re-asks the current item and resumes a paused check-in."""
        t = self._apply(core.remind(self.conv, SETTING, self._tick()))
        asks = _of(ev.Ask, t)
        assert [(a.item, a.reminder) for a in asks] == [(self.model.current, True)]
        assert bool(_of(ev.CheckinResumed, t)) == (self.model.status == "paused")
        self.model.status = "asking"

    @precondition(lambda self: self.may_close)
    @rule()
    def stop(self) -> None:
        """STOP cancels, opts out, and scores what was answered as partial."""
        t = self._apply(core.step(self.conv, "STOP", SETTING, self._tick()))
        self.model.status, self.model.current = "cancelled", None
        assert _of(ev.OptedOut, t) and _of(ev.OptOutConfirmed, t)
        self._check_scores(t, partial=True)

    @precondition(lambda self: self.may_close)
    @rule()
    def expire(self) -> None:
        """Expiry closes the check-in and scores what was answered as partial."""
        t = self._apply(core.expire(self.conv, SETTING, self._tick()))
        self.model.status, self.model.current = "expired", None
        assert [e.partial for e in _of(ev.CheckinExpired, t)] == [bool(self.model.answers)]
        self._check_scores(t, partial=True)

    @precondition(lambda self: not self.is_open)
    @rule(text=st.sampled_from(["1", "back", "skip", "banana", "later"]))
    def after_close(self, text: str) -> None:
        """Once closed, nothing a patient sends or a reminder does changes the check-in."""
        before = self.conv
        for t in (
            core.step(before, text, SETTING, self._tick()),
            core.remind(before, SETTING, self._tick()),
            core.expire(before, SETTING, self._tick()),
        ):
            assert t.state == before and t.intents == () and t.events == ()

    # ---- checks --------------------------------------------------------------------------

    def _check_scores(self, t: core.Transition, *, partial: bool) -> None:
        scored = {s.result.instrument: s for s in _of(ev.ScoreRecorded, t)}
        expected = [
            k
            for k in self.conv.instruments
            if not partial or any(a.startswith(f"{k}.") for a in self.model.answers)
        ]
        assert sorted(scored) == sorted(expected)
        for key, recorded in scored.items():
            assert recorded.partial == partial
            items = [i for i in SETTING.instruments[key].items if i.scored]
            values = [self.model.answers.get(i.key) for i in items]
            if None not in values:  # everything answered: the plain sum, no proration
                assert recorded.result.total == sum(v for v in values if v is not None)
                assert recorded.result.valid and not recorded.result.prorated

    @invariant()
    def agrees_with_the_model(self) -> None:
        if not hasattr(self, "model"):
            return
        conv, model = self.conv, self.model
        assert conv.status == model.status
        assert conv.current == model.current
        assert dict(conv.answers) == model.answers
        assert set(conv.skipped) == model.skipped
        assert bool(conv.crisis_sent) == model.crisis_sent
        assert conv.invalid_streak == model.invalid_streak
        assert core.from_json(core.to_json(conv)) == conv  # what the database stores round-trips


ConversationMachine.TestCase.settings = settings(
    max_examples=300,
    derandomize=True,  # the same runs every time: CI never flakes on a lucky draw
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_conversation_agrees_with_its_model = ConversationMachine.TestCase

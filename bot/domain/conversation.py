"""The check-in conversation as a pure state machine.

One check-in administers one or more instruments (a bundle), one item per message. The
shell loads the :class:`Conversation` from the database, calls one of :func:`begin`,
:func:`step`, :func:`remind` or :func:`expire` with the time, and stores the returned
state, events and outgoing intents in one transaction. Nothing here reads a clock, a
database or a network.

Replies: an answer moves on; BACK re-asks the item before the current one (its answer
stands until replaced; BACK again goes further back); SKIP moves on only where the item
allows it (never on a safety item); PAUSE / LATER suspends, and the next message or
reminder resumes at the same item; STOP cancels the check-in (answers kept and scored as
partial) and opts the patient out; START opts back in; HELP explains.
Anything else is re-asked with the reason; the third such reply in a row also gets HELP.
A safety answer that raises a flag sends crisis resources before the next question.

Safety, however the patient says it (:mod:`bot.domain.risk`): any message with risk
language gets crisis resources first and a ``RiskLanguage`` event, wherever it comes; at
a suicidality safety item, a typed reply that is not a value but endorses ("yes",
"sometimes") or holds risk language also gets ``SafetyEndorsed`` (the alert, at crisis
level) and the item is asked again for its value. An expired check-in remembers the item
it was asking (``last_asked``) so a late answer to it is not lost (:mod:`.late`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from bot.domain import events as ev
from bot.domain.alerts.optout import is_safety_item
from bot.domain.conversation_state import (
    OPEN,
    Conversation,
    Setting,
    Status,
    Transition,
    from_json,
    to_json,
)
from bot.domain.instruments import AnswerValue, Instrument, Item
from bot.domain.parsing import Answer, Command, Invalid, parse_command, parse_reply
from bot.domain.risk import endorsed_in_words, risk_reply
from bot.domain.scoring import ScoreResult, lowered_after_endorsement, score

# Re-exported: the shell and the tests take the state types from here, with the steps.
__all__ = [
    "OPEN",
    "Conversation",
    "Setting",
    "Status",
    "Transition",
    "begin",
    "expire",
    "from_json",
    "outside",
    "press",
    "remind",
    "safety_reached",
    "step",
    "to_json",
]

INVALID_BEFORE_HELP = 3


def begin(conv: Conversation, setting: Setting, now: datetime) -> Transition:
    """Send the introduction and the first item of a pending check-in."""
    if conv.status != "pending":
        return Transition(conv)
    first = _next_item(conv, setting)
    if first is None:
        return _complete(conv, setting, now, ())
    started = replace(conv, status="asking", current=first.key)
    intents = (ev.Intro(_instrument_of(first, setting).key), _ask(started, setting))
    return Transition(started, intents, (ev.CheckinStarted(now),))


def step(conv: Conversation, text: str, setting: Setting, now: datetime) -> Transition:
    """Take one reply from the patient to an open check-in."""
    t = _step(conv, text, setting, now)
    if not conv.is_open:
        return t
    intents, found = risk_reply(text, now, conv.current, t.intents)
    return replace(t, intents=intents, events=(*t.events, *found))


def _step(conv: Conversation, text: str, setting: Setting, now: datetime) -> Transition:
    if conv.status == "pending":
        return begin(conv, setting, now)
    if not conv.is_open or conv.current is None:
        return Transition(conv)
    item = _item(conv.current, setting)
    parsed = parse_reply(item, text, setting.language)
    if isinstance(parsed, Command):
        return _command(conv, parsed, item, setting, now)
    if isinstance(parsed, Invalid) and endorsed_in_words(item, text):
        t = _endorsed(replace(conv, status="asking"), parsed, item, setting, now)
        woke = (ev.CheckinResumed(now),) if conv.status == "paused" else ()
        return replace(t, events=(*woke, *t.events))
    if conv.status == "paused":
        resumed = replace(conv, status="asking")
        if isinstance(parsed, Answer):
            t = _answer(resumed, item, parsed.value, text, setting, now)
            return replace(t, events=(ev.CheckinResumed(now), *t.events))
        return Transition(resumed, (_ask(resumed, setting),), (ev.CheckinResumed(now),))
    if isinstance(parsed, Invalid):
        return _invalid(conv, parsed, setting)
    return _answer(conv, item, parsed.value, text, setting, now)


def press(
    conv: Conversation, item_key: str, value: int, setting: Setting, now: datetime
) -> Transition:
    """A tapped answer button. It counts only for the item being asked now: a button on an
    older question, or one tapped twice, changes nothing (BACK changes an earlier answer)."""
    if not conv.is_open or conv.status == "pending" or conv.current != item_key:
        return Transition(conv)
    item = _item(item_key, setting)
    if item.option(value) is None:
        return Transition(conv)
    events: tuple[ev.Event, ...] = (ev.CheckinResumed(now),) if conv.status == "paused" else ()
    t = _answer(replace(conv, status="asking"), item, value, f"[button {value}]", setting, now)
    return replace(t, events=(*events, *t.events))


def remind(conv: Conversation, setting: Setting, now: datetime) -> Transition:
    """A scheduled reminder: re-ask the current item (resuming a paused check-in)."""
    if conv.status == "pending":
        return begin(conv, setting, now)
    if not conv.is_open or conv.current is None:
        return Transition(conv)
    events: tuple[ev.Event, ...] = (ev.CheckinResumed(now),) if conv.status == "paused" else ()
    resumed = replace(conv, status="asking")
    return Transition(resumed, (replace(_ask(resumed, setting), reminder=True),), events)


def expire(conv: Conversation, setting: Setting, now: datetime) -> Transition:
    """Close an unfinished check-in, keeping and scoring what was answered (marked partial)."""
    if not conv.is_open:
        return Transition(conv)
    closed = replace(conv, status="expired", current=None, last_asked=conv.current)
    scores = _partial_scores(conv, setting, now)
    return Transition(closed, (), (*scores, ev.CheckinExpired(now, partial=bool(conv.answers))))


def _partial_scores(conv: Conversation, setting: Setting, now: datetime) -> tuple[ev.Event, ...]:
    """Scores of what was answered before a check-in closed early (marked partial)."""
    answered = [k for k in conv.instruments if _answers_for(conv, k)]
    return tuple(
        ev.ScoreRecorded(_score(conv, setting.instruments[k]), partial=True, at=now)
        for k in answered
    )


def outside(
    text: str, language: str, opted_out: bool, now: datetime
) -> tuple[tuple[ev.Intent, ...], tuple[ev.Event, ...]]:
    """A message when no check-in is open: STOP, START and HELP still work. After opting
    out a patient hears nothing more unless they send START or HELP."""
    command = parse_command(text, language)
    name = command.name if command else None
    crisis, found = risk_reply(text, now, None, ())
    if found:  # opted out or not: the shell knows where it may reply
        return crisis, found
    if name == "start":
        return (ev.OptInConfirmed(already=not opted_out),), (
            (ev.OptedIn(now),) if opted_out else ()
        )
    if name == "help":
        return (ev.Help(in_checkin=False),), ()
    if opted_out:
        return (), ()  # one confirmation when they opted out; silence after, but START / HELP
    if name == "stop":
        return (ev.OptOutConfirmed(),), (ev.OptedOut(now),)
    return (ev.NothingOpen(),), ()


# ---- replies ---------------------------------------------------------------------------


def _command(
    conv: Conversation, command: Command, item: Item, setting: Setting, now: datetime
) -> Transition:
    asking = replace(conv, status="asking", invalid_streak=0)
    resumed: tuple[ev.Event, ...] = (ev.CheckinResumed(now),) if conv.status == "paused" else ()
    match command.name:
        case "back":
            return _back(asking, setting, resumed)
        case "skip":
            return _skip(asking, item, setting, now, resumed)
        case "pause":
            paused = replace(asking, status="paused")
            return Transition(paused, (ev.Paused(),), (ev.CheckinPaused(now),))
        case "stop":
            cancelled = replace(conv, status="cancelled", current=None)
            scores = _partial_scores(conv, setting, now)
            opted_out = ev.OptedOut(now, in_checkin=True, safety_item=safety_reached(conv, setting))
            events_out = (*scores, ev.CheckinCancelled(now), opted_out)
            return Transition(cancelled, (ev.OptOutConfirmed(),), events_out)
        case "start":
            intents = (ev.OptInConfirmed(already=True), _ask(asking, setting))
            return Transition(asking, intents, resumed)
        case "help":
            return Transition(asking, (ev.Help(), _ask(asking, setting)), resumed)


def _invalid(conv: Conversation, problem: Invalid, setting: Setting) -> Transition:
    streak = conv.invalid_streak + 1
    if streak >= INVALID_BEFORE_HELP:
        reset = replace(conv, invalid_streak=0)
        ask = replace(_ask(reset, setting), problem=problem)
        return Transition(reset, (ev.Help(reason="repeated_invalid"), ask))
    counted = replace(conv, invalid_streak=streak)
    return Transition(counted, (replace(_ask(counted, setting), problem=problem),))


def _endorsed(
    conv: Conversation, problem: Invalid, item: Item, setting: Setting, now: datetime
) -> Transition:
    """Crisis resources (once per check-in), the alert, and the item asked again."""
    t = _invalid(conv, Invalid("how_often", "", problem.candidates), setting)
    event = ev.SafetyEndorsed(item.key, _instrument_of(item, setting).key, now)
    if item.crisis is None or item.crisis in conv.crisis_sent:
        return replace(t, events=(event,))
    sent = replace(t.state, crisis_sent=(*t.state.crisis_sent, item.crisis))
    return Transition(sent, (ev.CrisisResources(item.crisis, item.key), *t.intents), (event,))


def _back(conv: Conversation, setting: Setting, events: tuple[ev.Event, ...]) -> Transition:
    """Re-ask the item before the current one in item order (that applies), whatever path
    the patient took to get here; on the first item, re-ask it."""
    sequence = _sequence(conv, setting)
    keys = [i.key for i in sequence]
    here = keys.index(conv.current) if conv.current in keys else 0
    previous = next((i for i in reversed(sequence[:here]) if i.applies(conv.answers)), None)
    if previous is None:
        return Transition(conv, (_ask(conv, setting),), events)
    back = replace(conv, current=previous.key)
    return Transition(back, (_ask(back, setting),), events)


def _skip(
    conv: Conversation, item: Item, setting: Setting, now: datetime, events: tuple[ev.Event, ...]
) -> Transition:
    if not item.skippable:
        return Transition(conv, (replace(_ask(conv, setting), cannot_skip=True),), events)
    if item.key in conv.answers:  # re-asked after BACK: SKIP keeps the earlier answer
        return _advance(conv, item, setting, now, (), events)
    skipped = replace(conv, skipped=(*conv.skipped, item.key))
    return _advance(skipped, item, setting, now, (), (*events, ev.ItemSkipped(item.key, now)))


def _answer(
    conv: Conversation, item: Item, value: AnswerValue, raw: str, setting: Setting, now: datetime
) -> Transition:
    instrument = _instrument_of(item, setting)
    before = conv.answers.get(item.key)
    recorded = ev.AnswerRecorded(
        item.key, instrument.key, value, raw, now, replaced=before is not None, previous=before
    )
    lowered = lowered_after_endorsement(item, before, value) and item.key not in conv.lowered
    answered = replace(
        conv,
        answers={**conv.answers, item.key: value},
        skipped=tuple(k for k in conv.skipped if k != item.key),
        invalid_streak=0,
        lowered=(*conv.lowered, item.key) if lowered else conv.lowered,
    )
    flags = tuple(
        ev.FlagRaised(rule.name, item.key, instrument.key, value, item.safety, now)
        for rule in item.flags
        if rule.fires(value)
    )
    intents: list[ev.Intent] = [ev.Answered(item.key, value)]
    if flags and item.crisis and item.crisis not in conv.crisis_sent:
        # first in the patient's line: the edit of the question just answered (which
        # changes an old message in place) must not hold it up by a per-chat gap
        intents.insert(0, ev.CrisisResources(item.crisis, item.key))
        answered = replace(answered, crisis_sent=(*answered.crisis_sent, item.crisis))
    return _advance(answered, item, setting, now, tuple(intents), (recorded, *flags))


def _advance(
    conv: Conversation,
    after: Item,
    setting: Setting,
    now: datetime,
    intents: Sequence[ev.Intent],
    events: Sequence[ev.Event],
) -> Transition:
    following = _next_item(conv, setting)
    if following is None:
        done = _complete(conv, setting, now, events)
        return replace(done, intents=(*intents, *done.intents))
    moved = replace(conv, current=following.key)
    new_instrument = _instrument_of(following, setting)
    intro = (
        () if new_instrument is _instrument_of(after, setting) else (ev.Intro(new_instrument.key),)
    )
    return Transition(moved, (*intents, *intro, _ask(moved, setting)), tuple(events))


def _complete(
    conv: Conversation, setting: Setting, now: datetime, events: Sequence[ev.Event]
) -> Transition:
    done = replace(conv, status="completed", current=None)
    scores = tuple(_score(conv, setting.instruments[k]) for k in conv.instruments)
    recorded = tuple(ev.ScoreRecorded(s, partial=False, at=now) for s in scores)
    intents = (ev.Completed(scores, setting.show_scores),)
    return Transition(done, intents, (*events, *recorded, ev.CheckinCompleted(now)))


# ---- lookups -----------------------------------------------------------------------------


def _sequence(conv: Conversation, setting: Setting) -> list[Item]:
    return [item for key in conv.instruments for item in setting.instruments[key].items]


def safety_reached(conv: Conversation, setting: Setting) -> str | None:
    """The safety item this check-in has asked (being asked now, or answered), if any."""
    asked = {*conv.answers, conv.current}
    return next(
        (i.key for i in _sequence(conv, setting) if i.key in asked and is_safety_item(i)), None
    )


def _next_item(conv: Conversation, setting: Setting) -> Item | None:
    done = {*conv.answers, *conv.skipped}
    for item in _sequence(conv, setting):
        if item.key not in done and item.applies(conv.answers):
            return item
    return None


def _item(key: str, setting: Setting) -> Item:
    instrument = setting.instruments[key.split(".", 1)[0]]
    return instrument.item(key)


def _instrument_of(item: Item, setting: Setting) -> Instrument:
    return setting.instruments[item.key.split(".", 1)[0]]


def _ask(conv: Conversation, setting: Setting) -> ev.Ask:
    assert conv.current is not None
    item = _item(conv.current, setting)
    applicable = [i.key for i in _instrument_of(item, setting).items if i.applies(conv.answers)]
    position = applicable.index(item.key) + 1 if item.key in applicable else len(applicable)
    return ev.Ask(item.key, position, len(applicable))


def _answers_for(conv: Conversation, instrument: str) -> dict[str, AnswerValue]:
    prefix = f"{instrument}."
    return {k: v for k, v in conv.answers.items() if k.startswith(prefix)}


def _score(conv: Conversation, instrument: Instrument) -> ScoreResult:
    return score(instrument, _answers_for(conv, instrument.key), conv.lowered)


# ---- persistence (plain JSON-able values) ------------------------------------------------

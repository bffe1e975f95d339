"""Alert rules applied to what happened: an answer, a score, missed check-ins. Pure.

* :func:`on_answer` runs on every answer, before the questionnaire ends: suicidality
  items, side-effect red flags, blood pressure and the other answer flags; also on a late
  answer to the safety item of an expired check-in (:func:`on_late_answer`).
* :func:`on_endorsed` (a suicidality item endorsed in words: crisis) and
  :func:`on_risk_language` (risk language in a message: the ``risk_language`` rule).
* :func:`on_score` runs on every scored administration: an unanswered safety item, severe
  totals, worsening (every score that meets it, measured from the best score so far and
  said so in the detail) and the milestones (early improvement, response, remission,
  non-response, relapse, loss of response: only on the score that makes them true, so a
  non-responder is reported once, not at every later check-in). Response and remission
  need a baseline at the instrument's threshold; below it the detail carries
  ``baseline_below_threshold``.
* :func:`on_missed` runs when a check-in expires: missed check-ins in a row.

Each returns triggers; :mod:`bot.domain.alerts.lifecycle` turns a trigger into an alert.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Literal

from bot.domain.alerts.lifecycle import AlertState
from bot.domain.alerts.rules import (
    RED_FLAG_PREFIX,
    RISK_LANGUAGE,
    SUICIDALITY_FLAG,
    AlertRules,
    DetailValue,
    Level,
    Rule,
    Trigger,
    highest,
    reached,
)
from bot.domain.instruments import AnswerValue, BloodPressure, Instrument, Item
from bot.domain.outcomes import Assessment, Observation, assess
from bot.domain.scoring import SAFETY_ITEM_MISSING, ScoreResult

Detail = dict[str, DetailValue]
MILESTONES = (
    "early_improvement",
    "response",
    "remission",
    "non_response",
    "relapse",
    "loss_of_response",
)
SERIOUS: tuple[Level, ...] = ("urgent", "crisis")


# ---- answers -----------------------------------------------------------------------------


def on_answer(
    instrument: Instrument, item_key: str, value: AnswerValue, rules: AlertRules, now: datetime
) -> list[Trigger]:
    """Triggers from one answer, at once (the questionnaire may never be finished)."""
    item = instrument.item(item_key)
    fired = [f.name for f in item.flags if f.fires(value)]
    detail = _answer_detail(instrument, item, value)
    triggers = [t for t in [_suicidality(item, value, fired, detail, rules, now)] if t]
    for flag in fired:
        rule = rules.flag_rule(flag)
        if flag != SUICIDALITY_FLAG and rule.enabled:
            named = {"symptoms": item.key} if flag.startswith(RED_FLAG_PREFIX) else {}
            triggers.append(Trigger(rule.key, rule.level, now, {**detail, "flag": flag, **named}))
    return triggers


def on_late_answer(
    instrument: Instrument, item_key: str, value: AnswerValue, rules: AlertRules, now: datetime
) -> list[Trigger]:
    """Triggers from an answer to the safety item of a check-in that had expired: as
    :func:`on_answer`, the detail marked ``late``."""
    triggers = on_answer(instrument, item_key, value, rules, now)
    return [replace(t, detail={**t.detail, "late": True}) for t in triggers]


def on_endorsed(
    instrument: Instrument, item_key: str, rules: AlertRules, now: datetime
) -> list[Trigger]:
    """A suicidality item answered "yes" (or with risk language) in words, not as a value:
    the suicidality alert at crisis level, since how often is not yet known."""
    item = instrument.item(item_key)
    detail: Detail = {"instrument": instrument.key, "item": item.key, "item_number": item.number}
    return [Trigger(rules.suicidality.key, "crisis", now, {**detail, "endorsed": True})]


def on_risk_language(rules: AlertRules, now: datetime, in_checkin: bool) -> list[Trigger]:
    """Risk language in a message: that it was detected, when (the trigger's time) and
    whether a check-in was open. Never the words."""
    rule = rules.risk_language
    return [Trigger(RISK_LANGUAGE, rule.level, now, {"in_checkin": in_checkin})]


def _suicidality(
    item: Item,
    value: AnswerValue,
    fired: Sequence[str],
    detail: Detail,
    rules: AlertRules,
    now: datetime,
) -> Trigger | None:
    rule = rules.suicidality
    if not rule.enabled:
        return None
    graded = None
    if item.key in rule.items and isinstance(value, int):
        graded = reached(rule.items[item.key], value)
    level = highest([graded, rule.level if SUICIDALITY_FLAG in fired else None])
    return None if level is None else Trigger(rule.key, level, now, detail)


def _answer_detail(instrument: Instrument, item: Item, value: AnswerValue) -> Detail:
    detail: Detail = {"instrument": instrument.key, "item": item.key, "item_number": item.number}
    if isinstance(value, BloodPressure):
        return {**detail, "systolic": value.systolic, "diastolic": value.diastolic}
    return {**detail, "value": value}


# ---- scores ------------------------------------------------------------------------------


def on_score(
    instrument: Instrument,
    result: ScoreResult,
    history: Sequence[Observation],
    rules: AlertRules,
    now: datetime,
    session: int | None = None,
    baseline: int | None = None,
) -> list[Trigger]:
    """Triggers from one score. `history`: this instrument's earlier observations (any
    order); `session`: treatment sessions completed before this score (None: before the
    series); `baseline`: a clinician-chosen baseline, else the one outcomes infer."""
    if result.instrument != instrument.key:
        raise ValueError(f"a {result.instrument} score is not a {instrument.key} score")
    triggers = _missing_safety(instrument, result, rules, now)
    if not result.valid or result.total is None:
        return triggers
    detail: Detail = {"instrument": instrument.key, "total": result.total, "session": session}
    severe = _severe(instrument, result.total, rules, now, {**detail, "band": result.band})
    current = Observation(now, result.total, session)
    trajectory = _trajectory(instrument, history, current, baseline, rules, detail)
    return [*triggers, *severe, *trajectory]


def _missing_safety(
    instrument: Instrument, result: ScoreResult, rules: AlertRules, now: datetime
) -> list[Trigger]:
    rule = rules.safety_item_missing
    if not rule.enabled or SAFETY_ITEM_MISSING not in result.flags:
        return []
    missing = [instrument.item(k) for k in result.missing if instrument.item(k).safety]
    detail: Detail = {"instrument": instrument.key}
    if missing:
        detail |= {"item": missing[0].key, "item_number": missing[0].number}
    return [Trigger(rule.key, rule.level, now, detail)]


def _severe(
    instrument: Instrument, total: int, rules: AlertRules, now: datetime, detail: Detail
) -> list[Trigger]:
    rule = rules.severe_score
    thresholds = rule.instruments.get(instrument.key)
    level = reached(thresholds, total) if rule.enabled and thresholds else None
    if level is None or thresholds is None:
        return []
    return [Trigger(rule.key, level, now, {**detail, "threshold": thresholds[level]})]


def _trajectory(
    instrument: Instrument,
    history: Sequence[Observation],
    current: Observation,
    baseline: int | None,
    rules: AlertRules,
    detail: Detail,
) -> list[Trigger]:
    after = assess([*history, current], instrument.outcomes, baseline)
    detail = {**detail, **_change(after)}
    triggers = _worsening(instrument, history, current, after, rules, detail)
    if not history:
        return triggers  # a first score is a baseline, not a milestone
    before = assess(history, instrument.outcomes, baseline)
    new = set(after.statuses) - set(before.statuses)
    for key in MILESTONES:
        rule = rules.rule(key)
        if rule.enabled and key in new:
            triggers.append(Trigger(rule.key, rule.level, current.at, detail))
    return triggers


def _change(a: Assessment) -> Detail:
    pct = None if a.improvement_pct is None else round(a.improvement_pct, 1)
    detail: Detail = {"baseline": a.baseline, "change": a.change, "improvement_pct": pct}
    if a.baseline_below_threshold:
        detail["baseline_below_threshold"] = True
    return detail


def _worsening(
    instrument: Instrument,
    history: Sequence[Observation],
    current: Observation,
    after: Assessment,
    rules: AlertRules,
    detail: Detail,
) -> list[Trigger]:
    rule = rules.worsening
    prior = sorted(history, key=lambda o: o.at)
    assert after.baseline is not None  # `after` assessed at least `current`
    best = min([after.baseline, *(o.total for o in prior)])  # never above the baseline
    previous = prior[-1].total if prior else None
    threshold = rule.threshold(instrument.key, instrument.outcomes.reliable_change)
    from_best = threshold is not None and current.total - best >= threshold
    step = rule.rise_from_previous.get(instrument.key)
    from_previous = step is not None and previous is not None and current.total - previous >= step
    if not rule.enabled or not (from_best or from_previous):
        return []
    facts: Detail = {
        "best": best,
        "rise_from_best": current.total - best,
        "previous": previous,
        "reliable_change": instrument.outcomes.reliable_change,
        "threshold": threshold if from_best else step,
        "measured_from": "best" if from_best else "previous",
    }
    return [Trigger(rule.key, rule.level, current.at, {**detail, **facts})]


# ---- missed check-ins --------------------------------------------------------------------


@dataclass(frozen=True)
class CheckinOutcome:
    """How one check-in ended, as stored (``checkin.status``, ``checkin.partial``)."""

    due_at: datetime
    status: Literal["completed", "expired", "cancelled"]
    partial: bool = False  # expired with some answers: the patient did reply

    @property
    def missed(self) -> bool:
        return self.status == "expired" and not self.partial


def on_missed(
    recent: Sequence[CheckinOutcome],
    open_alerts: Sequence[AlertState],
    rules: AlertRules,
    now: datetime,
) -> list[Trigger]:
    """A trigger when the latest check-ins (cancelled ones aside) were all missed."""
    rule = rules.missed_checkins
    counted = [c for c in sorted(recent, key=lambda c: c.due_at) if c.status != "cancelled"]
    streak = _trailing_missed(counted)
    if not rule.enabled or len(streak) < rule.in_a_row:
        return []
    serious = any(_serious(a, rule) for a in open_alerts)
    detail: Detail = {
        "missed_in_a_row": len(streak),
        "first_missed_due_at": streak[0].due_at.isoformat(),
        "open_serious_alert": serious,
    }
    level = rule.level_with_open_alert if serious else rule.level
    return [Trigger(rule.key, level, now, detail)]


def _trailing_missed(outcomes: Sequence[CheckinOutcome]) -> list[CheckinOutcome]:
    streak: list[CheckinOutcome] = []
    for outcome in reversed(outcomes):
        if not outcome.missed:
            break
        streak.insert(0, outcome)
    return streak


def _serious(alert: AlertState, rule: Rule) -> bool:
    return alert.status != "resolved" and alert.rule != rule.key and alert.level in SERIOUS

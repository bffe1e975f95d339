"""Opting out as an alert. Pure.

A patient who replies STOP (SMS, or the command on any channel, in a check-in or not),
blocks the bot (Telegram) or declines the SMS invitation is no longer measured; after STOP
the planned check-ins are cancelled, so ``missed_checkins`` can never fire either. The
``opted_out`` rule tells the clinician: ``routine`` normally, ``urgent`` (the rule's
``level_at_risk``) when the patient may be at risk, which is any of

* an unresolved crisis or urgent alert (another rule's);
* a safety item endorsed within the rule's ``recent`` window (14 days): the item's own
  suicidality flag fired on the answer;
* a stop in a check-in that had reached a safety item (asked it, answered or not).

A *safety item* here is one whose definition sends suicidality crisis resources
(``crisis = "suicidality"``: PHQ-9 item 9, QIDS-SR16 item 12, MADRS-S item 9); the
side-effect red flags are safety items of another kind and do not count.

The shell gathers the facts (:class:`OptOutFacts`); :func:`on_opted_out` decides.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from bot.domain.alerts.lifecycle import AlertState
from bot.domain.alerts.rules import (
    SUICIDALITY_FLAG,
    AlertRules,
    DetailValue,
    Level,
    OptOutRule,
    Trigger,
    highest,
)
from bot.domain.instruments import AnswerValue, Item

OptOutHow = Literal["stop", "blocked", "declined"]
SERIOUS: tuple[Level, ...] = ("urgent", "crisis")


@dataclass(frozen=True)
class OptOutFacts:
    """What is known when a patient stops: how, and the three signs of risk."""

    how: OptOutHow
    in_checkin: bool = False  # a check-in was open (sent, in progress or paused)
    open_serious_alert: bool = False
    endorsed_recently: bool = False
    reached_item: Item | None = None  # the safety item the open check-in had reached

    @property
    def at_risk(self) -> bool:
        return self.open_serious_alert or self.endorsed_recently or self.reached_item is not None


def opt_out_level(rule: OptOutRule, facts: OptOutFacts) -> Level:
    """`level`, or `level_at_risk` when any sign of risk holds (the higher of the two)."""
    if not facts.at_risk:
        return rule.level
    top = highest([rule.level, rule.level_at_risk])
    assert top is not None
    return top


def on_opted_out(facts: OptOutFacts, rules: AlertRules, now: datetime) -> list[Trigger]:
    """The ``opted_out`` trigger, with the facts as plain detail (no wording, no replies)."""
    rule = rules.opted_out
    if not rule.enabled:
        return []
    item = facts.reached_item
    detail: dict[str, DetailValue] = {
        "how": facts.how,
        "in_checkin": facts.in_checkin,
        "open_serious_alert": facts.open_serious_alert,
        "endorsed_within_days": rule.recent.days if facts.endorsed_recently else None,
        "reached_instrument": item.key.split(".", 1)[0] if item else None,
        "reached_item_number": item.number if item else None,
    }
    return [Trigger(rule.key, opt_out_level(rule, facts), now, detail)]


def is_safety_item(item: Item) -> bool:
    """The item sends suicidality crisis resources when its flag fires."""
    return item.crisis == SUICIDALITY_FLAG


def endorsed(item: Item, value: AnswerValue) -> bool:
    """A safety item answered at or above its suicidality flag's threshold."""
    return is_safety_item(item) and any(
        f.name == SUICIDALITY_FLAG and f.fires(value) for f in item.flags
    )


def endorsed_since(answers: Iterable[tuple[Item, AnswerValue, datetime]], since: datetime) -> bool:
    """Any of these answers (item, value, when) endorsed a safety item at or after `since`."""
    return any(at >= since and endorsed(item, value) for item, value, at in answers)


def serious_open(alerts: Iterable[AlertState], rule: OptOutRule) -> bool:
    """An unresolved crisis or urgent alert of another rule."""
    return any(a.status != "resolved" and a.rule != rule.key and a.level in SERIOUS for a in alerts)

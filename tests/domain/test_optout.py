"""The opted_out rule: routine normally, urgent when the patient may be at risk; its
configuration; which items are safety items; and the conversation marking a STOP that
came after the check-in reached one."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from bot.domain import events as ev
from bot.domain.alerts import (
    DEFAULT_RULES,
    AlertState,
    Level,
    OptOutFacts,
    OptOutHow,
    endorsed,
    endorsed_since,
    is_safety_item,
    on_opted_out,
    rules_from_mapping,
    serious_open,
)
from bot.domain.conversation import Conversation, Setting, begin, safety_reached, step
from bot.domain.errors import ConfigError
from bot.instruments import Catalog

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Case:
    how: OptOutHow
    serious: bool
    endorsed: bool
    reached: bool
    level: Level


LEVELS = [
    Case("stop", False, False, False, "routine"),  # STOP before any answer: today nothing
    Case("blocked", False, False, False, "routine"),
    Case("declined", False, False, False, "routine"),
    Case("stop", True, False, False, "urgent"),
    Case("stop", False, True, False, "urgent"),
    Case("stop", False, False, True, "urgent"),
    Case("blocked", False, False, True, "urgent"),
    Case("blocked", True, True, True, "urgent"),
]


@pytest.mark.parametrize("case", LEVELS)
def test_the_level_is_routine_unless_a_sign_of_risk_holds(catalog: Catalog, case: Case) -> None:
    """Any one of the three signs of risk makes the alert urgent; none leaves it routine."""
    q9 = catalog.get("phq9").item("phq9.q9")
    facts = OptOutFacts(case.how, True, case.serious, case.endorsed, q9 if case.reached else None)
    (trigger,) = on_opted_out(facts, DEFAULT_RULES, T0)
    assert (trigger.rule, trigger.level, trigger.at) == ("opted_out", case.level, T0)
    assert trigger.detail["how"] == case.how
    assert trigger.detail["open_serious_alert"] is case.serious
    assert trigger.detail["endorsed_within_days"] == (14 if case.endorsed else None)
    assert trigger.detail["reached_item_number"] == (9 if case.reached else None)


def test_the_detail_holds_plain_values_only(catalog: Catalog) -> None:
    """Keys and numbers, never an item's wording."""
    q9 = catalog.get("phq9").item("phq9.q9")
    (trigger,) = on_opted_out(OptOutFacts("stop", True, reached_item=q9), DEFAULT_RULES, T0)
    assert trigger.detail["reached_instrument"] == "phq9"
    assert all(isinstance(v, str | int | bool) or v is None for v in trigger.detail.values())
    assert not [v for v in trigger.detail.values() if isinstance(v, str) and len(v) > 12]


def test_safety_items_are_the_suicidality_items(full_catalog: Catalog) -> None:
    """PHQ-9 item 9, QIDS-SR16 item 12 and MADRS-S item 9; not the red-flag symptoms."""
    found = {i.key for ins in full_catalog for i in ins.items if is_safety_item(i)}
    assert found == {"phq9.q9", "qids_sr16.q12", "madrs_s.q9"}


@pytest.mark.parametrize(
    ("item", "value", "expected"),
    [
        ("phq9.q9", 0, False),
        ("phq9.q9", 1, True),
        ("qids_sr16.q12", 1, True),
        ("madrs_s.q9", 1, False),  # MADRS-S item 9 flags from 2 (2-3 urgent, 4-6 crisis)
        ("madrs_s.q9", 2, True),
        ("side_effects.red_flags", 1, False),  # a safety item of another kind
        ("phq9.q1", 3, False),
    ],
)
def test_endorsed_follows_the_items_own_flag(
    full_catalog: Catalog, item: str, value: int, expected: bool
) -> None:
    """An answer endorses a safety item when the item's suicidality flag fires on it."""
    instrument = full_catalog.get(item.split(".")[0])
    assert endorsed(instrument.item(item), value) is expected


def test_endorsed_since_counts_the_window(catalog: Catalog) -> None:
    """An endorsement inside the window counts; one before it, or a zero, does not."""
    q9 = catalog.get("phq9").item("phq9.q9")
    since = T0 - timedelta(days=14)
    assert endorsed_since([(q9, 1, since)], since)
    assert not endorsed_since([(q9, 1, since - timedelta(seconds=1))], since)
    assert not endorsed_since([(q9, 0, T0)], since)


def alert(rule: str, level: Level, status: str = "open") -> AlertState:
    return AlertState("ABC234", rule, level, T0, None, status=status)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("alerts", "expected"),
    [
        ([], False),
        ([alert("suicidality", "urgent")], True),
        ([alert("side_effect_red_flag", "crisis", "acknowledged")], True),
        ([alert("suicidality", "crisis", "resolved")], False),
        ([alert("worsening", "routine")], False),
        ([alert("opted_out", "urgent")], False),  # its own earlier alert does not count
    ],
)
def test_serious_open_means_another_unresolved_urgent_or_crisis_alert(
    alerts: list[AlertState], expected: bool
) -> None:
    """Acknowledged counts as unresolved; resolved, routine and opted_out itself do not."""
    assert serious_open(alerts, DEFAULT_RULES.opted_out) is expected


def test_configuration_changes_the_levels_and_window() -> None:
    """level_at_risk and recent_days are read; the rule cannot be disabled or weakened."""
    text = '[rules.opted_out]\nlevel_at_risk = "crisis"\nrecent_days = 30\ncooldown_h = 2'
    rules = rules_from_mapping(tomllib.loads(text), "config.toml")
    assert rules.opted_out.level_at_risk == "crisis"
    assert rules.opted_out.recent == timedelta(days=30)
    assert rules.cooldown_for("opted_out") == timedelta(hours=2)
    (trigger,) = on_opted_out(OptOutFacts("stop", endorsed_recently=True), rules, T0)
    assert (trigger.level, trigger.detail["endorsed_within_days"]) == ("crisis", 30)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("enabled = false", "alerts.rules.opted_out.enabled"),
        ('level = "info"', "alerts.rules.opted_out.level"),
        ('level_at_risk = "routine"', "alerts.rules.opted_out.level_at_risk"),
        ("recent_days = 0", "alerts.rules.opted_out.recent_days"),
        ("in_a_row = 2", "alerts.rules.opted_out.in_a_row"),
    ],
)
def test_configuration_errors_name_the_key(text: str, key: str) -> None:
    """The opt-out alert is a safety rule: never off, never info, never routine at risk."""
    with pytest.raises(ConfigError) as caught:
        rules_from_mapping(tomllib.loads(f"[rules.opted_out]\n{text}"), "config.toml")
    assert caught.value.key == key


def phq9_asked(catalog: Catalog, answers: list[str]) -> tuple[Conversation, Setting]:
    """A PHQ-9 begun and given these replies."""
    setting = Setting({i.key: i for i in catalog})
    conv = begin(Conversation(("phq9",)), setting, T0).state
    for reply in answers:
        conv = step(conv, reply, setting, T0).state
    return conv, setting


@pytest.mark.parametrize(
    ("answers", "reached"),
    [([], None), (["0"] * 7, None), (["0"] * 8, "phq9.q9"), (["1"] * 9, "phq9.q9")],
)
def test_stop_says_whether_the_check_in_reached_the_safety_item(
    catalog: Catalog, answers: list[str], reached: str | None
) -> None:
    """STOP at item 1 or 8: not reached; at item 9 (asked, unanswered) or after it: reached."""
    conv, setting = phq9_asked(catalog, answers)
    assert conv.is_open and conv.current == f"phq9.q{len(answers) + 1}"
    assert safety_reached(conv, setting) == reached
    t = step(conv, "STOP", setting, T0)
    (opted_out,) = [e for e in t.events if isinstance(e, ev.OptedOut)]
    assert opted_out == ev.OptedOut(T0, in_checkin=True, safety_item=reached)

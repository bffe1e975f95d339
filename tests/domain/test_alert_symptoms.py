"""Red-flag alerts name the symptom, and an alert keeps when crisis resources were sent:
the detail a trigger carries, and what an update keeps and whom it tells. Pure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot.domain.alerts import (
    CRISIS_SENT_AT,
    DEFAULT_RULES,
    SYMPTOMS,
    AlertRaised,
    AlertUpdated,
    Trigger,
    on_answer,
    raise_or_update,
)
from bot.instruments import Catalog

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
PRIMARY = 1


def red_flag(catalog: Catalog, item: str, at: datetime) -> Trigger:
    (trigger,) = on_answer(catalog.get("side_effects"), item, 1, DEFAULT_RULES, at)
    return trigger


def test_a_red_flag_trigger_names_its_symptom_item(catalog: Catalog) -> None:
    """The symptom's item is in the detail; the opening yes/no names none."""
    assert red_flag(catalog, "side_effects.chest_pain", T0).detail[SYMPTOMS] == (
        "side_effects.chest_pain"
    )
    assert SYMPTOMS not in red_flag(catalog, "side_effects.red_flags", T0).detail


def test_each_new_symptom_is_kept_and_told_to_the_clinician(catalog: Catalog) -> None:
    """The alert raised on the opening "yes" is updated by each symptom named after it:
    the symptoms accumulate in order, and the clinician already told is told again; a
    symptom named twice is a repeat and tells nobody."""
    first = raise_or_update(
        [], red_flag(catalog, "side_effects.red_flags", T0), T0, DEFAULT_RULES, PRIMARY, "AAAAAA"
    )
    assert isinstance(first.event, AlertRaised) and first.notify == (PRIMARY,)
    at = T0 + timedelta(seconds=30)
    chest = raise_or_update(
        [first.alert],
        red_flag(catalog, "side_effects.chest_pain", at),
        at,
        DEFAULT_RULES,
        7,
        "BBBBBB",
    )
    assert isinstance(chest.event, AlertUpdated) and chest.notify == (PRIMARY,)
    assert chest.alert.detail[SYMPTOMS] == "side_effects.chest_pain"
    at += timedelta(seconds=30)
    breath = raise_or_update(
        [chest.alert],
        red_flag(catalog, "side_effects.short_of_breath", at),
        at,
        DEFAULT_RULES,
        PRIMARY,
        "CCCCCC",
    )
    assert breath.alert.detail[SYMPTOMS] == "side_effects.chest_pain,side_effects.short_of_breath"
    assert breath.notify == (PRIMARY,) and breath.alert.last_notified_at == at
    again = raise_or_update(
        [breath.alert],
        red_flag(catalog, "side_effects.chest_pain", at),
        at,
        DEFAULT_RULES,
        PRIMARY,
        "DDDDDD",
    )
    assert again.notify == () and again.alert.detail[SYMPTOMS] == breath.alert.detail[SYMPTOMS]
    assert {first.alert.code, again.alert.code} == {"AAAAAA"}  # fmt: skip


def test_an_update_keeps_when_crisis_resources_were_sent(catalog: Catalog) -> None:
    """Item 9 again, in a check-in where the crisis message was already sent: the alert
    still says when it was sent the first time."""
    phq9 = catalog.get("phq9")
    (trigger,) = [
        t for t in on_answer(phq9, "phq9.q9", 1, DEFAULT_RULES, T0) if t.rule == "suicidality"
    ]
    sent = Trigger(
        trigger.rule, trigger.level, T0, {**trigger.detail, CRISIS_SENT_AT: T0.isoformat()}
    )
    raised = raise_or_update([], sent, T0, DEFAULT_RULES, PRIMARY, "AAAAAA")
    later = T0 + timedelta(minutes=5)
    (repeat,) = [
        t for t in on_answer(phq9, "phq9.q9", 2, DEFAULT_RULES, later) if t.rule == "suicidality"
    ]
    updated = raise_or_update([raised.alert], repeat, later, DEFAULT_RULES, PRIMARY, "BBBBBB")
    assert updated.alert.level == "crisis" and updated.alert.detail["value"] == 2
    assert updated.alert.detail[CRISIS_SENT_AT] == T0.isoformat()

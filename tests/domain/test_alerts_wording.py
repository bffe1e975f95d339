"""The wording_missing rule: a due instrument without the patient's language is told to the
clinician once per patient and instrument, one alert per instrument, configurable like
every rule."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from bot.domain.alerts import (
    DEFAULT_RULES,
    WORDING_MISSING,
    AlertRaised,
    AlertUpdated,
    on_wording_missing,
    raise_or_update,
    rules_from_mapping,
)
from bot.domain.errors import ConfigError

T0 = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("missing", "told", "expected"),
    [
        (["gad7"], [], ["gad7"]),  # first time: told
        (["gad7"], ["gad7"], []),  # told before (any status): not again
        (["gad7", "qids_sr16"], ["gad7"], ["qids_sr16"]),  # only what is new
        (["gad7", "gad7"], [], ["gad7"]),  # once, even if named twice
        ([], [], []),
    ],
)
def test_one_trigger_per_instrument_not_told_yet(
    missing: list[str], told: list[str], expected: list[str]
) -> None:
    """Each instrument the patient cannot be asked, unless an alert already named it."""
    triggers = on_wording_missing(missing, "es", told, DEFAULT_RULES, T0)
    assert [t.detail["instrument"] for t in triggers] == expected
    assert all(t.rule == WORDING_MISSING and t.level == "routine" for t in triggers)
    assert all(dict(t.detail) == {"instrument": t.detail["instrument"], "language": "es"}
               for t in triggers)  # fmt: skip


def test_each_instrument_is_its_own_alert() -> None:
    """A second instrument raises a new alert (its own code, a notification) rather than
    updating the first one's; the same instrument again updates its alert."""
    (gad7,) = on_wording_missing(["gad7"], "es", [], DEFAULT_RULES, T0)
    (qids,) = on_wording_missing(["qids_sr16"], "es", [], DEFAULT_RULES, T0)
    first = raise_or_update([], gad7, T0, DEFAULT_RULES, 7, "AAAAAA")
    second = raise_or_update([first.alert], qids, T0, DEFAULT_RULES, 7, "BBBBBB")
    assert isinstance(second.event, AlertRaised) and second.notify == (7,)
    assert second.alert.detail["instrument"] == "qids_sr16"
    again = raise_or_update([first.alert, second.alert], gad7, T0, DEFAULT_RULES, 7, "CCCCCC")
    assert isinstance(again.event, AlertUpdated) and again.alert.code == "AAAAAA"


def test_the_rule_is_configurable() -> None:
    """Level, enabled and cool-down like any rule; disabled, it raises nothing."""
    rules = rules_from_mapping({"rules": {"wording_missing": {"level": "urgent"}}}, "c.toml")
    assert on_wording_missing(["gad7"], "es", [], rules, T0)[0].level == "urgent"
    off = rules_from_mapping({"rules": {"wording_missing": {"enabled": False}}}, "c.toml")
    assert on_wording_missing(["gad7"], "es", [], off, T0) == []
    assert replace(DEFAULT_RULES).cooldown_for(WORDING_MISSING) == timedelta(hours=24)
    with pytest.raises(ConfigError, match=r"alerts\.rules\.wording_missing\.flags"):
        rules_from_mapping({"rules": {"wording_missing": {"flags": ["x"]}}}, "c.toml")

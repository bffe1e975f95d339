"""Recall windows: each instrument's definition records the days its questions ask about,
and a protocol that asks an instrument again within half that window is noted, from its
rules alone and from a planned series."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, time, timedelta
from typing import Any

import pytest

from bot.domain.definitions import instrument_from_mapping
from bot.domain.errors import DefinitionError
from bot.domain.schedule import (
    Calendar,
    EnrollmentRelative,
    Protocol,
    Rule,
    SessionRelative,
    example_protocols,
    protocol_from_mapping,
)
from bot.domain.schedule.recall import Asking, plan_overlaps, protocol_overlaps, shorter_recall
from bot.instruments import Catalog
from tests.domain.test_definitions import phq9_data

DAYS = {"phq9": 14, "phq2": 14, "gad7": 14, "qids_sr16": 7, "madrs_s": 3}
RECALL = {key: timedelta(days=days) for key, days in DAYS.items()}


def test_every_shipped_instrument_records_its_recall_window(full_catalog: Catalog) -> None:
    """PHQ-9, PHQ-2, GAD-7 14 days, QIDS-SR16 7, MADRS-S 3 (instruments.md); the
    side-effect checklist asks "since your session" and has none."""
    found = {i.key: i.recall_days for i in full_catalog}
    assert found == {**DAYS, "side_effects": None}


@pytest.mark.parametrize("value", [0, 400, "14", True])
def test_a_recall_window_out_of_range_or_not_a_number_is_refused(value: Any) -> None:
    """recall_days is validated with the other fields, naming the file and the field."""
    data = copy.deepcopy(phq9_data())
    data["recall_days"] = value
    with pytest.raises(DefinitionError) as caught:
        instrument_from_mapping(data, "phq9.toml")
    assert str(caught.value).startswith("phq9.toml: recall_days: ")


def _example(name: str) -> Protocol:
    return protocol_from_mapping(name, example_protocols()[name], "config.toml")


def _rule(name: str, key: str, timing: Any) -> Rule:
    return Rule(name, (key,), timing)


def _on(*days: int, every: int = 1) -> Calendar:
    return Calendar(frozenset(days), time(9), every_weeks=every)


CASES = [  # (rules, instrument noted, gap, rules named)
    ([_rule("before", "phq9", SessionRelative(timedelta(hours=-2))),
      _rule("after", "phq9", SessionRelative(timedelta(hours=24)))],
     "phq9", timedelta(hours=26), ("before", "after")),
    ([_rule("weekly", "phq9", _on(0))], None, None, None),
    ([_rule("twice", "phq9", _on(0, 3))], "phq9", timedelta(days=3), ("twice",)),
    ([_rule("weekly", "qids_sr16", _on(0))], None, None, None),
    ([_rule("twice", "qids_sr16", _on(0, 3))], "qids_sr16", timedelta(days=3), ("twice",)),
    ([_rule("thrice", "qids_sr16", _on(0, 2, 4))], "qids_sr16", timedelta(days=2), ("thrice",)),
    ([_rule("thrice", "madrs_s", _on(0, 2, 4))], None, None, None),
    ([_rule("before", "phq9", SessionRelative(timedelta(hours=-2), numbers=frozenset({1}))),
      _rule("after", "phq9", SessionRelative(timedelta(hours=24), numbers=frozenset({2})))],
     None, None, None),  # never around the same session
    ([_rule("base", "phq9", EnrollmentRelative()), _rule("fortnight", "phq9", _on(0, every=2))],
     None, None, None),
    ([_rule("after", "side_effects", SessionRelative(timedelta(hours=24))),
      _rule("later", "side_effects", SessionRelative(timedelta(hours=48)))],
     None, None, None),  # no recall window: never noted
]  # fmt: skip


@pytest.mark.parametrize(("rules", "key", "gap", "names"), CASES)
def test_rules_asking_within_half_the_recall_window(
    rules: list[Rule], key: str | None, gap: timedelta | None, names: tuple[str, ...] | None
) -> None:
    """From the rules alone: the closest pair of askings under half the window, or nothing."""
    found = protocol_overlaps(Protocol("p", tuple(rules)), RECALL)
    assert [(o.instrument, o.gap, o.rules) for o in found] == ([(key, gap, names)] if key else [])


def test_the_shipped_protocols() -> None:
    """ketamine-iv-6 asks the PHQ-9 26 h apart around each infusion (noted); weekly-phq9,
    a PHQ-9 every 7 days against its 14-day recall, is not."""
    [overlap] = protocol_overlaps(_example("ketamine-iv-6"), RECALL)
    assert (overlap.instrument, overlap.gap) == ("phq9", timedelta(hours=26))
    assert "last 14 days" in overlap.describe()
    assert protocol_overlaps(_example("weekly-phq9"), RECALL) == []


def test_a_planned_series_notes_each_asking_too_soon() -> None:
    """Three infusions two days apart, PHQ-9 2 h before and 24 h after each: every asking
    after the first is noted; a QIDS-SR16 a week later is not."""
    start = datetime(2030, 3, 4, 19, tzinfo=UTC)
    askings = []
    for n in range(3):
        session = start + timedelta(days=2 * n, hours=2)
        askings.append(Asking(session - timedelta(hours=2), ("before",), ("phq9",)))
        askings.append(Asking(session + timedelta(hours=24), ("after",), ("side_effects", "phq9")))
    askings += [Asking(start, ("weekly",), ("qids_sr16",))]
    askings += [Asking(start + timedelta(days=7), ("weekly",), ("qids_sr16",))]
    found = plan_overlaps(askings, RECALL)
    assert [(o.instrument, o.gap) for o in found] == [
        ("phq9", timedelta(hours=26)),
        ("phq9", timedelta(hours=22)),
        ("phq9", timedelta(hours=26)),
        ("phq9", timedelta(hours=22)),
        ("phq9", timedelta(hours=26)),
    ]


def test_shorter_recall_alternatives() -> None:
    """Only instruments the clinic can ask, with a shorter window, shortest first."""
    assert shorter_recall("phq9", RECALL, ["phq9", "gad7", "qids_sr16", "madrs_s"]) == [
        "madrs_s",
        "qids_sr16",
    ]
    assert shorter_recall("phq9", RECALL, ["phq9", "gad7", "phq2"]) == []
    assert shorter_recall("madrs_s", RECALL, list(RECALL)) == []

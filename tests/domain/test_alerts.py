"""Alert rules at their thresholds, the alert lifecycle, and the [alerts] configuration."""

from __future__ import annotations

import random
import tomllib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.domain import instruments as ins
from bot.domain.alerts import (
    DEFAULT_RULES,
    LEVELS,
    PATIENT,
    SYSTEM,
    Actor,
    AlertAcknowledged,
    AlertEscalated,
    AlertRaised,
    AlertResolutionRefused,
    AlertResolved,
    AlertRules,
    AlertUpdated,
    CheckinOutcome,
    Level,
    Rule,
    Trigger,
    actor_of,
    check_references,
    clinician,
    on_answer,
    on_missed,
    on_score,
    rules_from_mapping,
)
from bot.domain.alerts.lifecycle import (
    CODE_ALPHABET,
    AlertState,
    Change,
    acknowledge,
    escalate,
    new_code,
    normalize_code,
    raise_or_update,
    resolve,
)
from bot.domain.errors import ConfigError
from bot.domain.instruments import BloodPressure, Instrument
from bot.domain.outcomes import Observation
from bot.domain.scoring import ScoreResult, score
from bot.instruments import Catalog

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
PRIMARY, BACKUP = 1, 2
Fired = set[tuple[str, Level]]


def fired(triggers: Sequence[Trigger]) -> Fired:
    return {(t.rule, t.level) for t in triggers}


# ---- the tables: every threshold and just below ------------------------------------------


@dataclass(frozen=True)
class AnswerCase:
    instrument: str
    item: str
    value: int | BloodPressure
    expected: Fired

    def run(self, catalog: Catalog, rules: AlertRules = DEFAULT_RULES) -> list[Trigger]:
        return on_answer(catalog.get(self.instrument), self.item, self.value, rules, T0)


ANSWERS = [
    AnswerCase("phq9", "phq9.q9", 0, set()),
    AnswerCase("phq9", "phq9.q9", 1, {("suicidality", "urgent")}),
    AnswerCase("phq9", "phq9.q9", 2, {("suicidality", "crisis")}),
    AnswerCase("phq9", "phq9.q9", 3, {("suicidality", "crisis")}),
    AnswerCase("phq9", "phq9.q1", 3, set()),
    AnswerCase("qids_sr16", "qids_sr16.q12", 0, set()),
    AnswerCase("qids_sr16", "qids_sr16.q12", 1, {("suicidality", "urgent")}),
    AnswerCase("qids_sr16", "qids_sr16.q12", 2, {("suicidality", "crisis")}),
    AnswerCase("madrs_s", "madrs_s.q9", 1, set()),
    AnswerCase("madrs_s", "madrs_s.q9", 3, {("suicidality", "urgent")}),
    AnswerCase("madrs_s", "madrs_s.q9", 4, {("suicidality", "crisis")}),
    AnswerCase("side_effects", "side_effects.red_flags", 0, set()),
    AnswerCase("side_effects", "side_effects.red_flags", 1, {("side_effect_red_flag", "crisis")}),
    AnswerCase("side_effects", "side_effects.chest_pain", 1, {("side_effect_red_flag", "crisis")}),
    AnswerCase("side_effects", "side_effects.seizure", 1, {("side_effect_red_flag", "crisis")}),
    AnswerCase("side_effects", "side_effects.blood_pressure", BloodPressure(179, 109), set()),
    AnswerCase(
        "side_effects",
        "side_effects.blood_pressure",
        BloodPressure(180, 110),
        {("blood_pressure_high", "urgent")},
    ),
    AnswerCase(
        "side_effects",
        "side_effects.blood_pressure",
        BloodPressure(180, 80),
        {("blood_pressure_high", "urgent")},
    ),
    AnswerCase(
        "side_effects",
        "side_effects.blood_pressure",
        BloodPressure(150, 110),
        {("blood_pressure_high", "urgent")},
    ),
    AnswerCase("side_effects", "side_effects.urinary", 0, set()),
    AnswerCase("side_effects", "side_effects.urinary", 1, {("urinary_symptoms", "routine")}),
    AnswerCase("side_effects", "side_effects.dissociation", 1, set()),
    AnswerCase("side_effects", "side_effects.dissociation", 2, {("lingering_effects", "routine")}),
    AnswerCase("side_effects", "side_effects.sedation", 2, {("lingering_effects", "routine")}),
    AnswerCase("side_effects", "side_effects.nausea", 2, set()),
    AnswerCase("side_effects", "side_effects.nausea", 3, {("severe_nausea", "routine")}),
    AnswerCase("side_effects", "side_effects.dizziness", 3, set()),
    # MADRS-S item 9: 2-3 urgent, 4-6 crisis (anchors of the MADRS suicidal-thoughts item)
    AnswerCase("madrs_s", "madrs_s.q9", 2, {("suicidality", "urgent")}),
    AnswerCase("madrs_s", "madrs_s.q9", 5, {("suicidality", "crisis")}),
    AnswerCase("madrs_s", "madrs_s.q9", 6, {("suicidality", "crisis")}),
]


@dataclass(frozen=True)
class ScoreCase:
    """(total, sessions completed before it) pairs a day apart; the last one is being scored."""

    instrument: str
    points: tuple[tuple[int, int], ...]
    expected: Fired
    why: str

    def run(self, catalog: Catalog, rules: AlertRules = DEFAULT_RULES) -> list[Trigger]:
        instrument = catalog.get(self.instrument)
        obs = [Observation(T0 + timedelta(days=n), t, s) for n, (t, s) in enumerate(self.points)]
        current = obs[-1]
        band = instrument.band_for(current.total)
        result = ScoreResult(instrument.key, current.total, band.key if band else None, True)
        return on_score(instrument, result, obs[:-1], rules, current.at, current.session)


SCORES = [
    ScoreCase("phq9", ((19, 0),), set(), "PHQ-9 19 is below D1"),
    ScoreCase("phq9", ((20, 0),), {("severe_score", "urgent")}, "PHQ-9 20 is D1"),
    ScoreCase("gad7", ((14, 0),), set(), "GAD-7 14 is below D3"),
    ScoreCase("gad7", ((15, 0),), {("severe_score", "routine")}, "GAD-7 15 is D3"),
    ScoreCase("qids_sr16", ((20, 0),), set(), "QIDS 20 is below D1"),
    ScoreCase("qids_sr16", ((21, 0),), {("severe_score", "urgent")}, "QIDS 21 is D1"),
    ScoreCase("madrs_s", ((34, 0),), set(), "MADRS-S 34 is below severe"),
    ScoreCase("phq9", ((8, 0), (13, 1)), set(), "RC-1 above baseline"),
    ScoreCase("phq9", ((8, 0), (14, 1)), {("worsening", "routine")}, "RC above baseline"),
    ScoreCase("phq9", ((20, 0), (6, 1), (11, 2)), set(), "RC-1 above the best"),
    ScoreCase("phq9", ((20, 0), (6, 1), (12, 2)), {("worsening", "routine")}, "RC above best"),
    ScoreCase("phq9", ((9, 0), (3, 0), (9, 0)), {("worsening", "routine")}, "pre-series best"),
    ScoreCase("gad7", ((5, 0), (8, 1)), set(), "GAD-7 RC-1"),
    ScoreCase("gad7", ((5, 0), (9, 1)), {("worsening", "routine")}, "GAD-7 RC 4"),
    ScoreCase(
        "phq9",
        ((20, 0), (19, 1), (18, 2), (16, 3), (17, 4)),
        {("non_response", "routine")},
        "< 20 % after session 4",
    ),
    ScoreCase("phq9", ((20, 0), (19, 1), (18, 2), (16, 3), (16, 4)), set(), "20 % after 4"),
    ScoreCase(
        "phq9",
        ((20, 0), (19, 1), (18, 2), (17, 3)),
        {("non_response", "routine")},
        "three consecutive non-improvements",
    ),
    ScoreCase(
        "phq9",
        ((20, 0), (19, 1), (18, 2), (17, 3), (17, 4)),
        set(),
        "non-response is reported once, on the score that makes it true",
    ),
    ScoreCase("phq9", ((20, 0), (16, 1)), {("early_improvement", "info")}, "20 % by session 1"),
    ScoreCase("phq9", ((20, 0), (17, 1)), set(), "15 %: not early improvement (yet)"),
    ScoreCase("phq9", ((20, 0), (12, 1), (10, 2)), {("response", "info")}, "50 %"),
    ScoreCase("phq9", ((20, 0), (12, 1), (11, 2)), set(), "45 %"),
    ScoreCase("phq9", ((20, 0), (12, 1), (10, 2), (4, 3)), {("remission", "info")}, "PHQ-9 4"),
    ScoreCase("phq9", ((20, 0), (12, 1), (10, 2), (5, 3)), set(), "PHQ-9 5"),
    ScoreCase("phq9", ((3, 0), (3, 1)), set(), "in remission from the baseline on"),
    ScoreCase(
        "phq9",
        ((20, 0), (3, 4), (9, 5), (10, 6), (10, 7)),
        {("relapse", "routine"), ("worsening", "routine")},
        ">= 10 on two consecutive check-ins (7 above the best)",
    ),
    ScoreCase("phq9", ((20, 0), (4, 4), (10, 5), (8, 6)), set(), ">= 10 once, then +4"),
    ScoreCase(
        "phq9",
        ((20, 0), (4, 4), (10, 5), (11, 6)),
        {("relapse", "routine"), ("worsening", "routine")},
        "relapse that is also 7 above the best",
    ),
    # ---- issue 19, section 5 ----
    ScoreCase("madrs_s", ((35, 0),), {("severe_score", "urgent")}, "MADRS-S 35 is severe"),
    ScoreCase("phq9", ((20, 0), (4, 4), (10, 5), (9, 6)), set(), ">= 10 once, then 9"),
    ScoreCase("phq9", ((20, 0), (0, 4), (5, 5), (5, 6)), set(), "5 twice after a nadir of 0"),
    ScoreCase("qids_sr16", ((8, 0), (12, 1)), set(), "QIDS-SR16 4 above baseline"),
    ScoreCase("qids_sr16", ((8, 0), (13, 1)), {("worsening", "routine")}, "QIDS-SR16 5 up"),
    ScoreCase("qids_sr16", ((16, 0), (4, 3), (8, 4)), set(), "QIDS-SR16 4 above the best"),
    ScoreCase(
        "qids_sr16", ((16, 0), (4, 3), (9, 4)), {("worsening", "routine")}, "QIDS 5 above best"
    ),
    ScoreCase("madrs_s", ((30, 0), (10, 3), (19, 4)), set(), "MADRS-S 9 above the best"),
    ScoreCase("madrs_s", ((30, 0), (10, 3), (20, 4)), {("worsening", "routine")}, "MADRS-S 10 up"),
    ScoreCase(
        "phq9",
        ((20, 0), (10, 3), (8, 6), (17, 8)),
        {("loss_of_response", "routine"), ("worsening", "routine")},
        "a responder back to 15 % better: loss of response, not non-response",
    ),
    ScoreCase("phq9", ((9, 0), (6, 1), (4, 2)), set(), "no response or remission from PHQ-9 9"),
    ScoreCase(
        "phq9",
        ((10, 0), (6, 1), (4, 2)),
        {("response", "info"), ("remission", "info")},
        "response and remission from PHQ-9 10",
    ),
]


@dataclass(frozen=True)
class MissedCase:
    outcomes: tuple[str, ...]  # oldest first: done, missed, partial, cancelled
    open_levels: tuple[tuple[str, Level, str], ...]  # (rule, level, status) of other alerts
    expected: Fired

    def run(self, catalog: Catalog, rules: AlertRules = DEFAULT_RULES) -> list[Trigger]:
        statuses = {
            "done": ("completed", False),
            "missed": ("expired", False),
            "partial": ("expired", True),
            "cancelled": ("cancelled", False),
        }
        recent = [
            CheckinOutcome(T0 + timedelta(days=n), *statuses[o])
            for n, o in enumerate(self.outcomes)
        ]
        alerts = [
            AlertState("ABCDEF", rule, level, T0, None, status=status)
            for rule, level, status in self.open_levels
        ]
        return on_missed(recent, alerts, rules, T0 + timedelta(days=10))


ROUTINE_MISSED = {("missed_checkins", "routine")}
URGENT_MISSED = {("missed_checkins", "urgent")}
MISSED = [
    MissedCase(("done", "missed"), (), set()),
    MissedCase(("missed",), (), set()),
    MissedCase(("done", "missed", "missed"), (), ROUTINE_MISSED),
    MissedCase(("missed", "missed", "missed"), (), ROUTINE_MISSED),
    MissedCase(("missed", "partial"), (), set()),
    MissedCase(("missed", "done"), (), set()),
    MissedCase(("missed", "cancelled", "missed"), (), ROUTINE_MISSED),
    MissedCase(("missed", "missed"), (("suicidality", "urgent", "open"),), URGENT_MISSED),
    MissedCase(("missed", "missed"), (("suicidality", "crisis", "acknowledged"),), URGENT_MISSED),
    MissedCase(("missed", "missed"), (("suicidality", "crisis", "resolved"),), ROUTINE_MISSED),
    MissedCase(("missed", "missed"), (("worsening", "routine", "open"),), ROUTINE_MISSED),
    MissedCase(("missed", "missed"), (("missed_checkins", "urgent", "open"),), ROUTINE_MISSED),
]


@pytest.mark.parametrize("case", ANSWERS, ids=lambda c: f"{c.item}={c.value}")
def test_answer_triggers(full_catalog: Catalog, case: AnswerCase) -> None:
    """Each answer raises exactly the rule and level of instruments.md section 11, at once."""
    assert fired(case.run(full_catalog)) == case.expected


@pytest.mark.parametrize("case", SCORES, ids=lambda c: c.why)
def test_score_triggers(full_catalog: Catalog, case: ScoreCase) -> None:
    """Severity and trajectory rules fire at their thresholds and not one point below."""
    assert fired(case.run(full_catalog)) == case.expected


@pytest.mark.parametrize("case", MISSED, ids=lambda c: "-".join(c.outcomes))
def test_missed_checkins(full_catalog: Catalog, case: MissedCase) -> None:
    """Two missed in a row is routine, urgent while another crisis/urgent alert is unresolved."""
    assert fired(case.run(full_catalog)) == case.expected


def test_unanswered_safety_item_is_routine(catalog: Catalog) -> None:
    """A PHQ-9 scored without item 9 raises safety_item_missing with the item's number (S6)."""
    phq9 = catalog.get("phq9")
    result = score(phq9, {f"phq9.q{n}": 1 for n in range(1, 9)})
    triggers = on_score(phq9, result, [], DEFAULT_RULES, T0)
    assert [(t.rule, t.level, t.detail) for t in triggers] == [
        (
            "safety_item_missing",
            "routine",
            {"instrument": "phq9", "item": "phq9.q9", "item_number": 9},
        )
    ]


def test_trigger_detail_is_data(full_catalog: Catalog) -> None:
    """A detail names instrument, item, value, total, change and session: no words."""
    (answer,) = AnswerCase("phq9", "phq9.q9", 2, set()).run(full_catalog)
    assert answer.detail == {"instrument": "phq9", "item": "phq9.q9", "item_number": 9, "value": 2}
    (worse,) = SCORES[8].run(full_catalog)
    assert worse.detail == {
        "instrument": "phq9",
        "total": 14,
        "session": 1,
        "baseline": 8,
        "change": 6,
        "improvement_pct": -75.0,
        "baseline_below_threshold": True,
        "best": 8,
        "rise_from_best": 6,
        "previous": 8,
        "reliable_change": 6,
        "threshold": 6,
        "measured_from": "best",
    }


def test_worsening_from_the_best_says_so(full_catalog: Catalog) -> None:
    """QIDS-SR16 16 at baseline, best 4, now 14: the change from baseline (-2) would hide it;
    the detail says it was measured from the best (up 10 from 4) and against what."""
    case = ScoreCase("qids_sr16", ((16, 0), (4, 3), (14, 4)), set(), "")
    by_rule = {t.rule: t for t in case.run(full_catalog)}
    assert set(by_rule) == {"worsening", "loss_of_response", "relapse"}  # QIDS relapse: >= 11
    detail = by_rule["worsening"].detail
    assert (detail["change"], detail["best"], detail["rise_from_best"]) == (-2, 4, 10)
    assert (detail["measured_from"], detail["threshold"]) == ("best", 5)


def test_worsening_from_the_previous_score_says_so(full_catalog: Catalog) -> None:
    """With rise_from_previous on, a rise below the best-score threshold names the previous."""
    rules = rules_from_mapping({"rules": {"worsening": {"rise_from_previous": {"phq9": 5}}}}, "c")
    (worse,) = ScoreCase("phq9", ((12, 0), (8, 1), (13, 2)), set(), "").run(full_catalog, rules)
    assert (worse.detail["measured_from"], worse.detail["previous"]) == ("previous", 8)
    assert worse.detail["threshold"] == 5


def test_rise_from_best_is_configurable_per_instrument(full_catalog: Catalog) -> None:
    """rise_from_best merges over the defaults: PHQ-9 set to 4 keeps QIDS-SR16 at 5."""
    rules = rules_from_mapping({"rules": {"worsening": {"rise_from_best": {"phq9": 4}}}}, "c")
    assert rules.worsening.rise_from_best == {"qids_sr16": 5, "madrs_s": 10, "phq9": 4}
    four_up = ScoreCase("phq9", ((12, 0), (8, 1), (12, 2)), set(), "4 above the best")
    assert fired(four_up.run(full_catalog)) == set()
    assert fired(four_up.run(full_catalog, rules)) == {("worsening", "routine")}


def all_triggers(catalog: Catalog) -> Iterator[Trigger]:
    for case in [*ANSWERS, *SCORES, *MISSED]:
        yield from case.run(catalog)


def words(catalog: Catalog) -> set[str]:
    """Every item text and option label of the catalog, in every language."""
    texts: set[str] = set()
    for instrument in catalog:
        for item in instrument.items:
            texts |= set(item.text.texts.values())
            for option in item.options:
                texts |= set(option.label.texts.values())
    return texts


def test_no_trigger_detail_carries_words(full_catalog: Catalog) -> None:
    """No trigger in the tables holds an item text, an option label, or anything but plain values."""
    texts = words(full_catalog)
    assert len(texts) > 50
    triggers = list(all_triggers(full_catalog))
    assert len(triggers) > 30
    for trigger in triggers:
        for key, value in trigger.detail.items():
            assert isinstance(value, str | int | float | bool | type(None)), key
            if isinstance(value, str):
                assert not any(text in value for text in texts), (trigger.rule, key, value)
                assert len(value) <= 32, (trigger.rule, key, value)


def test_on_score_refuses_another_instruments_score(catalog: Catalog) -> None:
    """A GAD-7 result handed over as a PHQ-9 one is a programming fault, not an alert."""
    with pytest.raises(ValueError, match="gad7"):
        on_score(catalog.get("phq9"), ScoreResult("gad7", 10, None, True), [], DEFAULT_RULES, T0)


def test_invalid_score_only_checks_the_safety_item(catalog: Catalog) -> None:
    """A total that could not be computed triggers no severity or trajectory rule."""
    phq9 = catalog.get("phq9")
    invalid = ScoreResult("phq9", None, None, False, raw_total=25)
    assert on_score(phq9, invalid, [Observation(T0, 5, 0)], DEFAULT_RULES, T0) == []


# ---- operator rules and flags ------------------------------------------------------------


def fever_check() -> Instrument:
    """An operator's own checklist with a flag no shipped rule names."""
    yes_no = (
        ins.Option(0, ins.Localized({"en": "No"})),
        ins.Option(1, ins.Localized({"en": "Yes"})),
    )
    item = ins.Item(
        "fever.temp",
        1,
        ins.Localized({"en": "Temperature above 38 C?"}),
        options=yes_no,
        scored=False,
        flags=(ins.FlagRule("fever", at_least=1),),
    )
    return Instrument("fever", "Fever", "Fever check", (item,), ins.Scoring("none"))


def test_a_suicidality_flag_alerts_even_off_the_list(full_catalog: Catalog) -> None:
    """An item dropped from the suicidality list still alerts urgent through its own flag."""
    rules = rules_from_mapping(parse('[rules.suicidality]\nitems."madrs_s.q9" = {}'), "c")
    assert "madrs_s.q9" not in rules.suicidality.items
    case = AnswerCase("madrs_s", "madrs_s.q9", 4, set())
    assert fired(case.run(full_catalog, rules)) == {("suicidality", "urgent")}


def test_an_unnamed_flag_still_alerts() -> None:
    """A flag that no rule names falls to other_flag (routine), never to nothing."""
    triggers = on_answer(fever_check(), "fever.temp", 1, DEFAULT_RULES, T0)
    assert [(t.rule, t.level, t.detail["flag"]) for t in triggers] == [
        ("other_flag", "routine", "fever")
    ]


def test_an_operator_flag_rule(catalog: Catalog) -> None:
    """An operator rule with flags = [...] takes its flag at its own level."""
    rules = rules_from_mapping(parse('[rules.fever]\nlevel = "urgent"\nflags = ["fever"]'), "c")
    assert fired(on_answer(fever_check(), "fever.temp", 1, rules, T0)) == {("fever", "urgent")}


# ---- lifecycle: raise, update within the cool-down, upgrade ------------------------------


def trigger(rule: str = "worsening", level: Level = "routine", at: datetime = T0) -> Trigger:
    return Trigger(rule, level, at, {"instrument": "phq9", "level_seen": level})


def raise_(alerts: Sequence[AlertState], t: Trigger, rules: AlertRules = DEFAULT_RULES) -> Change:
    return raise_or_update(alerts, t, t.at, rules, PRIMARY, f"CODE{len(alerts)}")


def test_a_new_alert_notifies_the_primary() -> None:
    """A routine alert is open, due in 24 h, and its event names the primary clinician."""
    change = raise_([], trigger())
    assert change.raised and change.notify == (PRIMARY,)
    assert change.alert.ack_deadline == T0 + timedelta(hours=24)
    assert change.event == AlertRaised(
        "CODE0", "worsening", "routine", T0, T0 + timedelta(hours=24), change.alert.detail, (1,)
    )


def test_info_alerts_need_no_acknowledgement() -> None:
    """An info alert has no deadline, notifies nobody and never escalates."""
    change = raise_([], trigger("response", "info"))
    assert (change.alert.ack_deadline, change.notify) == (None, ())
    assert escalate(change.alert, T0 + timedelta(days=30), PRIMARY, BACKUP, DEFAULT_RULES) is None


@pytest.mark.parametrize(
    ("acknowledged", "after", "new_alert"),
    [
        (False, timedelta(hours=1), False),  # duplicate within the cool-down: one alert
        (True, timedelta(hours=23), False),  # acknowledged, still within: updated
        (True, timedelta(hours=24), True),  # acknowledged, cool-down over: a new alert
        (False, timedelta(hours=48), False),  # never two open alerts for one rule
    ],
)
def test_cooldown(acknowledged: bool, after: timedelta, new_alert: bool) -> None:
    """Repeats within the cool-down update one alert; after it, an acknowledged one is not reused."""
    first = raise_([], trigger()).alert
    if acknowledged:
        first = acknowledge(first, PRIMARY, T0 + timedelta(minutes=5)).alert
    second = raise_([first], trigger(at=T0 + after))
    assert second.raised is new_alert
    if not new_alert:
        assert isinstance(second.event, AlertUpdated)
        assert (second.alert.code, second.alert.occurrences, second.notify) == ("CODE0", 2, ())
        assert second.alert.status == first.status


def test_suicidality_has_a_one_hour_cooldown() -> None:
    """An acknowledged suicidality alert does not absorb a new positive answer two hours later."""
    first = raise_([], trigger("suicidality", "urgent")).alert
    first = acknowledge(first, PRIMARY, T0 + timedelta(minutes=10)).alert
    assert raise_([first], trigger("suicidality", "urgent", T0 + timedelta(hours=2))).raised


def test_a_higher_level_upgrades_the_open_alert() -> None:
    """Urgent then crisis: one alert, now crisis, due 15 min from the upgrade, primary re-told."""
    first = raise_([], trigger("suicidality", "urgent")).alert
    later = T0 + timedelta(minutes=30)
    change = raise_([first], trigger("suicidality", "crisis", later))
    assert isinstance(change.event, AlertUpdated)
    assert (change.event.previous_level, change.event.level) == ("urgent", "crisis")
    assert change.alert.level == "crisis"
    assert change.alert.ack_deadline == later + timedelta(minutes=15)
    assert change.alert.detail["level_seen"] == "crisis"
    assert change.notify == (PRIMARY,)


def test_an_upgrade_reopens_an_acknowledged_alert() -> None:
    """An acknowledged urgent alert upgraded to crisis is open again and must be re-acknowledged."""
    first = raise_([], trigger("suicidality", "urgent")).alert
    first = acknowledge(first, PRIMARY, T0 + timedelta(minutes=5)).alert
    change = raise_([first], trigger("suicidality", "crisis", T0 + timedelta(minutes=20)))
    assert isinstance(change.event, AlertUpdated) and change.event.reopened
    assert (change.alert.status, change.alert.acknowledged_by) == ("open", None)
    assert change.alert.ack_deadline == T0 + timedelta(minutes=35)


def test_an_upgrade_never_delays_the_deadline() -> None:
    """An overdue routine alert upgraded to urgent keeps its earlier (passed) deadline."""
    first = raise_([], trigger()).alert
    later = T0 + timedelta(hours=30)
    change = raise_([first], trigger(level="urgent", at=later))
    assert change.alert.ack_deadline == T0 + timedelta(hours=24)


def test_a_lower_level_keeps_level_and_detail() -> None:
    """Crisis then urgent: still crisis, with the crisis trigger's detail."""
    first = raise_([], trigger("suicidality", "crisis")).alert
    change = raise_([first], trigger("suicidality", "urgent", T0 + timedelta(minutes=5)))
    assert change.alert.level == "crisis" and change.alert.detail["level_seen"] == "crisis"
    assert change.alert.ack_deadline == first.ack_deadline and change.notify == ()


def test_other_rules_and_resolved_alerts_are_not_reused() -> None:
    """A trigger for another rule, or after the rule's alert was resolved, raises a new alert."""
    first = raise_([], trigger()).alert
    assert raise_([first], trigger("relapse")).raised
    done = resolve(first, clinician(PRIMARY), T0 + timedelta(minutes=1)).alert
    assert raise_([done], trigger(at=T0 + timedelta(minutes=2))).raised


# ---- escalation with a controllable clock ------------------------------------------------


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


def run_ticks(
    alert: AlertState,
    clock: Clock,
    tick: timedelta,
    ticks: int,
    backup: int | None,
    ack_at: datetime | None = None,
) -> list[tuple[timedelta, tuple[int, ...]]]:
    """Tick the scheduler: escalate when due, acknowledge at `ack_at`; who was told when."""
    sent: list[tuple[timedelta, tuple[int, ...]]] = []
    for _ in range(ticks):
        now = clock.advance(seconds=tick.total_seconds())
        if ack_at is not None and now >= ack_at and alert.status == "open":
            alert = acknowledge(alert, BACKUP, now).alert
        change = escalate(alert, now, PRIMARY, backup, DEFAULT_RULES)
        if change is not None:
            assert isinstance(change.event, AlertEscalated)
            alert = change.alert
            sent.append((now - T0, change.notify))
    return sent


def test_crisis_escalates_to_backup_then_repeats_until_acknowledged() -> None:
    """Crisis: primary at raise; backup at 15 min; both every 15 min; silence after the ack at 50."""
    clock = Clock(T0)
    change = raise_([], trigger("side_effect_red_flag", "crisis"))
    assert change.notify == (PRIMARY,)
    sent = run_ticks(
        change.alert, clock, timedelta(minutes=5), 24, BACKUP, ack_at=T0 + timedelta(minutes=50)
    )
    minutes = [(int(at.total_seconds() // 60), notify) for at, notify in sent]
    assert minutes == [(15, (BACKUP,)), (30, (PRIMARY, BACKUP)), (45, (PRIMARY, BACKUP))]


def test_without_a_backup_the_primary_is_told_again() -> None:
    """Urgent, no backup: the primary again at 4 h, then every hour."""
    clock = Clock(T0)
    alert = raise_([], trigger("blood_pressure_high", "urgent")).alert
    sent = run_ticks(alert, clock, timedelta(minutes=20), 19, backup=None)
    hours = [(at / timedelta(hours=1), notify) for at, notify in sent]
    assert hours == [(4.0, (PRIMARY,)), (5.0, (PRIMARY,)), (6.0, (PRIMARY,))]


def test_escalation_records_count_and_recipients() -> None:
    """Each escalation counts up and adds new recipients once."""
    alert = raise_([], trigger("suicidality", "crisis")).alert
    first = escalate(alert, T0 + timedelta(minutes=15), PRIMARY, BACKUP, DEFAULT_RULES)
    assert first is not None
    second = escalate(first.alert, T0 + timedelta(minutes=30), PRIMARY, BACKUP, DEFAULT_RULES)
    assert second is not None
    assert (second.alert.escalation_count, second.alert.recipients) == (2, (PRIMARY, BACKUP))
    assert second.alert.last_notified_at == T0 + timedelta(minutes=30)


# ---- acknowledge and resolve -------------------------------------------------------------


def test_acknowledge_is_idempotent() -> None:
    """The first acknowledgement is recorded; a second one changes nothing."""
    alert = raise_([], trigger()).alert
    at = T0 + timedelta(minutes=3)
    first = acknowledge(alert, BACKUP, at)
    assert first.event == AlertAcknowledged("CODE0", "worsening", "routine", at, BACKUP)
    assert first.event is not None
    assert actor_of(first.event) == clinician(BACKUP)
    again = acknowledge(first.alert, PRIMARY, T0 + timedelta(minutes=4))
    assert again == Change(first.alert)


@pytest.mark.parametrize(
    ("rule", "level", "by", "resolved"),
    [
        ("side_effect_red_flag", "crisis", SYSTEM, False),
        ("side_effect_red_flag", "crisis", PATIENT, False),
        ("side_effect_red_flag", "crisis", clinician(PRIMARY), True),
        ("severe_score", "crisis", SYSTEM, False),  # any crisis alert
        ("suicidality", "urgent", SYSTEM, False),  # section 7: never the bot
        ("suicidality", "urgent", PATIENT, False),
        ("suicidality", "urgent", clinician(BACKUP), True),
        ("worsening", "routine", SYSTEM, True),
        ("missed_checkins", "routine", PATIENT, True),
    ],
)
def test_only_a_clinician_resolves_crisis_and_suicidality(
    rule: str, level: Level, by: Actor, resolved: bool
) -> None:
    """Crisis and suicidality alerts are resolved by a clinician; anyone else is refused, on record."""
    alert = raise_([], trigger(rule, level)).alert
    change = resolve(alert, by, T0 + timedelta(minutes=5))
    assert (change.alert.status == "resolved") is resolved
    expected = AlertResolved if resolved else AlertResolutionRefused
    assert isinstance(change.event, expected) and actor_of(change.event) == by


def test_resolving_unacknowledged_counts_as_acknowledged() -> None:
    """A clinician who resolves an open alert also stops its escalation, as acknowledger."""
    alert = raise_([], trigger("suicidality", "crisis")).alert
    done = resolve(alert, clinician(BACKUP), T0 + timedelta(minutes=5)).alert
    assert (done.acknowledged_by, done.resolved_by) == (BACKUP, clinician(BACKUP))
    assert escalate(done, T0 + timedelta(hours=1), PRIMARY, BACKUP, DEFAULT_RULES) is None
    assert resolve(done, clinician(PRIMARY), T0 + timedelta(hours=2)) == Change(done)


# ---- acknowledgement codes ---------------------------------------------------------------


def test_codes_avoid_lookalikes_and_taken_ones() -> None:
    """Codes are 6 characters without 0/O/1/I/L, and never one already taken."""
    assert not set("0O1IL") & set(CODE_ALPHABET)
    draw = random.Random(7).choice
    first = new_code(draw)
    assert len(first) == 6 and set(first) <= set(CODE_ALPHABET)
    assert new_code(random.Random(7).choice, taken={first}) != first


def test_code_draws_give_up_rather_than_loop() -> None:
    """A source that only repeats a taken code is a fault, reported after bounded tries."""
    with pytest.raises(RuntimeError):
        new_code(lambda alphabet: "A", taken={"AAAAAA"})


@pytest.mark.parametrize(
    ("typed", "code"),
    [("k7m-2qz", "K7M2QZ"), (" K7M 2QZ ", "K7M2QZ"), ("K7M2Q", None), ("K7M2Q0", None)],
)
def test_normalize_code(typed: str, code: str | None) -> None:
    """A typed code is read in any case with spaces or dashes; lookalikes are not codes."""
    assert normalize_code(typed) == code


# ---- configuration -----------------------------------------------------------------------


def parse(text: str) -> dict[str, object]:
    return tomllib.loads(text)


def test_named_rules_sit_under_their_own_key() -> None:
    """Every rule field of AlertRules holds the rule of that key (the parser relies on it)."""
    for field in fields(DEFAULT_RULES):
        value = getattr(DEFAULT_RULES, field.name)
        if isinstance(value, Rule):
            assert value.key == field.name
    assert len(set(DEFAULT_RULES.keys)) == len(DEFAULT_RULES.keys)


def test_empty_table_is_the_defaults() -> None:
    """No [alerts] table means the section 11 defaults."""
    assert rules_from_mapping({}, "config.toml") == DEFAULT_RULES


def test_defaults_are_as_documented() -> None:
    """Deadlines 15 min / 4 h / 24 h / none; cool-down 24 h, suicidality 1 h."""
    acks = {lv: DEFAULT_RULES.levels[lv].ack_within for lv in LEVELS}
    assert acks == {
        "crisis": timedelta(minutes=15),
        "urgent": timedelta(hours=4),
        "routine": timedelta(hours=24),
        "info": None,
    }
    assert DEFAULT_RULES.cooldown_for("worsening") == timedelta(hours=24)
    assert DEFAULT_RULES.cooldown_for("suicidality") == timedelta(hours=1)


FULL = """
cooldown_h = 12
[levels.urgent]
ack_within_min = 120
repeat_every_min = 30
[levels.info]
ack_within_min = 10080
[rules.suicidality]
items."madrs_s.q9" = { urgent = 3 }
[rules.severe_score]
instruments.gad7 = {}
instruments.madrs_s = { routine = 35 }
[rules.worsening]
cooldown_h = 2
rise_from_previous = { phq9 = 5 }
[rules.early_improvement]
enabled = false
[rules.urinary_symptoms]
level = "urgent"
[rules.missed_checkins]
in_a_row = 3
"""


def test_overrides_apply_over_the_defaults() -> None:
    """Named keys override; items and instruments merge key by key; {} removes one."""
    rules = rules_from_mapping(parse(FULL), "config.toml")
    assert rules.cooldown == timedelta(hours=12)
    assert rules.levels["urgent"].ack_within == timedelta(hours=2)
    assert rules.levels["crisis"] == DEFAULT_RULES.levels["crisis"]
    assert rules.suicidality.items["madrs_s.q9"] == {"urgent": 3}
    assert rules.suicidality.items["phq9.q9"] == {"urgent": 1, "crisis": 2}
    assert set(rules.severe_score.instruments) == {"phq9", "qids_sr16", "madrs_s"}
    assert rules.cooldown_for("worsening") == timedelta(hours=2)
    assert rules.cooldown_for("relapse") == timedelta(hours=12)
    assert rules.worsening.rise_from_previous == {"phq9": 5}
    assert rules.rule("urinary_symptoms").level == "urgent"
    assert rules.missed_checkins.in_a_row == 3


def test_overrides_change_what_fires(full_catalog: Catalog) -> None:
    """Configured thresholds and rules change the triggers: the tables' rows, re-run."""
    rules = rules_from_mapping(parse(FULL), "config.toml")
    madrs3 = AnswerCase("madrs_s", "madrs_s.q9", 3, set()).run(full_catalog, rules)
    assert fired(madrs3) == {("suicidality", "urgent")}
    gad15 = ScoreCase("gad7", ((15, 0),), set(), "").run(full_catalog, rules)
    assert fired(gad15) == set()
    early = ScoreCase("phq9", ((20, 0), (16, 1)), set(), "").run(full_catalog, rules)
    assert fired(early) == set()
    five_up = ScoreCase("phq9", ((12, 0), (8, 1), (13, 2)), set(), "5 up from the previous")
    assert fired(five_up.run(full_catalog)) == set()
    assert fired(five_up.run(full_catalog, rules)) == {("worsening", "routine")}
    two = MissedCase(("missed", "missed"), (), set()).run(full_catalog, rules)
    assert fired(two) == set()


@pytest.mark.parametrize(
    ("rule", "case"),
    [
        ("urinary_symptoms", ANSWERS[20]),
        ("blood_pressure_high", ANSWERS[16]),
        ("severe_score", SCORES[1]),
        ("worsening", SCORES[8]),
        ("relapse", SCORES[25]),
        ("missed_checkins", MISSED[2]),
    ],
)
def test_disabling_a_rule(
    full_catalog: Catalog, rule: str, case: AnswerCase | ScoreCase | MissedCase
) -> None:
    """enabled = false silences the rule (a disabled flag rule does not fall to other_flag)."""
    assert rule in {name for name, _ in case.expected}
    rules = rules_from_mapping({"rules": {rule: {"enabled": False}}}, "config.toml")
    assert fired(case.run(full_catalog, rules)) == {f for f in case.expected if f[0] != rule}


BAD = [
    ("cooldown_h = 0", "alerts.cooldown_h"),
    ("colour = 1", "alerts.colour"),
    ("rules = 3", "alerts.rules"),
    ("[levels.panic]\nack_within_min = 1", "alerts.levels.panic"),
    ('[levels.crisis]\nack_within_min = "soon"', "alerts.levels.crisis.ack_within_min"),
    ("[levels.crisis]\nack_within_min = 600", "alerts.levels.crisis.ack_within_min"),
    ("[levels.crisis]\nsoon = 1", "alerts.levels.crisis.soon"),
    ("[levels.info]\nrepeat_every_min = 5", "alerts.levels.info.repeat_every_min"),
    ('[rules.nope]\nlevel = "info"', "alerts.rules.nope"),
    ("[rules]\nworsening = 1", "alerts.rules.worsening"),
    ('[rules.worsening]\nlevel = "high"', "alerts.rules.worsening.level"),
    ('[rules.worsening]\nenabled = "no"', "alerts.rules.worsening.enabled"),
    ("[rules.worsening]\ncooldown_h = -1", "alerts.rules.worsening.cooldown_h"),
    ("[rules.worsening]\ncolour = 1", "alerts.rules.worsening.colour"),
    (
        "[rules.worsening]\nrise_from_previous = { phq9 = true }",
        "alerts.rules.worsening.rise_from_previous.phq9",
    ),
    (
        "[rules.worsening]\nrise_from_best = { qids_sr16 = 0 }",
        "alerts.rules.worsening.rise_from_best.qids_sr16",
    ),
    ("[rules.worsening]\nrise_from_best = 5", "alerts.rules.worsening.rise_from_best"),
    ("[rules.suicidality]\nenabled = false", "alerts.rules.suicidality.enabled"),
    ('[rules.suicidality]\nlevel = "routine"', "alerts.rules.suicidality.level"),
    ("[rules.side_effect_red_flag]\nenabled = false", "alerts.rules.side_effect_red_flag.enabled"),
    (
        '[rules.suicidality]\nitems."phq9.q9" = { urgent = 0 }',
        'alerts.rules.suicidality.items."phq9.q9".urgent',
    ),
    (
        '[rules.suicidality]\nitems."phq9.q9" = { urgent = 2, crisis = 1 }',
        'alerts.rules.suicidality.items."phq9.q9".crisis',
    ),
    (
        '[rules.suicidality]\nitems."phq9.q9" = { loud = 1 }',
        'alerts.rules.suicidality.items."phq9.q9".loud',
    ),
    ("[rules.suicidality]\nitems.phq9 = { urgent = 1 }", "alerts.rules.suicidality.items.phq9"),
    ("[rules.severe_score]\ninstruments.phq9 = 20", "alerts.rules.severe_score.instruments.phq9"),
    ('[rules.severe_score]\nlevel = "crisis"', "alerts.rules.severe_score.level"),
    ('[rules.side_effect_red_flag]\nflags = ["x"]', "alerts.rules.side_effect_red_flag.flags"),
    ("[rules.missed_checkins]\nin_a_row = 0", "alerts.rules.missed_checkins.in_a_row"),
    (
        '[rules.missed_checkins]\nlevel_with_open_alert = "p1"',
        "alerts.rules.missed_checkins.level_with_open_alert",
    ),
    ("[rules.fever]\nflags = []", "alerts.rules.fever.flags"),
    ('[rules.fever]\nflags = ["Fever!"]', "alerts.rules.fever.flags[0]"),
]


@pytest.mark.parametrize(("text", "key"), BAD, ids=[k for _, k in BAD])
def test_config_errors_name_the_key(text: str, key: str) -> None:
    """Every malformed value is refused with the file and the dotted key in the message."""
    with pytest.raises(ConfigError) as caught:
        rules_from_mapping(parse(text), "config.toml")
    assert caught.value.key == key
    assert str(caught.value).startswith(f"config.toml: {key}: ")


def test_references_are_checked_against_the_catalog(catalog: Catalog) -> None:
    """Rules naming a missing instrument or item are refused; unavailable licensed ones pass."""
    unavailable = set(catalog.unavailable)
    check_references(DEFAULT_RULES, catalog.instruments, unavailable, "config.toml")
    typo = rules_from_mapping(
        parse("[rules.severe_score]\ninstruments.phq_9 = { urgent = 20 }"), "c"
    )
    with pytest.raises(ConfigError, match="phq_9"):
        check_references(typo, catalog.instruments, unavailable, "config.toml")
    best = rules_from_mapping(parse("[rules.worsening]\nrise_from_best = { qids = 5 }"), "c")
    with pytest.raises(ConfigError, match="qids"):
        check_references(best, catalog.instruments, unavailable, "config.toml")
    item = rules_from_mapping(parse('[rules.suicidality]\nitems."phq9.q99" = { urgent = 1 }'), "c")
    with pytest.raises(ConfigError) as caught:
        check_references(item, catalog.instruments, unavailable, "config.toml")
    assert caught.value.key == 'alerts.rules.suicidality.items."phq9.q99"'


# ---- a property over any sequence of triggers and times ----------------------------------

RULE_KEYS = ("suicidality", "worsening", "missed_checkins")
steps = st.lists(
    st.tuples(
        st.sampled_from(("trigger", "trigger", "trigger", "ack", "resolve", "escalate")),
        st.integers(min_value=0, max_value=3000),  # minutes since the previous step
        st.sampled_from(RULE_KEYS),
        st.sampled_from(LEVELS),
        st.integers(min_value=0, max_value=50),  # which alert an ack/resolve/escalate picks
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(steps)
def test_one_open_alert_per_rule_and_sane_deadlines(
    script: list[tuple[str, int, str, Level, int]],
) -> None:
    """For any triggers and times: at most one open alert per rule; deadlines never before creation."""
    alerts: list[AlertState] = []
    now = T0
    for action, minutes, rule, level, pick in script:
        now += timedelta(minutes=minutes)
        if action == "trigger":
            unresolved = [a for a in alerts if a.status != "resolved"]
            change = raise_or_update(
                unresolved,
                Trigger(rule, level, now),
                now,
                DEFAULT_RULES,
                PRIMARY,
                f"C{len(alerts)}",
            )
            alerts = apply(alerts, change)
        elif alerts:
            alert = alerts[pick % len(alerts)]
            if action == "ack":
                alerts = apply(alerts, acknowledge(alert, BACKUP, now))
            elif action == "resolve":
                alerts = apply(alerts, resolve(alert, clinician(PRIMARY), now))
            else:
                alerts = apply(alerts, escalate(alert, now, PRIMARY, BACKUP, DEFAULT_RULES))
        for key in RULE_KEYS:
            assert sum(a.rule == key and a.status == "open" for a in alerts) <= 1
        for alert in alerts:
            assert alert.ack_deadline is None or alert.ack_deadline >= alert.created_at
            assert (alert.ack_deadline is None) == (alert.level == "info")


def apply(alerts: list[AlertState], change: Change | None) -> list[AlertState]:
    if change is None:
        return alerts
    if change.raised:
        return [*alerts, change.alert]
    return [change.alert if a.code == change.alert.code else a for a in alerts]


def test_flag_lists_replace_the_default(full_catalog: Catalog) -> None:
    """A flag rule's flags list replaces the default one; a flag left unnamed goes to other_flag."""
    rules = rules_from_mapping({"rules": {"lingering_effects": {"flags": ["drowsy"]}}}, "c")
    dissociation = AnswerCase("side_effects", "side_effects.dissociation", 2, set())
    assert fired(dissociation.run(full_catalog, rules)) == {("other_flag", "routine")}
    assert replace(rules, flag_rules=DEFAULT_RULES.flag_rules) == DEFAULT_RULES

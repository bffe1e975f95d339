"""Scoring follows the published rules: totals, every band boundary, prorating, domains,
safety flags. Tables first; a property test last."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.domain.errors import AnswerError
from bot.domain.instruments import BloodPressure, Instrument
from bot.domain.scoring import SAFETY_ITEM_MISSING, score
from bot.instruments import Catalog


def answers_for_total(instrument: Instrument, total: int) -> dict[str, int]:
    """Spread `total` over the scored items in order, each at most its top value."""
    answers: dict[str, int] = {}
    for item in instrument.scored_items:
        value = min(total, max(item.values))
        answers[item.key] = value
        total -= value
    assert total == 0
    return answers


# (instrument, total, band): each band's lowest and highest total.
BOUNDARIES = [
    ("phq9", 0, "minimal"), ("phq9", 4, "minimal"), ("phq9", 5, "mild"), ("phq9", 9, "mild"),
    ("phq9", 10, "moderate"), ("phq9", 14, "moderate"), ("phq9", 15, "moderately_severe"),
    ("phq9", 19, "moderately_severe"), ("phq9", 20, "severe"), ("phq9", 27, "severe"),
    ("phq2", 0, "negative"), ("phq2", 2, "negative"), ("phq2", 3, "positive"), ("phq2", 6, "positive"),
    ("gad7", 0, "minimal"), ("gad7", 4, "minimal"), ("gad7", 5, "mild"), ("gad7", 9, "mild"),
    ("gad7", 10, "moderate"), ("gad7", 14, "moderate"), ("gad7", 15, "severe"), ("gad7", 21, "severe"),
    ("madrs_s", 0, "minimal"), ("madrs_s", 12, "minimal"), ("madrs_s", 13, "mild"),
    ("madrs_s", 19, "mild"), ("madrs_s", 20, "moderate"), ("madrs_s", 34, "moderate"),
    ("madrs_s", 35, "severe"), ("madrs_s", 54, "severe"),
]  # fmt: skip


@pytest.mark.parametrize(("key", "total", "band"), BOUNDARIES)
def test_sum_band_boundaries(full_catalog: Catalog, key: str, total: int, band: str) -> None:
    """Each band's first and last total lands in that band (Kroenke 2001, Spitzer 2006, ...)."""
    instrument = full_catalog.get(key)
    result = score(instrument, answers_for_total(instrument, total))
    assert (result.total, result.band, result.valid, result.prorated) == (total, band, True, False)


# QIDS-SR16 domain answers giving each boundary total: (sleep, sad, appetite, conc, self,
# suicide, interest, energy, psychomotor) domain scores, all taken by one item per domain.
QIDS_BOUNDARIES = [(0, "none"), (5, "none"), (6, "mild"), (10, "mild"), (11, "moderate"),
                   (15, "moderate"), (16, "severe"), (20, "severe"), (21, "very_severe"),
                   (27, "very_severe")]  # fmt: skip


def qids_answers(domain_scores: list[int]) -> dict[str, int]:
    first_items = [1, 5, 6, 10, 11, 12, 13, 14, 15]
    answers = {f"qids_sr16.q{n}": 0 for n in range(1, 17)}
    for item, value in zip(first_items, domain_scores, strict=True):
        answers[f"qids_sr16.q{item}"] = value
    return answers


def spread(total: int, slots: int = 9) -> list[int]:
    values = []
    for _ in range(slots):
        values.append(min(total, 3))
        total -= values[-1]
    return values


@pytest.mark.parametrize(("total", "band"), QIDS_BOUNDARIES)
def test_qids_band_boundaries(full_catalog: Catalog, total: int, band: str) -> None:
    """QIDS-SR16 bands 0-5, 6-10, 11-15, 16-20, 21-27 (ids-qids.org) hold at each edge."""
    result = score(full_catalog.get("qids_sr16"), qids_answers(spread(total)))
    assert (result.total, result.band) == (total, band)


def test_qids_takes_the_highest_item_in_each_group(full_catalog: Catalog) -> None:
    """Sleep is the max of items 1-4, appetite/weight of 6-9, psychomotor of 15-16 (Rush 2003)."""
    answers = {f"qids_sr16.q{n}": 0 for n in range(1, 17)}
    answers |= {"qids_sr16.q1": 1, "qids_sr16.q3": 3, "qids_sr16.q4": 2}  # sleep -> 3
    answers |= {"qids_sr16.q6": 2, "qids_sr16.q9": 1}  # appetite/weight -> 2
    answers |= {"qids_sr16.q15": 1, "qids_sr16.q16": 2}  # psychomotor -> 2
    answers |= {"qids_sr16.q5": 2, "qids_sr16.q13": 1}
    result = score(full_catalog.get("qids_sr16"), answers)
    assert result.domains["sleep"] == 3
    assert result.domains["appetite_weight"] == 2
    assert result.domains["psychomotor"] == 2
    assert result.total == 3 + 2 + 2 + 2 + 1


@pytest.mark.parametrize("left_out", [(7, 9), (6, 9), (7, 8), (6, 8)])
def test_qids_answers_only_one_of_each_appetite_pair(
    full_catalog: Catalog, left_out: tuple[int, int]
) -> None:
    """The form asks for item 6 or 7 and 8 or 9: a form completed so is complete, not flagged."""
    answers = {f"qids_sr16.q{n}": 1 for n in range(1, 17) if n not in left_out}
    result = score(full_catalog.get("qids_sr16"), answers)
    assert result.valid and result.total == 9
    assert result.flags == ("suicidality",)  # item 12 = 1; no domain_item_missing


@pytest.mark.parametrize("left_out", [(8, 9), (6, 7), (6, 7, 9)])
def test_qids_a_whole_appetite_pair_left_out_is_flagged(
    full_catalog: Catalog, left_out: tuple[int, ...]
) -> None:
    """Neither 8 nor 9 (or neither 6 nor 7) answered: the domain still scores, flagged."""
    answers = {f"qids_sr16.q{n}": 1 for n in range(1, 17) if n not in left_out}
    result = score(full_catalog.get("qids_sr16"), answers)
    assert result.valid and result.total == 9
    assert result.flags == ("suicidality", "domain_item_missing")


def test_qids_appetite_domain_with_no_answer_has_no_total(full_catalog: Catalog) -> None:
    """None of items 6-9 answered: both pairs missing is more than the one gap tolerated."""
    answers = {f"qids_sr16.q{n}": 1 for n in range(1, 17) if n not in (6, 7, 8, 9)}
    result = score(full_catalog.get("qids_sr16"), answers)
    assert not result.valid and "appetite_weight" in result.reason


def test_qids_sleep_domain_tolerates_one_missing_item_only(full_catalog: Catalog) -> None:
    """Sleep from three of its four items scores; from one of four, there is no total."""
    qids = full_catalog.get("qids_sr16")
    one_missing = {f"qids_sr16.q{n}": 1 for n in range(1, 17) if n != 2}
    three_missing = {f"qids_sr16.q{n}": 1 for n in range(1, 17) if n not in (2, 3, 4)}
    assert score(qids, one_missing).valid
    result = score(qids, three_missing)
    assert not result.valid and "sleep" in result.reason


def test_qids_item_12_missing_is_never_imputed(full_catalog: Catalog) -> None:
    """Without item 12 there is no total, and the missing safety item is flagged."""
    answers = {f"qids_sr16.q{n}": 1 for n in range(1, 17) if n != 12}
    result = score(full_catalog.get("qids_sr16"), answers)
    assert (result.valid, result.total) == (False, None)
    assert SAFETY_ITEM_MISSING in result.flags


def test_qids_empty_domain_has_no_total(full_catalog: Catalog) -> None:
    """A domain with none of its items answered leaves the total invalid."""
    answers = {f"qids_sr16.q{n}": 1 for n in range(1, 17) if n not in (15, 16)}
    result = score(full_catalog.get("qids_sr16"), answers)
    assert not result.valid and "psychomotor" in result.reason


LOINC_ANSWER = {"LA6568-5": 0, "LA6569-3": 1, "LA6570-1": 2, "LA6571-9": 3}


def test_published_fhir_example_all_nearly_every_day_scores_27(catalog: Catalog) -> None:
    """MII PROMs example mii-exa-pro-phq-9-response (every item LA6571-9) is Observation 44261-6 = 27."""
    phq9 = catalog.get("phq9")
    codes = {f"phq9.q{n}": "LA6571-9" for n in range(1, 10)}
    by_code = {o.loinc: o.value for o in phq9.item("phq9.q1").options}
    result = score(phq9, {k: by_code[c] for k, c in codes.items()} | {"phq9.q10": 3})
    assert by_code == LOINC_ANSWER
    assert (result.total, result.band, phq9.loinc_total) == (27, "severe", "44261-6")


@pytest.mark.parametrize(
    ("values", "total", "band"),
    [
        # One item per option: 0+1+2+3+0+1+2+3+0 = 12, moderate (Kroenke 2001 bands).
        ([0, 1, 2, 3, 0, 1, 2, 3, 0], 12, "moderate"),
        # The screening cut-point: 10 is where 88 % sensitivity / specificity was reported.
        ([2, 2, 2, 1, 1, 1, 1, 0, 0], 10, "moderate"),
        ([1, 1, 1, 1, 1, 1, 1, 1, 1], 9, "mild"),
    ],
)
def test_phq9_worked_sums(catalog: Catalog, values: list[int], total: int, band: str) -> None:
    """The total is the plain sum of items 1-9; item 10 never adds to it."""
    answers = {f"phq9.q{n}": v for n, v in enumerate(values, 1)} | {"phq9.q10": 3}
    result = score(catalog.get("phq9"), answers)
    assert (result.total, result.band, result.prorated) == (total, band, False)


PRORATING = [
    # (answers with None for missing, total, prorated, valid); NHS Data Dictionary rule.
    ([1, 1, 1, 1, 1, 1, 1, None, 1], 9, True, True),  # 8 x 1 -> 8 * 9/8 = 9
    ([2, 2, 2, 2, 2, 2, 2, None, 0], 16, True, True),  # 14 * 9/8 = 15.75 -> 16
    ([1, 1, 0, 1, 0, 1, 0, None, 0], 5, True, True),  # 4 * 9/8 = 4.5 -> 5: half rounds up
    ([1, 1, None, 1, None, 1, 1, 1, 1], 9, True, True),  # two missing: 7 * 9/7 = 9
    ([3, 3, None, 3, None, 3, 2, 2, 0], 21, True, True),  # 16 * 9/7 = 20.57 -> 21
    ([1, None, None, 1, None, 1, 1, 1, 1], None, False, False),  # three missing: no total
    ([1, 1, 1, 1, 1, 1, 1, 1, None], None, False, False),  # item 9 is never imputed
]


@pytest.mark.parametrize(("values", "total", "prorated", "valid"), PRORATING)
def test_phq9_missing_item_rule(
    catalog: Catalog, values: list[int | None], total: int | None, prorated: bool, valid: bool
) -> None:
    """One or two missing items are prorated and rounded half up; three, or item 9, are not."""
    answers = {f"phq9.q{n}": v for n, v in enumerate(values, 1) if v is not None}
    result = score(catalog.get("phq9"), answers)
    assert (result.total, result.prorated, result.valid) == (total, prorated, valid)


def test_phq9_missing_item_9_raises_a_flag(catalog: Catalog) -> None:
    """A missing item 9 is itself a flag for the clinician, and the reason says why."""
    answers = {f"phq9.q{n}": 0 for n in range(1, 9)}
    result = score(catalog.get("phq9"), answers)
    assert result.flags == (SAFETY_ITEM_MISSING,)
    assert "phq9.q9 is never imputed" in result.reason


@pytest.mark.parametrize(("q9", "flags"), [(0, ()), (1, ("suicidality",)), (3, ("suicidality",))])
def test_phq9_item_9_flags_suicidality(catalog: Catalog, q9: int, flags: tuple[str, ...]) -> None:
    """Any answer above 'Not at all' on item 9 raises the suicidality flag, whatever the total."""
    answers = {f"phq9.q{n}": 0 for n in range(1, 9)} | {"phq9.q9": q9}
    assert score(catalog.get("phq9"), answers).flags == flags


def test_gad7_prorates_one_missing_item_only(catalog: Catalog) -> None:
    """GAD-7 tolerates one missing item (prorated, flagged), not two."""
    gad7 = catalog.get("gad7")
    one = score(gad7, {f"gad7.q{n}": 2 for n in range(1, 7)})
    two = score(gad7, {f"gad7.q{n}": 2 for n in range(1, 6)})
    assert (one.total, one.prorated) == (14, True)
    assert (two.total, two.valid) == (None, False)


def test_phq2_needs_both_items(catalog: Catalog) -> None:
    """The PHQ-2 has nothing to prorate from: one missing item leaves no total."""
    assert not score(catalog.get("phq2"), {"phq2.q1": 3}).valid


def test_side_effect_red_flag_and_blood_pressure(catalog: Catalog) -> None:
    """The checklist has no total; a red flag and a reading >= 180/110 raise their flags."""
    answers = {
        "side_effects.red_flags": 1,
        "side_effects.chest_pain": 1,
        "side_effects.short_of_breath": 0,
        "side_effects.severe_headache": 0,
        "side_effects.vision_change": 0,
        "side_effects.confusion": 0,
        "side_effects.seizure": 0,
        "side_effects.blood_pressure": BloodPressure(150, 112),
    }
    result = score(catalog.get("side_effects"), answers)
    assert result.total is None and result.valid
    assert result.flags == ("side_effect_red_flag", "red_flag_chest_pain", "blood_pressure_high")


def test_side_effect_details_are_only_missing_when_asked(catalog: Catalog) -> None:
    """Red-flag details apply only after a 'yes'; a 'no' leaves nothing missing."""
    result = score(catalog.get("side_effects"), {"side_effects.red_flags": 0})
    assert result.flags == ()


@pytest.mark.parametrize(
    ("answers", "problem"),
    [
        ({"phq9.q1": 4}, "phq9.q1: 4 is not a valid answer (0, 1, 2, 3)"),
        ({"phq9.q11": 1}, "phq9.q11: is not an item of phq9"),
        ({"phq9.q1": True}, "phq9.q1: True is not a valid answer"),
    ],
)
def test_impossible_values_are_faults(
    catalog: Catalog, answers: dict[str, int], problem: str
) -> None:
    """Values no reply could produce raise AnswerError naming the item."""
    with pytest.raises(AnswerError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        score(catalog.get("phq9"), answers)


@st.composite
def complete_answers(draw: st.DrawFn, instrument: Instrument) -> dict[str, int]:
    return {i.key: draw(st.sampled_from(i.values)) for i in instrument.items if i.kind == "choice"}


@pytest.mark.parametrize("key", ["phq9", "phq2", "gad7", "qids_sr16", "madrs_s"])
def test_any_complete_answer_set_scores_in_range(full_catalog: Catalog, key: str) -> None:
    """Property: every complete set of answers gives a valid total within 0..max and a band."""
    instrument = full_catalog.get(key)

    @given(complete_answers(instrument))
    def check(answers: dict[str, int]) -> None:
        result = score(instrument, answers)
        assert result.valid and not result.prorated
        assert result.total is not None and result.max_total is not None
        assert 0 <= result.total <= result.max_total
        assert result.band is not None

    check()


@pytest.mark.parametrize(("q9", "flagged"), [(1, False), (2, True), (3, True), (6, True)])
def test_madrs_s_item_9_flags_suicidality_from_2(
    full_catalog: Catalog, q9: int, flagged: bool
) -> None:
    """MADRS-S item 9 at 2 or more raises the suicidality flag, which sends the patient crisis
    resources, as for every urgent suicidality answer (2-3 urgent, 4-6 crisis)."""
    madrs = full_catalog.get("madrs_s")
    answers = {f"madrs_s.q{n}": 0 for n in range(1, 9)} | {"madrs_s.q9": q9}
    assert ("suicidality" in score(madrs, answers).flags) is flagged

"""Outcomes across a treatment series, at their exact thresholds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot.domain.outcomes import Assessment, Observation, OutcomeRules, assess, baseline_of
from bot.instruments import Catalog

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def series(*points: tuple[int, int | None]) -> list[Observation]:
    """Observations a day apart from (total, sessions completed before it) pairs."""
    return [
        Observation(T0 + timedelta(days=n), total, session)
        for n, (total, session) in enumerate(points)
    ]


@pytest.fixture(scope="module")
def phq9(catalog: Catalog) -> OutcomeRules:
    return catalog.get("phq9").outcomes


def test_no_observations_means_nothing_known(phq9: OutcomeRules) -> None:
    """An empty history assesses to no baseline and no statuses."""
    assert assess([], phq9) == Assessment(None, None, None, None, None)


def test_baseline_is_the_last_score_before_the_first_session() -> None:
    """Two pre-series scores: the later one is the baseline; without any, the first score."""
    assert baseline_of(series((22, 0), (20, 0), (15, 1))) == series((22, 0), (20, 0), (15, 1))[1]
    assert baseline_of(series((18, 1), (12, 2))) == series((18, 1))[0]


@pytest.mark.parametrize(
    ("baseline", "latest", "response"),
    [
        (20, 10, True),
        (20, 11, False),
        (21, 10, True),
        (21, 11, False),
        (10, 5, True),
        (10, 6, False),
    ],
)
def test_response_is_at_least_half(
    phq9: OutcomeRules, baseline: int, latest: int, response: bool
) -> None:
    """Response is a >= 50 % reduction, exactly (HEDIS DRR-E); a zero baseline cannot respond."""
    assert assess(series((baseline, 0), (latest, 1)), phq9).response is response


@pytest.mark.parametrize(("latest", "remission"), [(4, True), (5, False), (0, True)])
def test_phq9_remission_is_below_five(phq9: OutcomeRules, latest: int, remission: bool) -> None:
    """PHQ-9 remission is a total < 5 (HEDIS DRR-E)."""
    assert assess(series((20, 0), (latest, 3)), phq9).remission is remission


def test_qids_remission_is_five_or_less(full_catalog: Catalog) -> None:
    """QIDS-SR16 remission is <= 5 (STAR*D); 6 is not."""
    rules = full_catalog.get("qids_sr16").outcomes
    assert assess(series((16, 0), (5, 2)), rules).remission
    assert not assess(series((16, 0), (6, 2)), rules).remission


@pytest.mark.parametrize(
    ("points", "expected"),
    [
        (((20, 0), (14, 1)), {"reliable_improvement"}),
        (((20, 0), (15, 1)), set()),
        (((8, 0), (14, 1)), {"reliable_worsening", "worsening_from_best"}),
        (((8, 0), (13, 1)), set()),
        (((20, 0), (6, 1), (12, 2)), {"reliable_improvement", "worsening_from_best"}),
    ],
)
def test_reliable_change_is_six_phq9_points(
    phq9: OutcomeRules, points: tuple[tuple[int, int], ...], expected: set[str]
) -> None:
    """Six points either way is reliable change (NHS Talking Therapies); 6 above the best is worsening."""
    change = {"reliable_improvement", "reliable_worsening", "worsening_from_best"}
    assert set(assess(series(*points), phq9).statuses) & change == expected


def test_gad7_reliable_change_is_four(catalog: Catalog) -> None:
    """GAD-7 reliable change is 4 points."""
    rules = catalog.get("gad7").outcomes
    assert assess(series((15, 0), (11, 1)), rules).reliable_improvement
    assert not assess(series((15, 0), (12, 1)), rules).reliable_improvement


@pytest.mark.parametrize(
    ("points", "early"),
    [
        (((20, 0), (16, 1)), True),  # 20 % after session 1
        (((20, 0), (17, 1)), None),  # not yet, session 2 still to come
        (((20, 0), (17, 1), (16, 2)), True),  # 20 % by session 2
        (((20, 0), (17, 1), (17, 2)), False),  # session 2 passed without 20 %
        (((20, 0), (19, 1), (18, 2), (10, 3)), False),  # improvement after the window is not early
    ],
)
def test_early_improvement_by_session_two(
    phq9: OutcomeRules, points: tuple[tuple[int, int], ...], early: bool | None
) -> None:
    """Early improvement is >= 20 % by session 2 (CRTCE 2021); unknown until session 2 has passed."""
    assert assess(series(*points), phq9).early_improvement is early


@pytest.mark.parametrize(
    ("points", "non_response"),
    [
        (((20, 0), (19, 1), (18, 2), (18, 3), (17, 4)), True),  # 15 % after session 4
        (((20, 0), (19, 1), (18, 2), (18, 3), (16, 4)), False),  # 20 % after session 4
        (((20, 0), (19, 1), (18, 2), (17, 3)), True),  # three consecutive non-improvements
        (((20, 0), (19, 1), (16, 2), (17, 3)), False),  # improved at session 2
        (((20, 0), (19, 1), (18, 2)), False),  # only two sessions so far
        (((20, 0), (19, 1), (18, 3), (18, 4)), True),  # after session 4 regardless of gaps
        (
            ((20, 0), (19, 1), (18, 3), (17, 5)),
            True,
        ),  # sessions 1, 3, 5 are not consecutive, but 5 > 4
        (((20, 0), (19, 2), (18, 3)), False),  # 2 and 3: only two in a row
        (((20, 0), (20, 0)), False),  # no sessions yet
    ],
)
def test_non_response(
    phq9: OutcomeRules, points: tuple[tuple[int, int], ...], non_response: bool
) -> None:
    """< 20 % after session 4, or three consecutive non-improvements (Transl Psychiatry 2024)."""
    assert assess(series(*points), phq9).non_response is non_response


@pytest.mark.parametrize(
    ("points", "relapse"),
    [
        (((20, 0), (4, 4), (10, 5), (11, 6)), True),  # back to >= 10 twice
        (((20, 0), (4, 4), (10, 5), (8, 6)), False),  # only once
        (((20, 0), (4, 4), (9, 5), (10, 6)), False),  # 9 is below the threshold
        (((20, 0), (4, 4), (12, 5), (9, 6), (14, 7)), False),  # >= 10 twice, not in a row
        (((20, 0), (4, 4), (12, 5), (9, 6), (14, 7), (10, 8)), True),  # then in a row
        (((20, 0), (2, 4), (7, 5), (8, 6)), False),  # +5 from the nadir of 2, twice: not relapse
        (((20, 0), (0, 4), (5, 5), (6, 6)), False),  # 5 and 6 after a nadir of 0: not relapse
        (((20, 0), (6, 4), (12, 5), (12, 6)), False),  # never remitted
    ],
)
def test_phq9_relapse_after_remission(
    phq9: OutcomeRules, points: tuple[tuple[int, int], ...], relapse: bool
) -> None:
    """After remission, PHQ-9 >= 10 (Kroenke 2001 cut-point) on two consecutive check-ins is
    relapse (T4); a small rise from the nadir to 5 or so is not."""
    assert assess(series(*points), phq9).relapse is relapse


def test_without_sessions_the_first_score_is_the_baseline(phq9: OutcomeRules) -> None:
    """Weekly scores with no treatment sessions compare with the first, not the latest."""
    result = assess(series((20, None), (14, None), (9, None)), phq9)
    assert (result.baseline, result.change, result.response) == (20, -11, True)


def test_a_score_after_the_series_is_not_the_baseline(phq9: OutcomeRules) -> None:
    """An unnumbered score taken after the series does not replace the pre-series baseline."""
    result = assess(series((20, 0), (16, 1), (12, None)), phq9)
    assert result.baseline == 20


def test_no_relapse_without_a_remission_after_baseline(phq9: OutcomeRules) -> None:
    """A baseline already in the remission range is not 'remission' to relapse from."""
    assert not assess(series((4, 0), (10, 1), (11, 2)), phq9).relapse


def test_percent_change(phq9: OutcomeRules) -> None:
    """Change and percent improvement are reported against the baseline."""
    result = assess(series((24, 0), (18, 1)), phq9)
    assert (result.baseline, result.latest, result.change, result.improvement_pct) == (
        24,
        18,
        -6,
        25.0,
    )


def test_explicit_baseline_overrides(phq9: OutcomeRules) -> None:
    """A clinician-chosen baseline replaces the inferred one."""
    assert assess(series((10, 0), (9, 1)), phq9, baseline=18).response is True


def test_clinician_madrs_remission_is_twelve_or_less() -> None:
    """Clinician-entered MADRS totals remit at <= 12 (SUSTAIN-2); 13 does not."""
    from bot.domain.outcomes import CLINICIAN_MADRS

    assert assess(series((34, 0), (12, 4)), CLINICIAN_MADRS).remission
    assert not assess(series((34, 0), (13, 4)), CLINICIAN_MADRS).remission


@pytest.mark.parametrize(
    ("key", "baseline", "latest", "claimed"),
    [
        ("phq9", 10, 4, True),  # moderate baseline: response and remission
        ("phq9", 9, 4, False),  # mild baseline: neither, baseline below threshold
        ("phq9", 8, 0, False),
        ("qids_sr16", 11, 5, True),
        ("qids_sr16", 10, 5, False),
    ],
)
def test_response_and_remission_need_a_baseline_at_threshold(
    full_catalog: Catalog, key: str, baseline: int, latest: int, claimed: bool
) -> None:
    """Response and remission are claimed only from PHQ-9 >= 10 (HEDIS DRR-E) or QIDS-SR16 >= 11;
    below that the assessment says baseline_below_threshold instead."""
    result = assess(series((baseline, 0), (latest, 2)), full_catalog.get(key).outcomes)
    assert (result.response, result.remission) == (claimed, claimed)
    assert result.baseline_below_threshold is not claimed
    assert ("baseline_below_threshold" in result.statuses) is not claimed
    assert ("response" in result.statuses) is claimed


def test_madrs_s_response_needs_a_moderate_baseline(full_catalog: Catalog) -> None:
    """MADRS-S response is claimed from a baseline of 20 (moderate) or more, not from 19."""
    rules = full_catalog.get("madrs_s").outcomes
    assert assess(series((20, 0), (10, 3)), rules).response
    below = assess(series((19, 0), (5, 3)), rules)
    assert (below.response, below.baseline_below_threshold) == (False, True)


@pytest.mark.parametrize(
    ("points", "non_response", "loss"),
    [
        # responded at session 3 (50 %), back to 17 (15 %) at session 8: loss of response
        (((20, 0), (14, 1), (12, 2), (10, 3), (8, 6), (17, 8)), False, True),
        # never responded: the same last score is non-response
        (((20, 0), (18, 1), (17, 2), (16, 3), (16, 6), (17, 8)), True, False),
        # responded, and still 20 % better: neither
        (((20, 0), (10, 3), (16, 8)), False, False),
        # a low score before the series is not a response to treatment
        (((20, 0), (9, 0), (20, 0), (19, 4)), True, False),
    ],
)
def test_loss_of_response_is_not_non_response(
    phq9: OutcomeRules, points: tuple[tuple[int, int], ...], non_response: bool, loss: bool
) -> None:
    """After a response, falling back below 20 % better is loss of response, not non-response."""
    result = assess(series(*points), phq9)
    assert (result.non_response, result.loss_of_response) == (non_response, loss)

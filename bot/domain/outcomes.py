"""Outcomes over time: baseline, change, response, remission, reliable change, early
improvement, non-response, loss of response and relapse across a treatment series.

Pure: a list of scored observations in, an :class:`Assessment` out. Thresholds come from
the instrument's ``[outcomes]`` table (each cited there); the defaults below are the ones
that hold across instruments, with their sources.

Sessions: ``Observation.session`` is the number of treatment sessions completed before the
score was taken. 0 (or None) means before the series; the check-in the day after the
fourth infusion has ``session=4``. Percentages compare with integer arithmetic, so a
boundary (exactly 50 %) is never lost to floating point.

Response and remission are claimed only from a baseline at or above the instrument's
``response_min_baseline`` (PHQ-9 10, QIDS-SR16 11): below it the assessment says
``baseline_below_threshold`` instead. Non-response is for a patient who never responded;
one who had responded and falls back to the non-response criterion has a *loss of
response* (typically during maintenance), a different clinical question.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class OutcomeRules:
    # >= 50 % reduction from baseline: NCQA HEDIS DRR-E, MNCM NQF 1884 (PHQ-9); STAR*D (QIDS).
    response_pct: int = 50
    # Response and remission are reported only from a baseline at or above this. Per
    # instrument (PHQ-9 10: HEDIS DRR-E counts response/remission from an elevated PHQ-9 > 9;
    # QIDS-SR16 11, the lower bound of "moderate", Rush 2003). None: any baseline.
    response_min_baseline: int | None = None
    # Remission: total at or below this. Per instrument (PHQ-9 4 i.e. < 5; QIDS-SR16 5).
    remission_max: int | None = None
    # Reliable change in points. Per instrument (PHQ-9 6, GAD-7 4: NHS Talking Therapies).
    reliable_change: int | None = None
    # Early improvement >= 20 % by session 2: CRTCE, Prog Neuropsychopharmacol Biol
    # Psychiatry 2021;105:110126 (informational only: most non-early-improvers still respond).
    early_improvement_pct: int = 20
    early_improvement_by_session: int = 2
    # Non-response: < 20 % improvement after session 4, or no >= 20 % improvement on three
    # consecutive post-session check-ins: Transl Psychiatry 2024, doi:10.1038/s41398-024-03027-2.
    nonresponse_pct: int = 20
    nonresponse_after_session: int = 4
    nonresponse_consecutive: int = 3
    # Relapse after remission. Per instrument (PHQ-9: back to >= 10 on two consecutive
    # check-ins, instruments.md T4; QIDS-SR16: >= 11, STAR*D). A rise from the nadir is
    # optional (None: off); small rises are the worsening alert's, not a relapse.
    relapse_min_total: int | None = None
    relapse_rise_from_nadir: int | None = None
    relapse_consecutive: int = 1


@dataclass(frozen=True)
class Observation:
    at: datetime
    total: int
    session: int | None = None


@dataclass(frozen=True)
class Assessment:
    baseline: int | None
    latest: int | None
    best: int | None
    change: int | None  # latest - baseline; negative is better
    improvement_pct: float | None  # (baseline - latest) / baseline * 100
    response: bool = False
    remission: bool = False
    reliable_improvement: bool = False
    reliable_worsening: bool = False
    worsening_from_best: bool = False
    early_improvement: bool | None = None  # None: not yet known
    non_response: bool = False
    relapse: bool = False
    loss_of_response: bool = False  # responded earlier, now at the non-response criterion
    baseline_below_threshold: bool = False  # response and remission are not claimed

    @property
    def statuses(self) -> tuple[str, ...]:
        names = (
            "response",
            "remission",
            "reliable_improvement",
            "reliable_worsening",
            "worsening_from_best",
            "early_improvement",
            "non_response",
            "relapse",
            "loss_of_response",
            "baseline_below_threshold",
        )
        return tuple(n for n in names if getattr(self, n) is True)


def improved_by(baseline: int, total: int, pct: int) -> bool:
    """True when `total` is at least `pct` percent below `baseline` (exact arithmetic)."""
    return baseline > 0 and (baseline - total) * 100 >= pct * baseline


def baseline_of(observations: Sequence[Observation]) -> Observation | None:
    """The last score before the first treatment session; without sessions, the first score."""
    ordered = sorted(observations, key=lambda o: o.at)
    first_session = next((o.at for o in ordered if o.session), None)
    if first_session is None:
        return ordered[0] if ordered else None
    before = [o for o in ordered if not o.session and o.at < first_session]
    return before[-1] if before else ordered[0]


def assess(
    observations: Sequence[Observation],
    rules: OutcomeRules,
    baseline: int | None = None,
) -> Assessment:
    """Assess a patient's scores on one instrument, oldest to newest in any order."""
    ordered = sorted(observations, key=lambda o: o.at)
    if not ordered:
        return Assessment(None, None, None, None, None)
    if baseline is None:
        found = baseline_of(ordered)
        baseline = found.total if found else None
    assert baseline is not None
    latest = ordered[-1].total
    best = min([baseline, *(o.total for o in ordered)])
    rc = rules.reliable_change
    prior_best = min([baseline, *(o.total for o in ordered[:-1])])
    floor = rules.response_min_baseline
    below = floor is not None and baseline < floor
    stalled = _non_response(ordered, baseline, rules)
    responded = _responded_before(ordered, baseline, rules)
    return Assessment(
        baseline=baseline,
        latest=latest,
        best=best,
        change=latest - baseline,
        improvement_pct=(baseline - latest) * 100 / baseline if baseline else None,
        response=not below and improved_by(baseline, latest, rules.response_pct),
        remission=not below and _remitted(latest, rules),
        reliable_improvement=rc is not None and baseline - latest >= rc,
        reliable_worsening=rc is not None and latest - baseline >= rc,
        worsening_from_best=rc is not None and latest - prior_best >= rc,
        early_improvement=_early_improvement(ordered, baseline, rules),
        non_response=stalled and not responded,
        relapse=_relapse(ordered[1:], rules),  # remission counts only after the first score
        loss_of_response=stalled and responded,
        baseline_below_threshold=below,
    )


def _responded_before(ordered: Sequence[Observation], baseline: int, rules: OutcomeRules) -> bool:
    """An earlier post-session score (not the latest) met the response criterion. The
    baseline floor is not applied here: it decides what is claimed, not what happened."""
    earlier = [o for o in ordered[:-1] if o.session]
    return any(improved_by(baseline, o.total, rules.response_pct) for o in earlier)


def _remitted(total: int, rules: OutcomeRules) -> bool:
    return rules.remission_max is not None and total <= rules.remission_max


def _after_sessions(ordered: Sequence[Observation]) -> list[tuple[int, int]]:
    """(session, total) of the last observation after each session >= 1, in session order."""
    last: dict[int, int] = {}
    for o in ordered:
        if o.session:
            last[o.session] = o.total
    return sorted(last.items())


def _early_improvement(
    ordered: Sequence[Observation], baseline: int, rules: OutcomeRules
) -> bool | None:
    post = _after_sessions(ordered)
    by = rules.early_improvement_by_session
    window = [total for session, total in post if session <= by]
    if any(improved_by(baseline, total, rules.early_improvement_pct) for total in window):
        return True
    return False if any(session >= by for session, _ in post) else None


def _non_response(ordered: Sequence[Observation], baseline: int, rules: OutcomeRules) -> bool:
    post = _after_sessions(ordered)
    if not post:
        return False
    session, total = post[-1]
    if improved_by(baseline, total, rules.nonresponse_pct):
        return False
    if session >= rules.nonresponse_after_session:
        return True
    run = post[-rules.nonresponse_consecutive :]
    sessions = [s for s, _ in run]
    consecutive = len(run) == rules.nonresponse_consecutive and sessions == list(
        range(sessions[0], sessions[0] + len(run))
    )
    return consecutive and not any(improved_by(baseline, t, rules.nonresponse_pct) for _, t in run)


def _relapse(ordered: Sequence[Observation], rules: OutcomeRules) -> bool:
    if rules.remission_max is None:
        return False
    remitted_at = next((i for i, o in enumerate(ordered) if o.total <= rules.remission_max), None)
    if remitted_at is None:
        return False
    since = ordered[remitted_at:]
    hits: list[bool] = []
    nadir = since[0].total
    for o in since[1:]:
        hits.append(_relapsing(o.total, nadir, rules))
        nadir = min(nadir, o.total)
    need = rules.relapse_consecutive
    return len(hits) >= need and all(hits[-need:])


def _relapsing(total: int, nadir: int, rules: OutcomeRules) -> bool:
    high = rules.relapse_min_total is not None and total >= rules.relapse_min_total
    rise = (
        rules.relapse_rise_from_nadir is not None and total - nadir >= rules.relapse_rise_from_nadir
    )
    return high or rise


# Clinician-rated MADRS totals entered by the clinic (the bot never administers the MADRS):
# response >= 50 % and remission <= 12, as in the esketamine programme (SUSTAIN-2, Nijs 2020;
# ASPIRE). Some ketamine studies use <= 10: pass a different `remission_max` to change it.
CLINICIAN_MADRS = OutcomeRules(response_pct=50, remission_max=12)

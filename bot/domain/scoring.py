"""Scoring: totals, bands, domains, safety flags and missing-item rules. Pure.

Rules (see ../shared/reference/instruments.md and each definition file):

* ``sum``: the total adds the scored items. With at most ``max_missing`` items missing the
  total is prorated: the answered items' mean stands in for each missing one, and the
  result is rounded half up to a whole number (PHQ-9: NHS Data Dictionary, "one or two
  values missing ... substituted with the average score of the non-missing items"; MNCM
  treats decimal PHQ-9 totals as invalid). More missing: no total.
* ``domains``: each domain is the highest (or the sum) of its answered items. A domain
  may miss at most ``max_missing`` answers (QIDS-SR16: one in sleep, appetite/weight and
  psychomotor); more leaves the total invalid, fewer raises ``domain_item_missing``
  (instruments.md section 6). A ``one_of`` group is one answer: the QIDS-SR16 form asks
  for either item 6 or 7 and either 8 or 9, so answering one of each is complete.
* ``none``: a checklist; it raises flags but has no total.
* Items listed in ``never_impute`` (PHQ-9 item 9, QIDS-SR16 item 12) are never replaced by
  an average: if one is missing the total is invalid and ``safety_item_missing`` is raised.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from bot.domain.errors import AnswerError
from bot.domain.instruments import AnswerValue, BloodPressure, Domain, Instrument, Item

SAFETY_ITEM_MISSING = "safety_item_missing"
DOMAIN_ITEM_MISSING = "domain_item_missing"  # a max-domain scored from fewer items than it has


@dataclass(frozen=True)
class ScoreResult:
    instrument: str
    total: int | None
    band: str | None
    valid: bool
    prorated: bool = False
    raw_total: int | None = None
    answered: int = 0
    missing: tuple[str, ...] = ()
    domains: Mapping[str, int | None] = field(default_factory=dict)
    flags: tuple[str, ...] = ()
    reason: str = ""
    max_total: int | None = None


def score(instrument: Instrument, answers: Mapping[str, AnswerValue]) -> ScoreResult:
    """Score one administration. Raises AnswerError only for values no reply could produce."""
    check_answers(instrument, answers)
    flags = _flags(instrument, answers)
    method = instrument.scoring.method
    if method == "none":
        return ScoreResult(instrument.key, None, None, True, answered=len(answers), flags=flags)
    required = [i for i in instrument.scored_items if i.applies(answers)]
    missing = tuple(i.key for i in required if i.key not in answers)
    base = ScoreResult(
        instrument.key,
        total=None,
        band=None,
        valid=False,
        answered=len(required) - len(missing),
        missing=missing,
        flags=flags,
        max_total=instrument.max_total,
    )
    unimputable = [k for k in missing if k in instrument.scoring.never_impute]
    if unimputable:
        reason = f"{', '.join(unimputable)} is never imputed; ask it again"
        return replace(base, reason=reason)
    if method == "domains":
        return _by_domains(instrument, answers, base)
    return _by_sum(instrument, answers, required, base)


def check_answers(instrument: Instrument, answers: Mapping[str, AnswerValue]) -> None:
    for key, value in answers.items():
        try:
            item = instrument.item(key)
        except KeyError:
            raise AnswerError(key, f"is not an item of {instrument.key}") from None
        _check_value(item, value)


def _check_value(item: Item, value: AnswerValue) -> None:
    if item.kind == "blood_pressure":
        if not isinstance(value, BloodPressure):
            raise AnswerError(item.key, "needs a blood-pressure reading like 120/80")
        return
    if isinstance(value, BloodPressure | bool) or item.option(value) is None:
        allowed = ", ".join(str(v) for v in item.values)
        raise AnswerError(item.key, f"{value} is not a valid answer ({allowed})")


def points(item: Item, value: AnswerValue) -> int:
    option = item.option(value) if isinstance(value, int) else None
    return option.points if option is not None else 0


def _flags(instrument: Instrument, answers: Mapping[str, AnswerValue]) -> tuple[str, ...]:
    raised: list[str] = []
    for item in instrument.items:
        if not item.applies(answers):
            continue  # e.g. a red-flag detail after the screening question was changed to "no"
        value = answers.get(item.key)
        if value is None:
            if item.safety:
                raised.append(SAFETY_ITEM_MISSING)
            continue
        raised.extend(rule.name for rule in item.flags if rule.fires(value))
    return tuple(dict.fromkeys(raised))


def _by_sum(
    instrument: Instrument,
    answers: Mapping[str, AnswerValue],
    required: list[Item],
    base: ScoreResult,
) -> ScoreResult:
    answered = [i for i in required if i.key in answers]
    raw = sum(points(i, answers[i.key]) for i in answered)
    shortfall = len(required) - len(answered)
    if not answered or shortfall > instrument.scoring.max_missing:
        reason = (
            f"{shortfall} of {len(required)} items missing; "
            f"at most {instrument.scoring.max_missing} may be prorated"
        )
        return replace(base, raw_total=raw, reason=reason)
    total = _round_half_up(raw * len(required), len(answered))
    band = instrument.band_for(total)
    return replace(
        base,
        total=total,
        band=band.key if band else None,
        valid=True,
        prorated=shortfall > 0,
        raw_total=raw,
    )


def _by_domains(
    instrument: Instrument, answers: Mapping[str, AnswerValue], base: ScoreResult
) -> ScoreResult:
    domains = {d.key: _domain_score(instrument, d, answers) for d in instrument.scoring.domains}
    short = [
        d.key for d in instrument.scoring.domains if _domain_shortfall(d, answers) > _tolerated(d)
    ]
    if short:
        reason = f"too many unanswered items in domain(s) {', '.join(short)}"
        return replace(base, domains=domains, reason=reason)
    incomplete = any(_domain_shortfall(d, answers) for d in instrument.scoring.domains)
    if incomplete:
        base = replace(base, flags=(*base.flags, DOMAIN_ITEM_MISSING))
    total = sum(v for v in domains.values() if v is not None)
    band = instrument.band_for(total)
    return replace(
        base,
        total=total,
        band=band.key if band else None,
        valid=True,
        raw_total=total,
        domains=domains,
    )


def _domain_shortfall(domain: Domain, answers: Mapping[str, AnswerValue]) -> int:
    """Expected answers left out: a `one_of` group is answered by any one of its items."""
    return sum(1 for slot in domain.slots if not any(key in answers for key in slot))


def _tolerated(domain: Domain) -> int:
    return len(domain.slots) - 1 if domain.max_missing is None else domain.max_missing


def _domain_score(
    instrument: Instrument, domain: Domain, answers: Mapping[str, AnswerValue]
) -> int | None:
    values = [points(instrument.item(k), answers[k]) for k in domain.items if k in answers]
    if not values:
        return None
    return max(values) if domain.method == "max" else sum(values)


def _round_half_up(numerator: int, denominator: int) -> int:
    return (2 * numerator + denominator) // (2 * denominator)

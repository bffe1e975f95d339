"""The ``wording_missing`` rule: a check-in came due with an instrument that has no wording
in the patient's language. The check-in goes ahead with the instruments that have it, and
the responsible clinician is told once per patient and instrument, so that a screening
that is not happening (a Spanish-speaking patient's GAD-7, say) is never silent. Pure.

One alert per instrument: an alert of this rule is the same alert only for the same
instrument (see :data:`PER_INSTRUMENT` and :func:`bot.domain.alerts.lifecycle.raise_or_update`),
and the shell passes the instruments it has ever alerted about for the patient, so a
protocol that plans the instrument every week raises it once, not every week.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime

from bot.domain.alerts.rules import AlertRules, Trigger

WORDING_MISSING = "wording_missing"
# Rules whose alerts are told apart by the instrument in their detail.
PER_INSTRUMENT = frozenset({WORDING_MISSING})


def on_wording_missing(
    instruments: Sequence[str],
    language: str,
    told: Collection[str],
    rules: AlertRules,
    now: datetime,
) -> list[Trigger]:
    """One trigger per instrument without `language` wording that no earlier alert of the
    patient named (`told`). The detail names the instrument and the language, nothing else."""
    rule = rules.wording_missing
    if not rule.enabled:
        return []
    return [
        Trigger(rule.key, rule.level, now, {"instrument": key, "language": language})
        for key in dict.fromkeys(instruments)
        if key not in told
    ]

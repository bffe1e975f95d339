"""Alerts: which answers, scores and missed check-ins need a clinician, and an alert's life
from raised to resolved. Pure, standard library only; imports nothing of ``bot`` outside
``bot.domain``.

* :mod:`.rules`: levels, rules and their defaults, triggers.
* :mod:`.config`: the ``[alerts]`` table of config.toml -> :class:`AlertRules`.
* :mod:`.evaluate`: rules applied to an answer, a score, missed check-ins.
* :mod:`.optout`: a patient stopping check-ins (STOP, a blocked bot) as an alert.
* :mod:`.lifecycle`: raise, update, escalate, acknowledge, resolve (a state machine).
* :mod:`.events`: what happened to an alert, as audit-ready facts, and who did it.
* :mod:`.amend`: an alert's detail amended when the safety answer that raised it is lowered.
* :mod:`.wording`: a due instrument without wording in the patient's language.

The names below are the family's public surface; code outside it imports from here.
"""

from bot.domain.alerts.amend import safety_answer_lowered
from bot.domain.alerts.config import check_references, rules_from_mapping
from bot.domain.alerts.evaluate import (
    CheckinOutcome,
    on_answer,
    on_endorsed,
    on_late_answer,
    on_missed,
    on_risk_language,
    on_score,
)
from bot.domain.alerts.events import (
    OPERATOR,
    PATIENT,
    SYSTEM,
    Actor,
    AlertAcknowledged,
    AlertEscalated,
    AlertEvent,
    AlertRaised,
    AlertResolutionRefused,
    AlertResolved,
    AlertUpdated,
    actor_of,
    clinician,
)
from bot.domain.alerts.lifecycle import (
    AlertState,
    Change,
    acknowledge,
    clinician_only,
    escalate,
    new_code,
    normalize_code,
    raise_or_update,
    resolve,
    undelivered,
    why_rerouted,
)
from bot.domain.alerts.optout import (
    OptOutFacts,
    OptOutHow,
    endorsed,
    endorsed_since,
    is_safety_item,
    on_opted_out,
    opt_out_level,
    serious_open,
)
from bot.domain.alerts.rules import (
    CLINICIAN_CLOSES,
    CRISIS_NOTED_RULES,
    CRISIS_SENT_AT,
    DEFAULT_RULES,
    LEVELS,
    RED_FLAG_PREFIX,
    RISK_LANGUAGE,
    SUICIDALITY_FLAG,
    SYMPTOMS,
    AlertRules,
    DetailValue,
    FlagRule,
    ItemRule,
    Level,
    LevelPolicy,
    MissedRule,
    OptOutRule,
    Rule,
    ScoreRule,
    Trigger,
    highest,
    rank,
    reached,
)
from bot.domain.alerts.wording import WORDING_MISSING, on_wording_missing

__all__ = [
    "CLINICIAN_CLOSES",
    "CRISIS_NOTED_RULES",
    "CRISIS_SENT_AT",
    "DEFAULT_RULES",
    "LEVELS",
    "OPERATOR",
    "PATIENT",
    "RED_FLAG_PREFIX",
    "RISK_LANGUAGE",
    "SUICIDALITY_FLAG",
    "SYMPTOMS",
    "SYSTEM",
    "WORDING_MISSING",
    "Actor",
    "AlertAcknowledged",
    "AlertEscalated",
    "AlertEvent",
    "AlertRaised",
    "AlertResolutionRefused",
    "AlertResolved",
    "AlertRules",
    "AlertState",
    "AlertUpdated",
    "Change",
    "CheckinOutcome",
    "DetailValue",
    "FlagRule",
    "ItemRule",
    "Level",
    "LevelPolicy",
    "MissedRule",
    "OptOutFacts",
    "OptOutHow",
    "OptOutRule",
    "Rule",
    "ScoreRule",
    "Trigger",
    "acknowledge",
    "actor_of",
    "check_references",
    "clinician",
    "clinician_only",
    "endorsed",
    "endorsed_since",
    "escalate",
    "highest",
    "is_safety_item",
    "new_code",
    "normalize_code",
    "on_answer",
    "on_endorsed",
    "on_late_answer",
    "on_missed",
    "on_opted_out",
    "on_risk_language",
    "on_score",
    "on_wording_missing",
    "opt_out_level",
    "raise_or_update",
    "rank",
    "reached",
    "resolve",
    "rules_from_mapping",
    "safety_answer_lowered",
    "serious_open",
    "undelivered",
    "why_rerouted",
]

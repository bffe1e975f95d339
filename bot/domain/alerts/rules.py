"""Alert rules as plain, frozen values: levels, rules, their defaults, and triggers.

A rule looks at what happened (an answer, a score, missed check-ins, an opt-out) and may
produce a :class:`Trigger`: the rule's key, a level and a detail of plain values (instrument
key, total, change, item key and number, session). A detail never holds item wording or
reply text; templates turn it into words. Nothing here does I/O or reads a clock.

The modules beside this one do the work:

* :mod:`bot.domain.alerts.evaluate`: ``on_answer``, ``on_score``, ``on_missed`` -> triggers;
* :mod:`bot.domain.alerts.optout`: ``on_opted_out`` -> the ``opted_out`` trigger;
* :mod:`bot.domain.alerts.lifecycle`: an alert's life (raise or update within the cool-down,
  escalate past the deadline, acknowledge, resolve) and its acknowledgement code;
* :mod:`bot.domain.alerts.config`: the ``[alerts]`` table of config.toml -> :class:`AlertRules`.

Levels follow instruments.md section 11: crisis = P0, urgent = P1, routine = P2,
info = P3 (dashboard only: no acknowledgement, no notification, no escalation).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Literal

Level = Literal["info", "routine", "urgent", "crisis"]
LEVELS: tuple[Level, ...] = ("info", "routine", "urgent", "crisis")  # lowest first

DetailValue = str | int | float | bool | None
Thresholds = Mapping[Level, int]  # level -> the lowest value that reaches it

SUICIDALITY_FLAG = "suicidality"
RISK_LANGUAGE = "risk_language"  # a message spoke of suicide or self-harm (domain/risk.py)
# A flag naming one red-flag symptom (red_flag_chest_pain): its trigger's detail carries
# the item in "symptoms", which templates turn into "chest pain reported". An alert
# updated with a symptom it did not name yet tells its clinicians again (lifecycle).
RED_FLAG_PREFIX = "red_flag_"
SYMPTOMS = "symptoms"  # detail key: item keys, comma-separated, first named first
# Detail key: when crisis resources were sent to the patient (ISO 8601, UTC), set on the
# triggers of these rules by the shell, which knows what the patient was sent; every
# clinician message about such an alert says so.
CRISIS_SENT_AT = "crisis_sent_at"
CRISIS_NOTED_RULES = frozenset({"suicidality", "risk_language"})
# Rules whose alerts only a clinician may resolve, whatever their level (crisis alerts
# always): "never let [the bot] close the alert. Only a clinician can close the loop"
# (instruments.md section 7, step 4; S1 "require clinician closure").
CLINICIAN_CLOSES = frozenset({"suicidality", "side_effect_red_flag", RISK_LANGUAGE})
# Rules that an operator may neither disable nor set below their floor: DESIGN.md "Clinical
# behaviour that must never be wrong" (a positive suicidality answer sends an urgent alert),
# AE3 (red-flag symptoms after a session are an emergency), risk language in a message,
# which is a suicidality signal however it came (issue 19), and opting out (a patient who
# stops is no longer measured, and only this alert tells the clinician; its at-risk level
# has the urgent floor, checked in config).
PROTECTED: Mapping[str, Level] = {
    "suicidality": "urgent",
    "side_effect_red_flag": "urgent",
    RISK_LANGUAGE: "urgent",
    "opted_out": "routine",
}


def rank(level: Level) -> int:
    return LEVELS.index(level)


def highest(levels: Iterable[Level | None]) -> Level | None:
    top: Level | None = None
    for level in levels:
        if level is not None and (top is None or rank(level) > rank(top)):
            top = level
    return top


def reached(thresholds: Thresholds, value: int) -> Level | None:
    """The highest level whose threshold `value` meets (None: below every threshold)."""
    return highest(level for level, at_least in thresholds.items() if value >= at_least)


@dataclass(frozen=True)
class LevelPolicy:
    """How fast a level must be acknowledged and how often it is re-sent after that."""

    ack_within: timedelta | None  # None: no acknowledgement expected (and no notification)
    repeat_every: timedelta | None = None  # None: every `ack_within`


@dataclass(frozen=True)
class Rule:
    key: str
    level: Level = "routine"
    enabled: bool = True
    cooldown: timedelta | None = None  # None: AlertRules.cooldown


@dataclass(frozen=True)
class ItemRule(Rule):
    """Graded by an item's value; the item's own `suicidality` flag alerts at least at `level`."""

    items: Mapping[str, Thresholds] = field(default_factory=dict)


@dataclass(frozen=True)
class ScoreRule(Rule):
    """Graded by a valid total, per instrument: the thresholds give the level (not `level`)."""

    instruments: Mapping[str, Thresholds] = field(default_factory=dict)


@dataclass(frozen=True)
class WorseningRule(Rule):
    """A rise from the best score so far (the baseline included) of `rise_from_best` points
    for the instrument, else of its reliable change; optionally also a rise of N points from
    the previous score, per instrument."""

    rise_from_previous: Mapping[str, int] = field(default_factory=dict)
    rise_from_best: Mapping[str, int] = field(default_factory=dict)

    def threshold(self, instrument: str, reliable_change: int | None) -> int | None:
        """Points above the best score that are worsening (None: no rule for it)."""
        return self.rise_from_best.get(instrument, reliable_change)


@dataclass(frozen=True)
class FlagRule(Rule):
    """Alerts when an answer raises one of `flags` ("red_flag_*" matches a prefix)."""

    flags: tuple[str, ...] = ()

    def matches(self, flag: str) -> bool:
        return any(flag.startswith(p[:-1]) if p.endswith("*") else flag == p for p in self.flags)


@dataclass(frozen=True)
class MissedRule(Rule):
    """`in_a_row` check-ins expired without a single answer."""

    in_a_row: int = 2
    level_with_open_alert: Level = "urgent"  # when a crisis/urgent alert is unresolved


@dataclass(frozen=True)
class OptOutRule(Rule):
    """The patient stopped check-ins (STOP, a blocked bot, a declined invitation): `level`,
    or `level_at_risk` when a crisis or urgent alert is unresolved, a safety item was
    endorsed within `recent`, or the check-in they stopped had reached a safety item."""

    level_at_risk: Level = "urgent"
    recent: timedelta = timedelta(days=14)


@dataclass(frozen=True)
class AlertRules:
    levels: Mapping[Level, LevelPolicy]
    cooldown: timedelta
    suicidality: ItemRule
    severe_score: ScoreRule
    worsening: WorseningRule
    non_response: Rule
    early_improvement: Rule
    response: Rule
    remission: Rule
    relapse: Rule
    loss_of_response: Rule
    safety_item_missing: Rule
    missed_checkins: MissedRule
    opted_out: OptOutRule
    other_flag: Rule  # a flag that no flag rule names (an operator's own instrument)
    risk_language: Rule
    flag_rules: tuple[FlagRule, ...] = ()  # in order: the first rule naming a flag takes it
    # a due check-in's instrument has no wording in the patient's language (once per
    # patient and instrument): [I] ours, P2, so a screening that is not happening is known
    wording_missing: Rule = Rule("wording_missing", level="routine")
    # alert messages to one clinician within this window leave as one digest, crisis first
    # (bot/domain/alerts/digest.py); 0: each alone. Short: a crisis alert waits this long
    digest_window: timedelta = timedelta(seconds=1)

    @property
    def rules(self) -> tuple[Rule, ...]:
        named = [getattr(self, f.name) for f in fields(self)]
        return (*(r for r in named if isinstance(r, Rule)), *self.flag_rules)

    def rule(self, key: str) -> Rule:
        for rule in self.rules:
            if rule.key == key:
                return rule
        raise KeyError(key)

    def cooldown_for(self, key: str) -> timedelta:
        own = self.rule(key).cooldown if key in self.keys else None
        return self.cooldown if own is None else own

    def flag_rule(self, flag: str) -> Rule:
        return next((r for r in self.flag_rules if r.matches(flag)), self.other_flag)

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(r.key for r in self.rules)


@dataclass(frozen=True)
class Trigger:
    """A rule fired. `detail` is plain data for templates and the audit trail."""

    rule: str
    level: Level
    at: datetime
    detail: Mapping[str, DetailValue] = field(default_factory=dict)


def _frozen(data: Mapping[str, Thresholds]) -> Mapping[str, Thresholds]:
    return MappingProxyType({k: MappingProxyType(dict(v)) for k, v in data.items()})


# ---- defaults: instruments.md section 11 (ids S, D, T, AE, M) -----------------------------

DEFAULT_LEVELS: Mapping[Level, LevelPolicy] = MappingProxyType(
    {
        # P0: "immediate page"; "re-escalate if there's no reply within N minutes" (section 7).
        "crisis": LevelPolicy(timedelta(minutes=15), timedelta(minutes=15)),
        # P1: "clinician within hours / same day".
        "urgent": LevelPolicy(timedelta(hours=4), timedelta(hours=1)),
        # P2: "within 1 business day", taken as 24 hours.
        "routine": LevelPolicy(timedelta(hours=24), timedelta(hours=24)),
        # P3: "dashboard only".
        "info": LevelPolicy(None, None),
    }
)

DEFAULT_RULES = AlertRules(
    levels=DEFAULT_LEVELS,
    # [I] ours: repeats of one rule within a day update one alert.
    cooldown=timedelta(hours=24),
    # S4: PHQ-9 item 9 = 1, QIDS item 12 = 1 -> P1 (VA HR 1.75 at "several days"). S3:
    # item 9 / item 12 >= 2 -> P1 in section 11, raised here to crisis (Simon 2013: steep
    # risk gradient at >= 2). MADRS-S item 9 (zest for life, 0-6): 2-3 urgent, 4-6 crisis,
    # along the anchors of the clinician MADRS suicidal-thoughts item (GENDEP, BMC Med 2009,
    # Table 1: 2-3 weary of life, fleeting thoughts; 4-5 better off dead, suicidal thoughts
    # common; 6 plans); section 11 had only ">= 4" as P1, an unvalidated [I] threshold.
    # Cool-down 1 h: "Still alert every time" (section 7, step 6), yet one check-in where
    # the patient goes BACK and answers again gives one alert.
    suicidality=ItemRule(
        "suicidality",
        level="urgent",
        cooldown=timedelta(hours=1),
        items=_frozen(
            {
                "phq9.q9": {"urgent": 1, "crisis": 2},
                "qids_sr16.q12": {"urgent": 1, "crisis": 2},
                "madrs_s.q9": {"urgent": 2, "crisis": 4},
            }
        ),
    ),
    # D1: PHQ-9 >= 20 (Kroenke & Spitzer 2002), QIDS-SR16 >= 21 ("very severe", Rush 2003;
    # ids-qids.org) -> P1; MADRS-S >= 35 ("severe", the Swedish primary-care bands:
    # medicinbasen, doktorerna, distriktslakare) -> P1, each instrument's top band as for
    # the PHQ-9; D3: GAD-7 >= 15 (Spitzer 2006 "severe") -> P2.
    severe_score=ScoreRule(
        "severe_score",
        instruments=_frozen(
            {
                "phq9": {"urgent": 20},
                "gad7": {"routine": 15},
                "qids_sr16": {"urgent": 21},
                "madrs_s": {"urgent": 35},
            }
        ),
    ),
    # D2/D3: a rise of the reliable change (PHQ-9 6, GAD-7 4: NHS Talking Therapies) from
    # the baseline or the nadir -> P2. D2 also names "rise >= 5 from the previous score"
    # (Löwe 2004 MCID): off by default, `rise_from_previous = { phq9 = 5 }` turns it on.
    # QIDS-SR16 and MADRS-S have no reliable change in our sources (instruments.md gives
    # none), so [I] a conservative stand-in: the PHQ-9's MCID of 5 of 27 points (Löwe 2004,
    # "2 standard errors of measurement"), below its reliable change of 6, scaled to each
    # range: QIDS-SR16 5 (0-27, the PHQ-9's range and nine DSM domains), MADRS-S 10 (0-54).
    worsening=WorseningRule(
        "worsening",
        level="routine",
        rise_from_best=MappingProxyType({"qids_sr16": 5, "madrs_s": 10}),
    ),
    # T1: < 20 % at the check-in after session 4, or 3 consecutive non-improvements
    # (Transl Psychiatry 2024) -> P2 "review before the next session".
    non_response=Rule("non_response", level="routine"),
    # Section 9: >= 20 % by session 2 (CRTCE 2021) is informational only.
    early_improvement=Rule("early_improvement", level="info"),
    # T3: response >= 50 % / remission (HEDIS, STAR*D) -> P3.
    response=Rule("response", level="info"),
    remission=Rule("remission", level="info"),
    # T4: after remission, PHQ-9 back to >= 10 on 2 consecutive check-ins (QIDS-SR16 >= 11,
    # STAR*D); the thresholds are the instrument's [outcomes] -> P2.
    relapse=Rule("relapse", level="routine"),
    # A patient who had responded (>= 50 %) and is back at the non-response criterion (< 20 %
    # better than baseline, Transl Psychiatry 2024) has lost the response (section 9's
    # "loss of response", typically in maintenance): said so, not "non-response" -> P2.
    loss_of_response=Rule("loss_of_response", level="routine"),
    # S6: item 9 / item 12 unanswered -> P2.
    safety_item_missing=Rule("safety_item_missing", level="routine"),
    # M1: missed x2 -> P2; x2 after a prior S-level alert -> P1 (here: any unresolved
    # crisis or urgent alert).
    missed_checkins=MissedRule("missed_checkins", level="routine"),
    # Issue 19 [I] ours: stopping is routine; urgent when the patient may be at risk (an
    # unresolved crisis or urgent alert, a safety item endorsed in the last 14 days, or a
    # stop in a check-in that had reached the safety item), since after STOP nothing else
    # (not even missed_checkins: the check-ins are cancelled) would tell the clinician.
    opted_out=OptOutRule("opted_out", level="routine"),
    # [I] ours: a flag no rule names still reaches a clinician.
    other_flag=Rule("other_flag", level="routine"),
    # [I] ours (issue 19): risk language in any message -> P1, like a positive S4 answer;
    # repeats update the open alert, never page twice (the lifecycle's rule).
    risk_language=Rule(RISK_LANGUAGE, level="urgent"),
    flag_rules=(
        # AE3: chest pain, shortness of breath, sudden severe headache, visual disturbance,
        # seizure, confusion after a session -> P0 (Spravato PI hypertensive crisis).
        FlagRule(
            "side_effect_red_flag", level="crisis", flags=("side_effect_red_flag", "red_flag_*")
        ),
        # AE4: home BP >= 180/110 -> P1 (Hebert & Vidt 2008); the reading's threshold is
        # the instrument's flag (side_effects.toml).
        FlagRule("blood_pressure_high", level="urgent", flags=("blood_pressure_high",)),
        # AE6: new urinary symptoms -> P2 (PI cystitis warning; KIC literature).
        FlagRule("urinary_symptoms", level="routine", flags=("urinary_symptoms",)),
        # AE5: next-day sedation or dissociation -> P2.
        FlagRule("lingering_effects", level="routine", flags=("lingering_effects",)),
        # AE7: persistent vomiting -> P2.
        FlagRule("severe_nausea", level="routine", flags=("severe_nausea",)),
    ),
)

"""Instruments as plain, frozen values.

An instrument is items, each with its options (value, label, accepted replies), a scoring
rule, bands, safety items and LOINC codes. Keys are stable once shipped (``phq9.q9``),
like FHIR ``linkId``: stored answers refer to them forever. Option *values* are stored;
option *scores* are what scoring adds up (equal for every shipped instrument).

Definitions are read from data files by :mod:`bot.domain.definitions`; nothing here
does I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from bot.domain.outcomes import OutcomeRules

DEFAULT_LANGUAGE = "en"

ItemKind = Literal["choice", "blood_pressure"]
ScoringMethod = Literal["sum", "domains", "none"]
DomainMethod = Literal["max", "sum"]
InstrumentKind = Literal["validated", "checklist"]


@dataclass(frozen=True)
class Localized:
    """A text in one or more languages; English is the fallback."""

    texts: Mapping[str, str]

    def get(self, language: str) -> str:
        if language in self.texts:
            return self.texts[language]
        return self.texts.get(DEFAULT_LANGUAGE) or next(iter(self.texts.values()))

    @property
    def languages(self) -> frozenset[str]:
        return frozenset(self.texts)


@dataclass(frozen=True)
class Option:
    value: int
    label: Localized
    synonyms: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    loinc: str | None = None
    score: int | None = None  # None: scores as its value

    @property
    def points(self) -> int:
        return self.value if self.score is None else self.score


@dataclass(frozen=True)
class BloodPressure:
    """A home blood-pressure reading in mmHg."""

    systolic: int
    diastolic: int

    def __str__(self) -> str:
        return f"{self.systolic}/{self.diastolic}"


AnswerValue = int | BloodPressure


@dataclass(frozen=True)
class FlagRule:
    """Raises flag `name` when an answer reaches a threshold.

    Choice items use `at_least` (the option value); blood-pressure items use either limb:
    a reading at or above `systolic_at_least` *or* `diastolic_at_least` fires.
    """

    name: str
    at_least: int | None = None
    systolic_at_least: int | None = None
    diastolic_at_least: int | None = None

    def fires(self, value: AnswerValue) -> bool:
        if isinstance(value, BloodPressure):
            high_sys = (
                self.systolic_at_least is not None and value.systolic >= self.systolic_at_least
            )
            high_dia = (
                self.diastolic_at_least is not None and value.diastolic >= self.diastolic_at_least
            )
            return high_sys or high_dia
        return self.at_least is not None and value >= self.at_least


@dataclass(frozen=True)
class Condition:
    """An item is asked only when any of `any_of` was answered with at least `at_least`."""

    any_of: tuple[str, ...]
    at_least: int = 1

    def holds(self, answers: Mapping[str, AnswerValue]) -> bool:
        for key in self.any_of:
            value = answers.get(key)
            if isinstance(value, int) and value >= self.at_least:
                return True
        return False


@dataclass(frozen=True)
class Item:
    key: str
    number: int  # 1-based position, for display ("Question 3 of 9")
    text: Localized
    kind: ItemKind = "choice"
    options: tuple[Option, ...] = ()
    scored: bool = True
    safety: bool = False
    skippable: bool = True
    flags: tuple[FlagRule, ...] = ()
    loinc: str | None = None
    when: Condition | None = None
    short_label: str = ""
    crisis: str | None = None  # crisis message to send at once when a flag fires here

    def option(self, value: int) -> Option | None:
        return next((o for o in self.options if o.value == value), None)

    @property
    def values(self) -> tuple[int, ...]:
        return tuple(o.value for o in self.options)

    def applies(self, answers: Mapping[str, AnswerValue]) -> bool:
        return self.when is None or self.when.holds(answers)


@dataclass(frozen=True)
class Domain:
    """A scored group of items (QIDS-SR16 sleep = the highest of items 1-4)."""

    key: str
    items: tuple[str, ...]
    method: DomainMethod = "max"
    max_missing: int | None = None  # unanswered answers tolerated; None: all but one
    # Groups of items of which the form asks for one ("either 6 or 7"): a group counts as
    # one answer, given when any of its items is answered.
    one_of: tuple[tuple[str, ...], ...] = ()

    @property
    def slots(self) -> tuple[tuple[str, ...], ...]:
        """The answers the domain expects: each `one_of` group, then each other item."""
        grouped = {key for group in self.one_of for key in group}
        return (*self.one_of, *((key,) for key in self.items if key not in grouped))


@dataclass(frozen=True)
class Band:
    low: int
    high: int
    key: str
    label: Localized

    def contains(self, total: int) -> bool:
        return self.low <= total <= self.high


@dataclass(frozen=True)
class Scoring:
    method: ScoringMethod = "sum"
    domains: tuple[Domain, ...] = ()
    max_missing: int = 0  # answered-item shortfall that may still be prorated
    never_impute: tuple[str, ...] = ()


@dataclass(frozen=True)
class Instrument:
    key: str
    name: str
    title: str
    items: tuple[Item, ...]
    scoring: Scoring
    bands: tuple[Band, ...] = ()
    kind: InstrumentKind = "validated"
    version: int = 1
    licence: str = ""
    attribution: str = ""
    intro: Localized | None = None
    recall: Localized | None = None  # short recall period shown with every item
    # The days the questions ask about ("over the last 2 weeks": 14); None for a checklist
    # without one. Drives the recall-window notes (bot/domain/schedule/recall.py).
    recall_days: int | None = None
    loinc_panel: str | None = None
    loinc_total: str | None = None
    outcomes: OutcomeRules = field(default_factory=OutcomeRules)
    source: str = ""

    def item(self, key: str) -> Item:
        for item in self.items:
            if item.key == key:
                return item
        raise KeyError(key)

    @property
    def scored_items(self) -> tuple[Item, ...]:
        return tuple(i for i in self.items if i.scored)

    @property
    def safety_items(self) -> tuple[Item, ...]:
        return tuple(i for i in self.items if i.safety)

    @property
    def texts(self) -> tuple[Localized, ...]:
        """Every text a patient or a clinician may read of the instrument: the intro (the
        stem), the recall tag, each item, each option label, each band label."""
        frames = tuple(t for t in (self.intro, self.recall) if t is not None)
        items = tuple(i.text for i in self.items)
        options = tuple(o.label for i in self.items for o in i.options)
        return (*frames, *items, *options, *(b.label for b in self.bands))

    @property
    def languages(self) -> frozenset[str]:
        """The languages the instrument can be asked in: those *every* text has. An item in
        Spanish with its options, stem or recall tag only in English is not Spanish: the
        patient would read a mix, and a translation is never patched with another."""
        texts = self.texts
        langs = frozenset[str]().union(*(t.languages for t in texts))
        for text in texts:
            langs &= text.languages
        return langs

    def missing_texts(self, language: str) -> tuple[str, ...]:
        """Where a text has no `language` wording (empty when the language is complete)."""
        where = [("intro", self.intro), ("recall", self.recall)]
        for item in self.items:
            where.append((f"{item.key} text", item.text))
            where += [(f"{item.key} option {o.value}", o.label) for o in item.options]
        where += [(f"band {b.key}", b.label) for b in self.bands]
        return tuple(name for name, text in where if text and language not in text.languages)

    @property
    def max_total(self) -> int | None:
        """The highest possible total, from the items (None for a checklist)."""
        top = {i.key: max((o.points for o in i.options), default=0) for i in self.scored_items}
        if self.scoring.method == "sum":
            return sum(top.values())
        if self.scoring.method == "domains":
            return sum(_domain_top(d, top) for d in self.scoring.domains)
        return None

    def band_for(self, total: int) -> Band | None:
        return next((b for b in self.bands if b.contains(total)), None)


def _domain_top(domain: Domain, top: Mapping[str, int]) -> int:
    values = [top[k] for k in domain.items]
    return max(values) if domain.method == "max" else sum(values)

"""Build :class:`Instrument` values from parsed definition data (a TOML table).

Pure: the caller reads the file and passes the mapping plus its name, so every error names
the file and the field (``gad7.toml: items[2].options: unknown option set 'freq'``).

Licensed instruments ship as structure only (``wording = "operator"``): their item texts and
option labels come from a separate wording mapping an operator supplies; :func:`merge_wording`
folds it in and checks it matches the structure.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, cast

from bot.domain.errors import DefinitionError, WordingRequired
from bot.domain.instruments import (
    Band,
    Condition,
    Domain,
    FlagRule,
    Instrument,
    Item,
    Localized,
    Option,
    Scoring,
)
from bot.domain.outcomes import OutcomeRules

CRISIS_KINDS = ("suicidality", "medical")
_KEY = re.compile(r"^[a-z][a-z0-9_]*$")
_ITEM_KEY = re.compile(r"^[a-z][a-z0-9_]*\.[a-z0-9_]+$")
_LOINC = re.compile(r"^(?:LA)?\d{1,6}-\d$")


class _Reader:
    """Typed access to untrusted mappings that reports file and field on any problem."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, path: str, problem: str) -> DefinitionError:
        return DefinitionError(self.source, path, problem)

    def get(
        self, data: Mapping[str, Any], name: str, path: str, kind: type, default: Any = ...
    ) -> Any:
        where = f"{path}.{name}" if path else name
        if name not in data:
            if default is ...:
                raise self.fail(where, "is missing")
            return default
        value = data[name]
        if kind is int and isinstance(value, bool):
            raise self.fail(where, f"must be an integer, not {value!r}")
        if not isinstance(value, kind):
            raise self.fail(where, f"must be {_kind_name(kind)}, not {type(value).__name__}")
        return value

    def text(
        self, data: Mapping[str, Any], name: str, path: str, required: bool = True
    ) -> Localized | None:
        where = f"{path}.{name}" if path else name
        raw = data.get(name)
        if raw is None:
            if required:
                raise self.fail(where, "is missing")
            return None
        if isinstance(raw, str):
            raw = {"en": raw}
        if not isinstance(raw, dict) or not raw:
            raise self.fail(where, "must be a string or a table of language = text")
        for lang, text in raw.items():
            if not isinstance(text, str) or not text.strip():
                raise self.fail(f"{where}.{lang}", "must be non-empty text")
        return Localized(dict(raw))

    def loinc(self, data: Mapping[str, Any], name: str, path: str) -> str | None:
        code = self.get(data, name, path, str, None)
        if code is not None and not _LOINC.match(code):
            raise self.fail(f"{path}.{name}" if path else name, f"{code!r} is not a LOINC code")
        return cast("str | None", code)


def _kind_name(kind: type) -> str:
    return {
        str: "text",
        int: "an integer",
        bool: "true or false",
        list: "a list",
        dict: "a table",
    }.get(kind, kind.__name__)


def needs_wording(data: Mapping[str, Any]) -> bool:
    return data.get("wording") == "operator"


def instrument_from_mapping(data: Mapping[str, Any], source: str) -> Instrument:
    """Validate `data` and build the instrument, or raise DefinitionError naming the field."""
    r = _Reader(source)
    key = r.get(data, "key", "", str)
    if not _KEY.match(key):
        raise r.fail("key", f"{key!r} must be lower-case letters, digits and _")
    if needs_wording(data):
        raise WordingRequired(
            source,
            "wording",
            f"{key} is a licensed instrument shipped without its wording; supply it in "
            f"{key}.wording.toml in an [instruments] directory (see docs/INSTRUMENTS.md)",
        )
    option_sets = _option_sets(r, data)
    items = tuple(
        _item(r, raw, f"items[{n}]", n + 1, key, option_sets)
        for n, raw in enumerate(r.get(data, "items", "", list))
    )
    if not items:
        raise r.fail("items", "an instrument needs at least one item")
    _check_unique(r, [i.key for i in items], "items")
    scoring = _scoring(r, r.get(data, "scoring", "", dict), items)
    instrument = Instrument(
        key=key,
        name=r.get(data, "name", "", str),
        title=r.get(data, "title", "", str),
        items=items,
        scoring=scoring,
        bands=tuple(
            _band(r, b, f"bands[{n}]") for n, b in enumerate(r.get(data, "bands", "", list, []))
        ),
        kind=_choice(r, data, "kind", "", ("validated", "checklist"), "validated"),
        version=r.get(data, "version", "", int, 1),
        licence=r.get(data, "licence", "", str, ""),
        attribution=r.get(data, "attribution", "", str, ""),
        intro=r.text(data, "intro", "", required=False),
        recall=r.text(data, "recall", "", required=False),
        loinc_panel=r.loinc(data, "loinc_panel", ""),
        loinc_total=r.loinc(data, "loinc_total", ""),
        outcomes=_outcomes(r, r.get(data, "outcomes", "", dict, {})),
        source=source,
    )
    _check_conditions(r, instrument)
    _check_bands(r, instrument)
    return instrument


def _choice(
    r: _Reader, data: Mapping[str, Any], name: str, path: str, allowed: Sequence[str], default: str
) -> Any:
    value = r.get(data, name, path, str, default)
    if value not in allowed:
        raise r.fail(
            f"{path}.{name}" if path else name, f"{value!r} is not one of {', '.join(allowed)}"
        )
    return value


def _check_unique(r: _Reader, keys: Sequence[object], path: str) -> None:
    seen: set[object] = set()
    for key in keys:
        if key in seen:
            raise r.fail(path, f"{key!r} appears twice")
        seen.add(key)


def _option_sets(r: _Reader, data: Mapping[str, Any]) -> dict[str, tuple[Option, ...]]:
    sets: dict[str, tuple[Option, ...]] = {}
    for name, raw in r.get(data, "option_sets", "", dict, {}).items():
        path = f"option_sets.{name}"
        if not isinstance(raw, list):
            raise r.fail(path, "must be a list of options")
        sets[name] = _options(r, raw, path)
    return sets


def _options(r: _Reader, raw: Sequence[Any], path: str) -> tuple[Option, ...]:
    options = []
    for n, entry in enumerate(raw):
        where = f"{path}[{n}]"
        if not isinstance(entry, dict):
            raise r.fail(where, "must be a table with value and label")
        synonyms = r.get(entry, "synonyms", where, dict, {})
        for lang, words in synonyms.items():
            if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
                raise r.fail(f"{where}.synonyms.{lang}", "must be a list of text")
        label = r.text(entry, "label", where)
        assert label is not None
        options.append(
            Option(
                value=r.get(entry, "value", where, int),
                label=label,
                synonyms={lang: tuple(words) for lang, words in synonyms.items()},
                loinc=r.loinc(entry, "loinc", where),
                score=r.get(entry, "score", where, int, None),
            )
        )
    if not options:
        raise r.fail(path, "needs at least one option")
    _check_unique(r, [o.value for o in options], f"{path} values")
    return tuple(options)


def _item(
    r: _Reader,
    raw: Any,
    path: str,
    number: int,
    instrument: str,
    sets: Mapping[str, tuple[Option, ...]],
) -> Item:
    if not isinstance(raw, dict):
        raise r.fail(path, "must be a table")
    key = r.get(raw, "key", path, str)
    if not _ITEM_KEY.match(key) or not key.startswith(f"{instrument}."):
        raise r.fail(f"{path}.key", f"{key!r} must look like '{instrument}.q1'")
    kind = _choice(r, raw, "kind", path, ("choice", "blood_pressure"), "choice")
    options: tuple[Option, ...] = ()
    if kind == "choice":
        ref = raw.get("options")
        if isinstance(ref, str):
            if ref not in sets:
                raise r.fail(f"{path}.options", f"unknown option set {ref!r}")
            options = sets[ref]
        elif isinstance(ref, list):
            options = _options(r, ref, f"{path}.options")
        else:
            raise r.fail(f"{path}.options", "must name an option set or list the options")
    safety = r.get(raw, "safety", path, bool, False)
    skippable = r.get(raw, "skippable", path, bool, not safety)
    if safety and skippable:
        raise r.fail(f"{path}.skippable", "a safety item can never be skipped")
    flags = tuple(
        _flag(r, f, f"{path}.flags[{n}]", kind)
        for n, f in enumerate(r.get(raw, "flags", path, list, []))
    )
    text = r.text(raw, "text", path)
    assert text is not None
    crisis = r.get(raw, "crisis", path, str, None)
    if crisis is not None and crisis not in CRISIS_KINDS:
        raise r.fail(f"{path}.crisis", f"{crisis!r} is not one of {', '.join(CRISIS_KINDS)}")
    if crisis is not None and not flags:
        raise r.fail(f"{path}.crisis", "needs flags that say when the crisis message is sent")
    return Item(
        key=key,
        number=number,
        text=text,
        kind=kind,
        options=options,
        scored=r.get(raw, "scored", path, bool, kind == "choice"),
        safety=safety,
        skippable=skippable,
        flags=flags,
        loinc=r.loinc(raw, "loinc", path),
        when=_condition(r, raw.get("when"), f"{path}.when"),
        short_label=r.get(raw, "short_label", path, str, ""),
        crisis=crisis,
    )


def _flag(r: _Reader, raw: Any, path: str, kind: str) -> FlagRule:
    if not isinstance(raw, dict):
        raise r.fail(path, "must be a table with name and a threshold")
    name = r.get(raw, "name", path, str)
    if kind == "blood_pressure":
        rule = FlagRule(
            name,
            systolic_at_least=r.get(raw, "systolic_at_least", path, int, None),
            diastolic_at_least=r.get(raw, "diastolic_at_least", path, int, None),
        )
        if rule.systolic_at_least is None and rule.diastolic_at_least is None:
            raise r.fail(path, "needs systolic_at_least or diastolic_at_least")
        return rule
    return FlagRule(name, at_least=r.get(raw, "at_least", path, int))


def _condition(r: _Reader, raw: Any, path: str) -> Condition | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise r.fail(path, "must be a table with any_of and at_least")
    keys = r.get(raw, "any_of", path, list)
    if not keys or not all(isinstance(k, str) for k in keys):
        raise r.fail(f"{path}.any_of", "must list item keys")
    return Condition(tuple(keys), r.get(raw, "at_least", path, int, 1))


def _scoring(r: _Reader, raw: Mapping[str, Any], items: tuple[Item, ...]) -> Scoring:
    method = _choice(r, raw, "method", "scoring", ("sum", "domains", "none"), "sum")
    keys = {i.key for i in items}
    domains = []
    for n, d in enumerate(r.get(raw, "domains", "scoring", list, [])):
        where = f"scoring.domains[{n}]"
        if not isinstance(d, dict):
            raise r.fail(where, "must be a table")
        members = tuple(r.get(d, "items", where, list))
        for member in members:
            if member not in keys:
                raise r.fail(f"{where}.items", f"unknown item {member!r}")
        tolerated = r.get(d, "max_missing", where, int, None)
        if tolerated is not None and not 0 <= tolerated < len(members):
            raise r.fail(f"{where}.max_missing", f"must be 0 to {len(members) - 1}")
        domains.append(
            Domain(
                r.get(d, "key", where, str),
                members,
                _choice(r, d, "method", where, ("max", "sum"), "max"),
                tolerated,
            )
        )
    if method == "domains" and not domains:
        raise r.fail("scoring.domains", "domain scoring needs at least one domain")
    never = tuple(r.get(raw, "never_impute", "scoring", list, []))
    for key in never:
        if key not in keys:
            raise r.fail("scoring.never_impute", f"unknown item {key!r}")
    return Scoring(method, tuple(domains), r.get(raw, "max_missing", "scoring", int, 0), never)


def _band(r: _Reader, raw: Any, path: str) -> Band:
    if not isinstance(raw, dict):
        raise r.fail(path, "must be a table with min, max, key and label")
    low, high = r.get(raw, "min", path, int), r.get(raw, "max", path, int)
    if low > high:
        raise r.fail(path, f"min {low} is above max {high}")
    label = r.text(raw, "label", path)
    assert label is not None
    return Band(low, high, r.get(raw, "key", path, str), label)


def _check_bands(r: _Reader, instrument: Instrument) -> None:
    """Bands must tile 0..max_total exactly: no gap, no overlap (the 1-4 typo can't ship)."""
    top = instrument.max_total
    if top is None or not instrument.bands:
        return
    expected = 0
    for n, band in enumerate(sorted(instrument.bands, key=lambda b: b.low)):
        if band.low != expected:
            raise r.fail(
                f"bands[{n}]",
                f"starts at {band.low}; expected {expected} (bands must cover 0-{top})",
            )
        expected = band.high + 1
    if expected != top + 1:
        raise r.fail("bands", f"end at {expected - 1}; the highest possible total is {top}")


def _check_conditions(r: _Reader, instrument: Instrument) -> None:
    seen: set[str] = set()
    for n, item in enumerate(instrument.items):
        for key in item.when.any_of if item.when else ():
            if key not in seen:
                raise r.fail(f"items[{n}].when.any_of", f"{key!r} must be an earlier item")
        seen.add(item.key)


_OUTCOME_FIELDS = frozenset(OutcomeRules.__dataclass_fields__)


def _outcomes(r: _Reader, raw: Mapping[str, Any]) -> OutcomeRules:
    for name in raw:
        if name not in _OUTCOME_FIELDS:
            raise r.fail(
                f"outcomes.{name}", f"unknown setting; known: {', '.join(sorted(_OUTCOME_FIELDS))}"
            )
    values = {name: r.get(raw, name, "outcomes", int) for name in raw}
    return OutcomeRules(**values)


def merge_wording(
    structure: Mapping[str, Any], wording: Mapping[str, Any], source: str
) -> dict[str, Any]:
    """Fold an operator's wording file into a structure-only definition.

    The wording file gives ``intro`` and, per item key, ``text`` and ``options`` (value,
    label, synonyms); its option values must be exactly the structure's.
    """
    r = _Reader(source)
    key = structure.get("key")
    if wording.get("key") != key:
        raise r.fail("key", f"must be {key!r} to supply that instrument's wording")
    texts = r.get(wording, "items", "", dict)
    merged = {k: v for k, v in structure.items() if k != "wording"}
    if "intro" in wording:
        merged["intro"] = wording["intro"]
    items = []
    for item in structure.get("items", []):
        ikey = item.get("key")
        supplied = texts.get(ikey)
        if not isinstance(supplied, dict):
            raise r.fail(f"items.{ikey}", "is missing (every item needs its text)")
        entry = dict(item)
        entry["text"] = supplied.get("text")
        if item.get("kind", "choice") == "choice":
            options = supplied.get("options")
            if not isinstance(options, list):
                raise r.fail(f"items.{ikey}.options", "is missing")
            values = [o.get("value") for o in options if isinstance(o, dict)]
            if sorted(map(str, values)) != sorted(map(str, item.get("values", []))):
                raise r.fail(
                    f"items.{ikey}.options", f"values must be exactly {item.get('values')}"
                )
            entry["options"] = options
            entry.pop("values", None)
        items.append(entry)
    extra = set(texts) - {i.get("key") for i in structure.get("items", [])}
    if extra:
        raise r.fail("items", f"unknown item(s) {', '.join(sorted(extra))}")
    merged["items"] = items
    return merged

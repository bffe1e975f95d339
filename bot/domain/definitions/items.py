"""An instrument's items and their answer options, from definition data: option sets
shared by name, each item's kind, options, flags, crisis kind and the condition that
asks it."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from bot.domain.definitions.reader import Reader, check_unique, choice
from bot.domain.instruments import Condition, FlagRule, Item, Option

CRISIS_KINDS = ("suicidality", "medical", "blood_pressure")
_ITEM_KEY = re.compile(r"^[a-z][a-z0-9_]*\.[a-z0-9_]+$")


def read_option_sets(r: Reader, data: Mapping[str, Any]) -> dict[str, tuple[Option, ...]]:
    sets: dict[str, tuple[Option, ...]] = {}
    for name, raw in r.get(data, "option_sets", "", dict, {}).items():
        path = f"option_sets.{name}"
        if not isinstance(raw, list):
            raise r.fail(path, "must be a list of options")
        sets[name] = _options(r, raw, path)
    return sets


def _options(r: Reader, raw: Sequence[Any], path: str) -> tuple[Option, ...]:
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
    check_unique(r, [o.value for o in options], f"{path} values")
    return tuple(options)


def read_item(
    r: Reader,
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
    kind = choice(r, raw, "kind", path, ("choice", "blood_pressure"), "choice")
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


def _flag(r: Reader, raw: Any, path: str, kind: str) -> FlagRule:
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


def _condition(r: Reader, raw: Any, path: str) -> Condition | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise r.fail(path, "must be a table with any_of and at_least")
    keys = r.get(raw, "any_of", path, list)
    if not keys or not all(isinstance(k, str) for k in keys):
        raise r.fail(f"{path}.any_of", "must list item keys")
    return Condition(tuple(keys), r.get(raw, "at_least", path, int, 1))

"""A wording file that adds languages to an instrument that already has its words: the
Spanish GAD-7 a clinic uses, say, as ``gad7.wording.toml`` beside its config::

    key = "gad7"
    intro = { es = "..." }
    [option_sets]                  # labels for a shipped option set, by its name ...
    frequency = [{ value = 0, label = { es = "..." } }, ...]
    [items."gad7.q1"]
    text = { es = "..." }
    options = [...]                # ... or for one item's options
    [bands]
    minimal = { es = "..." }

Rules, each refused with the file and the field named:

* only the keys above; every item, option set and band named exists in the definition;
* option values are exactly the definition's (a wording file labels, never rescores);
* a language the definition already has in a text is never replaced there: a shipped
  instrument's words stay the shipped words;
* the loader then checks that each language the file adds is complete (every text of
  :attr:`bot.domain.instruments.Instrument.texts`), so a half-translated instrument is
  never asked in that language.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from bot.domain.definitions.reader import Reader

_TOP = ("key", "intro", "recall", "option_sets", "items", "bands")
_ITEM = ("text", "options")
_OPTION = ("value", "label", "synonyms")


def add_languages(
    definition: Mapping[str, Any], wording: Mapping[str, Any], source: str
) -> tuple[dict[str, Any], frozenset[str]]:
    """The definition with the wording file's languages folded in, and those languages."""
    r = Reader(source)
    key = definition.get("key")
    if wording.get("key") != key:
        raise r.fail("key", f"must be {key!r} to add languages to that instrument")
    _known(r, wording, "", _TOP)
    merged = copy.deepcopy(dict(definition))
    added: set[str] = set()
    for name in ("intro", "recall"):
        if name in wording:
            merged[name] = _texts(r, merged.get(name), wording[name], name, added)
    sets = merged.get("option_sets", {})
    for name, raw in r.get(wording, "option_sets", "", dict, {}).items():
        if name not in sets:
            raise r.fail(f"option_sets.{name}", "unknown option set")
        sets[name] = _options(r, sets[name], raw, f"option_sets.{name}", added)
    shipped_sets = definition.get("option_sets", {})
    _items(r, merged, r.get(wording, "items", "", dict, {}), shipped_sets, added)
    _bands(r, merged, r.get(wording, "bands", "", dict, {}), added)
    if not added:
        raise r.fail("", 'adds no language (give texts as { es = "..." })')
    return merged, frozenset(added)


def _items(
    r: Reader, merged: dict[str, Any], raw: Mapping[str, Any], shipped_sets: Any, added: set[str]
) -> None:
    """Item texts, and an item's own options (labelled over the shipped ones: an item that
    uses a named set gets its own copy, whatever the file gave the set)."""
    items = {i.get("key"): i for i in merged.get("items", []) if isinstance(i, dict)}
    for ikey, supplied in raw.items():
        path = f'items."{ikey}"'
        item = items.get(ikey)
        if item is None:
            raise r.fail(path, f"unknown item (known: {', '.join(map(str, items))})")
        if not isinstance(supplied, dict):
            raise r.fail(path, "must be a table with text and options")
        _known(r, supplied, path, _ITEM)
        if "text" in supplied:
            item["text"] = _texts(r, item.get("text"), supplied["text"], f"{path}.text", added)
        if "options" in supplied:
            base = item.get("options")
            if isinstance(base, str):
                base = copy.deepcopy(shipped_sets.get(base, []))
            item["options"] = _options(r, base, supplied["options"], f"{path}.options", added)


def _bands(r: Reader, merged: dict[str, Any], raw: Mapping[str, Any], added: set[str]) -> None:
    bands = {b.get("key"): b for b in merged.get("bands", []) if isinstance(b, dict)}
    for bkey, labels in raw.items():
        band = bands.get(bkey)
        if band is None:
            raise r.fail(f"bands.{bkey}", f"unknown band (known: {', '.join(map(str, bands))})")
        band["label"] = _texts(r, band.get("label"), labels, f"bands.{bkey}", added)


def _options(r: Reader, base: Any, raw: Any, path: str, added: set[str]) -> list[dict[str, Any]]:
    shipped = [dict(o) for o in base] if isinstance(base, list) else []
    values = [o.get("value") for o in shipped]
    if not isinstance(raw, list) or not all(isinstance(o, dict) for o in raw):
        raise r.fail(path, "must be a list of { value, label } tables")
    given = [o.get("value") for o in raw]
    if sorted(map(str, given)) != sorted(map(str, values)):
        raise r.fail(path, f"values must be exactly {values}")
    by_value = {o.get("value"): o for o in raw}
    for n, option in enumerate(shipped):
        supplied = by_value[option.get("value")]
        where = f"{path}[{n}]"
        _known(r, supplied, where, _OPTION)
        if "label" in supplied:
            option["label"] = _texts(r, option.get("label"), supplied["label"], where, added)
        synonyms = r.get(supplied, "synonyms", where, dict, {})
        if synonyms:
            merged = dict(option.get("synonyms", {}))
            for lang, words in synonyms.items():
                if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
                    raise r.fail(f"{where}.synonyms.{lang}", "must be a list of text")
                merged[lang] = [*merged.get(lang, []), *words]
            option["synonyms"] = merged
    return shipped


def _texts(r: Reader, base: Any, raw: Any, path: str, added: set[str]) -> dict[str, str]:
    shipped = {"en": base} if isinstance(base, str) else dict(base or {})
    if not isinstance(raw, dict) or not raw:
        raise r.fail(path, "must be a table of language = text")
    for lang, text in raw.items():
        if lang in shipped:
            raise r.fail(
                f"{path}.{lang}",
                "is shipped already: a wording file adds languages, it never "
                "replaces the shipped words",
            )
        if not isinstance(text, str) or not text.strip():
            raise r.fail(f"{path}.{lang}", "must be non-empty text")
        added.add(lang)
    return shipped | raw


def _known(r: Reader, table: Mapping[str, Any], path: str, keys: tuple[str, ...]) -> None:
    for name in table:
        if name not in keys:
            where = f"{path}.{name}" if path else name
            raise r.fail(where, f"unknown key (known: {', '.join(keys)})")

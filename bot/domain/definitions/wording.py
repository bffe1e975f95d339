"""Licensed instruments ship as structure only (``wording = "operator"``): their item
texts and option labels come from a separate wording mapping an operator supplies;
:func:`merge_wording` folds it in and checks it matches the structure."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bot.domain.definitions.reader import Reader


def needs_wording(data: Mapping[str, Any]) -> bool:
    return data.get("wording") == "operator"


def merge_wording(
    structure: Mapping[str, Any], wording: Mapping[str, Any], source: str
) -> dict[str, Any]:
    """Fold an operator's wording file into a structure-only definition.

    The wording file gives ``intro`` and, per item key, ``text`` and ``options`` (value,
    label, synonyms); its option values must be exactly the structure's.
    """
    r = Reader(source)
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

"""The top-level builder: a definition's mapping -> :class:`Instrument`, its items (see
:mod:`.items`), scoring, severity bands and outcome rules, with the checks that span them
(bands tile the total's range, a condition names earlier items)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, cast

from bot.domain.definitions.items import read_item, read_option_sets
from bot.domain.definitions.reader import Reader, check_unique, choice
from bot.domain.definitions.wording import needs_wording
from bot.domain.errors import WordingRequired
from bot.domain.instruments import Band, Domain, Instrument, Item, Scoring
from bot.domain.outcomes import OutcomeRules

_KEY = re.compile(r"^[a-z][a-z0-9_]*$")


def instrument_from_mapping(data: Mapping[str, Any], source: str) -> Instrument:
    """Validate `data` and build the instrument, or raise DefinitionError naming the field."""
    r = Reader(source)
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
    option_sets = read_option_sets(r, data)
    items = tuple(
        read_item(r, raw, f"items[{n}]", n + 1, key, option_sets)
        for n, raw in enumerate(r.get(data, "items", "", list))
    )
    if not items:
        raise r.fail("items", "an instrument needs at least one item")
    check_unique(r, [i.key for i in items], "items")
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
        kind=choice(r, data, "kind", "", ("validated", "checklist"), "validated"),
        version=r.get(data, "version", "", int, 1),
        licence=r.get(data, "licence", "", str, ""),
        attribution=r.get(data, "attribution", "", str, ""),
        intro=r.text(data, "intro", "", required=False),
        recall=r.text(data, "recall", "", required=False),
        recall_days=_recall_days(r, data),
        loinc_panel=r.loinc(data, "loinc_panel", ""),
        loinc_total=r.loinc(data, "loinc_total", ""),
        outcomes=_outcomes(r, r.get(data, "outcomes", "", dict, {})),
        source=source,
    )
    _check_conditions(r, instrument)
    _check_bands(r, instrument)
    return instrument


def _recall_days(r: Reader, data: Mapping[str, Any]) -> int | None:
    """The recall window in days: 1 to 366, or absent (a checklist about "since")."""
    days = r.get(data, "recall_days", "", int, None)
    if days is not None and not 1 <= days <= 366:
        raise r.fail("recall_days", f"must be 1 to 366 days, not {days}")
    return cast("int | None", days)


def _scoring(r: Reader, raw: Mapping[str, Any], items: tuple[Item, ...]) -> Scoring:
    method = choice(r, raw, "method", "scoring", ("sum", "domains", "none"), "sum")
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
        one_of = _one_of(r, d, where, members)
        domain = Domain(
            r.get(d, "key", where, str),
            members,
            choice(r, d, "method", where, ("max", "sum"), "max"),
            r.get(d, "max_missing", where, int, None),
            one_of,
        )
        slots = len(domain.slots)
        if domain.max_missing is not None and not 0 <= domain.max_missing < slots:
            raise r.fail(f"{where}.max_missing", f"must be 0 to {slots - 1}")
        domains.append(domain)
    if method == "domains" and not domains:
        raise r.fail("scoring.domains", "domain scoring needs at least one domain")
    never = tuple(r.get(raw, "never_impute", "scoring", list, []))
    for key in never:
        if key not in keys:
            raise r.fail("scoring.never_impute", f"unknown item {key!r}")
    return Scoring(method, tuple(domains), r.get(raw, "max_missing", "scoring", int, 0), never)


def _one_of(
    r: Reader, raw: Mapping[str, Any], where: str, members: tuple[str, ...]
) -> tuple[tuple[str, ...], ...]:
    """Groups of two or more of the domain's items, each item in one group at most."""
    groups = []
    seen: set[str] = set()
    for n, group in enumerate(r.get(raw, "one_of", where, list, [])):
        path = f"{where}.one_of[{n}]"
        if not isinstance(group, list) or len(group) < 2:
            raise r.fail(path, "must be a list of two or more of the domain's items")
        for key in group:
            if key not in members or key in seen:
                raise r.fail(path, f"{key!r} is not an item of this domain left ungrouped")
            seen.add(key)
        groups.append(tuple(group))
    return tuple(groups)


def _band(r: Reader, raw: Any, path: str) -> Band:
    if not isinstance(raw, dict):
        raise r.fail(path, "must be a table with min, max, key and label")
    low, high = r.get(raw, "min", path, int), r.get(raw, "max", path, int)
    if low > high:
        raise r.fail(path, f"min {low} is above max {high}")
    label = r.text(raw, "label", path)
    assert label is not None
    return Band(low, high, r.get(raw, "key", path, str), label)


def _check_bands(r: Reader, instrument: Instrument) -> None:
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


def _check_conditions(r: Reader, instrument: Instrument) -> None:
    seen: set[str] = set()
    for n, item in enumerate(instrument.items):
        for key in item.when.any_of if item.when else ():
            if key not in seen:
                raise r.fail(f"items[{n}].when.any_of", f"{key!r} must be an earlier item")
        seen.add(item.key)


_OUTCOME_FIELDS = frozenset(OutcomeRules.__dataclass_fields__)


def _outcomes(r: Reader, raw: Mapping[str, Any]) -> OutcomeRules:
    for name in raw:
        if name not in _OUTCOME_FIELDS:
            raise r.fail(
                f"outcomes.{name}", f"unknown setting; known: {', '.join(sorted(_OUTCOME_FIELDS))}"
            )
    values = {name: r.get(raw, name, "outcomes", int) for name in raw}
    return OutcomeRules(**values)

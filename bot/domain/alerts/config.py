"""The ``[alerts]`` table of config.toml -> :class:`AlertRules`. Pure: the caller reads the
file and passes the table and the file name; every error names the key
(``config.toml: alerts.rules.severe_score.instruments.phq9.urgent: must be a whole number
of at least 1``).

Everything is optional; what is named overrides :data:`DEFAULT_RULES`::

    [alerts]
    cooldown_h = 24                    # repeats of one rule within this update one alert

    [alerts.levels.crisis]             # crisis, urgent, routine, info
    ack_within_min = 15                # unacknowledged after this: escalate
    repeat_every_min = 15              # then re-send this often until acknowledged

    [alerts.rules.suicidality]         # every rule: enabled, level, cooldown_h
    level = "urgent"                   # a suicidality flag on an item not listed below
    cooldown_h = 1
    items."phq9.q9" = { urgent = 1, crisis = 2 }   # value >= N reaches that level

    [alerts.rules.severe_score]
    instruments.gad7 = { routine = 15 }            # total >= N; {} removes an instrument

    [alerts.rules.worsening]
    rise_from_previous = { phq9 = 5 }              # also a rise of N from the last score
    rise_from_best = { qids_sr16 = 5 }             # N above the best score (default: the
                                                   # instrument's reliable change)

    [alerts.rules.missed_checkins]
    in_a_row = 2
    level_with_open_alert = "urgent"

    [alerts.rules.opted_out]           # STOP, a blocked bot, a declined invitation
    level_at_risk = "urgent"           # at risk: an unresolved crisis/urgent alert, a
    recent_days = 14                   # safety item endorsed this recently, or a stop in a
                                       # check-in that had reached the safety item

    [alerts.rules.fever]               # a new rule for an operator's own instrument flag
    level = "urgent"
    flags = ["fever"]                  # "red_flag_*" matches a prefix

``items``, ``instruments`` and ``rise_from_best`` merge key by key over the defaults;
``flags`` and ``rise_from_previous`` replace them. A flag goes to the first rule naming it,
the shipped rules before an operator's. ``suicidality``, ``side_effect_red_flag`` and
``risk_language`` can be neither disabled nor set below urgent, and the red flags cannot
be changed; ``opted_out`` can be neither disabled nor set to info, and its
``level_at_risk`` not below urgent.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import fields, replace
from datetime import timedelta
from itertools import pairwise
from types import MappingProxyType
from typing import Any, TypeVar

from bot.domain.alerts.rules import (
    DEFAULT_RULES,
    LEVELS,
    PROTECTED,
    AlertRules,
    FlagRule,
    ItemRule,
    Level,
    LevelPolicy,
    MissedRule,
    OptOutRule,
    Rule,
    ScoreRule,
    Thresholds,
    WorseningRule,
    rank,
)
from bot.domain.errors import ConfigError
from bot.domain.instruments import Instrument

SECTION = "alerts"
R = TypeVar("R", bound=Rule)
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_ITEM = re.compile(r"^[a-z][a-z0-9_]*\.[a-z0-9_]+$")
_FLAG = re.compile(r"^[a-z][a-z0-9_]*\*?$")
_COMMON = {"enabled", "level", "cooldown_h"}
_KEYS: dict[type[Rule], set[str]] = {
    Rule: _COMMON,
    ItemRule: _COMMON | {"items"},
    ScoreRule: {"enabled", "cooldown_h", "instruments"},  # levels come from the thresholds
    WorseningRule: _COMMON | {"rise_from_previous", "rise_from_best"},
    FlagRule: _COMMON | {"flags"},
    MissedRule: _COMMON | {"in_a_row", "level_with_open_alert"},
    OptOutRule: _COMMON | {"level_at_risk", "recent_days"},
}


def rules_from_mapping(
    data: Mapping[str, Any], source: str, base: AlertRules = DEFAULT_RULES
) -> AlertRules:
    """Validate the ``[alerts]`` table and apply it over `base`, or raise ConfigError."""
    p = _Parser(source)
    p.known(data, SECTION, {"cooldown_h", "digest_window_s", "levels", "rules"})
    rules = replace(
        base,
        cooldown=p.hours(data, "cooldown_h", SECTION, None) or base.cooldown,
        digest_window=_digest_window(p, data, base.digest_window),
        levels=_levels(p, p.table(data, "levels", SECTION), base.levels),
    )
    for key, raw in p.table(data, "rules", SECTION).items():
        rules = _with_rule(p, rules, key, raw)
    return rules


def _digest_window(p: _Parser, data: Mapping[str, Any], default: timedelta) -> timedelta:
    """``digest_window_s``: 0 (every alert alone) up to 10 s (a crisis alert waits this)."""
    value = data.get("digest_window_s", default.total_seconds())
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 10:
        raise p.fail(f"{SECTION}.digest_window_s", "must be a number of seconds from 0 to 10")
    return timedelta(seconds=value)


def _with_rule(p: _Parser, rules: AlertRules, key: str, raw: Any) -> AlertRules:
    path = f"{SECTION}.rules.{_quoted(key)}"
    if not isinstance(raw, dict):
        raise p.fail(path, "must be a table")
    if key not in rules.keys:
        if "flags" not in raw or not _NAME.match(key):
            known = ", ".join(rules.keys)
            raise p.fail(path, f"unknown rule (known: {known}; a new flag rule needs flags)")
        return replace(rules, flag_rules=(*rules.flag_rules, _rule(p, FlagRule(key), raw, path)))
    if key in {f.name for f in fields(rules)}:
        named: dict[str, Any] = {key: _rule(p, rules.rule(key), raw, path)}
        return replace(rules, **named)
    flag_rules = tuple(_rule(p, r, raw, path) if r.key == key else r for r in rules.flag_rules)
    return replace(rules, flag_rules=flag_rules)


def _rule(p: _Parser, rule: R, raw: Mapping[str, Any], path: str) -> R:
    p.known(raw, path, _KEYS[type(rule)])
    changes: dict[str, Any] = {
        "enabled": p.boolean(raw, "enabled", path, rule.enabled),
        "level": p.level(raw, "level", path, rule.level),
        "cooldown": p.hours(raw, "cooldown_h", path, rule.cooldown),
    }
    if isinstance(rule, ItemRule) and "items" in raw:
        changes["items"] = _merged(p, rule.items, raw["items"], f"{path}.items", _ITEM)
    if isinstance(rule, ScoreRule) and "instruments" in raw:
        changes["instruments"] = _merged(
            p, rule.instruments, raw["instruments"], f"{path}.instruments", _NAME
        )
    if isinstance(rule, WorseningRule) and "rise_from_previous" in raw:
        changes["rise_from_previous"] = _points(p, raw, "rise_from_previous", path)
    if isinstance(rule, WorseningRule) and "rise_from_best" in raw:
        own = _points(p, raw, "rise_from_best", path)
        changes["rise_from_best"] = MappingProxyType({**rule.rise_from_best, **own})
    if isinstance(rule, FlagRule) and "flags" in raw:
        changes["flags"] = _flags(p, raw["flags"], f"{path}.flags")
    if isinstance(rule, MissedRule):
        changes["in_a_row"] = p.count(raw, "in_a_row", path, 1, rule.in_a_row)
        changes["level_with_open_alert"] = p.level(
            raw, "level_with_open_alert", path, rule.level_with_open_alert
        )
    if isinstance(rule, OptOutRule):
        changes["level_at_risk"] = p.level(raw, "level_at_risk", path, rule.level_at_risk)
        days = p.count(raw, "recent_days", path, 1, rule.recent.days)
        changes["recent"] = timedelta(days=days)
    new = replace(rule, **changes)
    _protect(p, new, raw, path)
    return new


def _protect(p: _Parser, rule: Rule, raw: Mapping[str, Any], path: str) -> None:
    floor = PROTECTED.get(rule.key)
    if floor is None:
        return
    if "flags" in raw:
        raise p.fail(f"{path}.flags", "cannot be changed: it is a safety rule (add a rule)")
    if not rule.enabled:
        raise p.fail(f"{path}.enabled", "cannot be disabled: it is a safety rule")
    if rank(rule.level) < rank(floor):
        raise p.fail(f"{path}.level", f"must be {floor} or higher: it is a safety rule")
    if isinstance(rule, OptOutRule) and rank(rule.level_at_risk) < rank("urgent"):
        raise p.fail(f"{path}.level_at_risk", "must be urgent or higher: it is a safety rule")


def _levels(
    p: _Parser, raw: Mapping[str, Any], base: Mapping[Level, LevelPolicy]
) -> Mapping[Level, LevelPolicy]:
    levels = dict(base)
    for name, table in raw.items():
        path = f"{SECTION}.levels.{_quoted(name)}"
        level = _as_level(name)
        if level is None:
            raise p.fail(path, f"unknown level (known: {', '.join(LEVELS)})")
        if not isinstance(table, dict):
            raise p.fail(path, "must be a table")
        p.known(table, path, {"ack_within_min", "repeat_every_min"})
        old = levels[level]
        ack = p.minutes(table, "ack_within_min", path, old.ack_within)
        repeat = p.minutes(table, "repeat_every_min", path, old.repeat_every)
        if ack is None and repeat is not None:
            raise p.fail(f"{path}.repeat_every_min", "needs ack_within_min")
        levels[level] = LevelPolicy(ack, repeat)
    _check_order(p, levels)
    return MappingProxyType(levels)


def _check_order(p: _Parser, levels: Mapping[Level, LevelPolicy]) -> None:
    """A higher level is never given longer to be acknowledged than a lower one."""
    windows = [(lv, levels[lv].ack_within) for lv in LEVELS]
    timed = [(lv, w) for lv, w in windows if w is not None]
    for (lower, slow), (higher, fast) in pairwise(timed):
        if fast > slow:
            key = f"{SECTION}.levels.{higher}.ack_within_min"
            raise p.fail(key, f"must not be longer than {lower}'s")


def _merged(
    p: _Parser, base: Mapping[str, Thresholds], raw: Any, path: str, pattern: re.Pattern[str]
) -> Mapping[str, Thresholds]:
    if not isinstance(raw, dict):
        raise p.fail(path, "must be a table")
    merged = dict(base)
    for key, table in raw.items():
        where = f"{path}.{_quoted(key)}"
        if not pattern.match(key):
            raise p.fail(where, "is not a key of the shipped kind (e.g. phq9 or phq9.q9)")
        thresholds = _thresholds(p, table, where)
        if thresholds:
            merged[key] = thresholds
        else:
            merged.pop(key, None)
    return MappingProxyType(merged)


def _thresholds(p: _Parser, raw: Any, path: str) -> Thresholds:
    if not isinstance(raw, dict):
        raise p.fail(path, "must be a table of level = lowest value")
    out: dict[Level, int] = {}
    for name in raw:
        if name not in LEVELS:
            raise p.fail(f"{path}.{_quoted(name)}", f"unknown level (known: {', '.join(LEVELS)})")
    for level in LEVELS:
        if level in raw:
            out[level] = p.count(raw, level, path, 1)
            lower = [v for lv, v in out.items() if rank(lv) < rank(level)]
            if lower and out[level] < max(lower):
                raise p.fail(f"{path}.{level}", "must be at least the lower levels' thresholds")
    return MappingProxyType(out)


def _points(p: _Parser, rule: Mapping[str, Any], name: str, path: str) -> Mapping[str, int]:
    where, raw = f"{path}.{name}", rule[name]
    if not isinstance(raw, dict):
        raise p.fail(where, "must be a table of instrument = points")
    for key in raw:
        if not _NAME.match(key):
            raise p.fail(f"{where}.{_quoted(key)}", "is not an instrument key")
    return {key: p.count(raw, key, where, 1) for key in raw}


def _flags(p: _Parser, raw: Any, path: str) -> tuple[str, ...]:
    if not isinstance(raw, list) or not raw:
        raise p.fail(path, "must be a non-empty list of flag names")
    for n, flag in enumerate(raw):
        if not isinstance(flag, str) or not _FLAG.match(flag):
            raise p.fail(f"{path}[{n}]", "must be a flag name (a trailing * matches a prefix)")
    return tuple(raw)


def check_references(
    rules: AlertRules,
    instruments: Mapping[str, Instrument],
    unavailable: Collection[str],
    source: str,
) -> None:
    """Every instrument and item the rules name exists (`unavailable`: licensed
    instruments still without wording, whose items cannot be checked yet)."""
    known = {*instruments, *unavailable}
    base = f"{SECTION}.rules"
    worsening = rules.worsening
    named = [*rules.severe_score.instruments, *worsening.rise_from_previous]
    for key in [*named, *worsening.rise_from_best]:
        if key not in known:
            raise ConfigError(source, f"{base}.*.{key}", f"no instrument {key!r} is loaded")
    for item in rules.suicidality.items:
        owner = item.split(".", 1)[0]
        where = f"{base}.suicidality.items.{_quoted(item)}"
        if owner not in known:
            raise ConfigError(source, where, f"no instrument {owner!r} is loaded")
        if owner in instruments and item not in {i.key for i in instruments[owner].items}:
            raise ConfigError(source, where, f"{owner} has no item {item!r}")


def _as_level(value: object) -> Level | None:
    return next((level for level in LEVELS if value == level), None)


def _quoted(key: str) -> str:
    return key if _NAME.match(key) else f'"{key}"'


class _Parser:
    """Typed reads of untrusted values; every problem names the key."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, key: str, problem: str) -> ConfigError:
        return ConfigError(self.source, key, problem)

    def known(self, table: Mapping[str, Any], path: str, keys: set[str]) -> None:
        for key in table:
            if key not in keys:
                raise self.fail(
                    f"{path}.{_quoted(key)}", f"unknown key (known: {', '.join(sorted(keys))})"
                )

    def table(self, data: Mapping[str, Any], key: str, path: str) -> Mapping[str, Any]:
        value = data.get(key, {})
        if not isinstance(value, dict):
            raise self.fail(f"{path}.{key}", "must be a table")
        return value

    def boolean(self, data: Mapping[str, Any], key: str, path: str, default: bool) -> bool:
        value = data.get(key, default)
        if not isinstance(value, bool):
            raise self.fail(f"{path}.{key}", "must be true or false")
        return value

    def level(self, data: Mapping[str, Any], key: str, path: str, default: Level) -> Level:
        level = _as_level(data.get(key, default))
        if level is None:
            raise self.fail(f"{path}.{key}", f"must be one of {', '.join(LEVELS)}")
        return level

    def count(
        self, data: Mapping[str, Any], key: str, path: str, least: int, default: int | None = None
    ) -> int:
        value = data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise self.fail(f"{path}.{key}", f"must be a whole number of at least {least}")
        return value

    def _positive(self, data: Mapping[str, Any], key: str, path: str) -> float | None:
        if key not in data:
            return None
        value = data[key]
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise self.fail(f"{path}.{key}", "must be a positive number")
        return float(value)

    def hours(
        self, data: Mapping[str, Any], key: str, path: str, default: timedelta | None
    ) -> timedelta | None:
        value = self._positive(data, key, path)
        return default if value is None else timedelta(hours=value)

    def minutes(
        self, data: Mapping[str, Any], key: str, path: str, default: timedelta | None
    ) -> timedelta | None:
        value = self._positive(data, key, path)
        return default if value is None else timedelta(minutes=value)

"""Recall windows: an instrument asks about the last N days (PHQ-9 and GAD-7 two weeks,
QIDS-SR16 seven days, MADRS-S three). Asked again long before that window has passed,
consecutive answers describe mostly the same days, and change looks smaller than it is.

The rule (docs/SCHEDULING.md, "Recall windows"): an instrument is **asked too often**
when two consecutive askings of it are less than half its recall window apart, so the
two answers share more than half of the days they report on. A weekly PHQ-9 (7 of 14
days, the frequency measurement-based care uses) is not noted; a PHQ-9 24 h after one
infusion and 2 h before the next is.

Two views, both pure:

* :func:`protocol_overlaps`: from a protocol's rules alone (``config check``). Two
  session-relative rules asking the instrument closer than half the window around the
  same session; a calendar rule whose weekdays are closer than that. Session-to-session
  spacing is not known here (the sessions are not), so a rule repeated at every session
  is judged only in the preview.
* :func:`plan_overlaps`: from the askings a preview plans (``schedule preview``), where
  each bundle is one asking at its first due time.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import pairwise

from bot.domain.schedule.rules import Calendar, Protocol, SessionRelative, format_duration


@dataclass(frozen=True)
class Overlap:
    """`instrument` asked `gap` apart (under half its `recall`), by `rules` (or at `at`)."""

    instrument: str
    recall: timedelta
    gap: timedelta
    rules: tuple[str, ...]
    at: datetime | None = None  # the later asking, in a plan

    def describe(self) -> str:
        days = self.recall.days
        why = (
            f"rules {' and '.join(self.rules)}" if len(self.rules) > 1 else f"rule {self.rules[0]}"
        )
        return (
            f"{self.instrument} asks about the last {days} days but is asked "
            f"{format_duration(self.gap)} apart ({why}), less than half its recall window: "
            "consecutive answers share most of the days they report on"
        )


def too_close(gap: timedelta, recall: timedelta) -> bool:
    """The rule: consecutive askings less than half the recall window apart."""
    return gap < recall / 2


def protocol_overlaps(protocol: Protocol, recall: Mapping[str, timedelta]) -> list[Overlap]:
    """At most one :class:`Overlap` per instrument of `protocol` with a known recall window,
    the closest pair of askings the rules alone guarantee."""
    found = []
    for key in dict.fromkeys(k for rule in protocol.rules for k in rule.instruments):
        if key not in recall:
            continue
        pairs = _session_pairs(protocol, key) + _calendar_gaps(protocol, key)
        close = [(gap, names) for gap, names in pairs if too_close(gap, recall[key])]
        if close:
            gap, names = min(close)
            found.append(Overlap(key, recall[key], gap, names))
    return found


def _session_pairs(protocol: Protocol, key: str) -> list[tuple[timedelta, tuple[str, ...]]]:
    rules = [
        r for r in protocol.rules if key in r.instruments and isinstance(r.timing, SessionRelative)
    ]
    pairs: list[tuple[timedelta, tuple[str, ...]]] = []
    for n, first in enumerate(rules):
        for second in rules[n + 1 :]:
            a, b = first.timing, second.timing
            assert isinstance(a, SessionRelative) and isinstance(b, SessionRelative)
            if any(a.applies(s) and b.applies(s) for s in range(1, _top(a, b) + 1)):
                ordered = sorted([(a.offset, first.name), (b.offset, second.name)])
                pairs.append((ordered[1][0] - ordered[0][0], (ordered[0][1], ordered[1][1])))
    return pairs


def _top(a: SessionRelative, b: SessionRelative) -> int:
    """A session number high enough that every number either rule applies to is below it."""
    bounds = [t.max_session or 0 for t in (a, b)] + [max(t.numbers or {0}) for t in (a, b)]
    return max(max(bounds), 1) + 1


def _calendar_gaps(protocol: Protocol, key: str) -> list[tuple[timedelta, tuple[str, ...]]]:
    gaps: list[tuple[timedelta, tuple[str, ...]]] = []
    for rule in protocol.rules:
        timing = rule.timing
        if key not in rule.instruments or not isinstance(timing, Calendar):
            continue
        days = sorted(timing.weekdays)
        if len(days) == 1:
            gap = timedelta(weeks=timing.every_weeks)
        else:
            gap = timedelta(days=min(b - a for a, b in pairwise([*days, days[0] + 7])))
        gaps.append((gap, (rule.name,)))
    return gaps


@dataclass(frozen=True)
class Asking:
    """One conversation as planned: when it is due, which rules and instruments it holds."""

    at: datetime
    rules: tuple[str, ...]
    instruments: tuple[str, ...]


def plan_overlaps(askings: Iterable[Asking], recall: Mapping[str, timedelta]) -> list[Overlap]:
    """Every later asking of an instrument less than half its recall window after the one
    before it, in time order."""
    found = []
    ordered = sorted(askings, key=lambda a: a.at)
    for key in dict.fromkeys(k for a in ordered for k in a.instruments):
        if key not in recall:
            continue
        mine = [a for a in ordered if key in a.instruments]
        for before, after in pairwise(mine):
            gap = after.at - before.at
            if too_close(gap, recall[key]):
                names = tuple(dict.fromkeys((*before.rules, *after.rules)))
                found.append(Overlap(key, recall[key], gap, names, after.at))
    return found


def shorter_recall(
    key: str, recall: Mapping[str, timedelta], candidates: Sequence[str]
) -> list[str]:
    """Of `candidates` (the instruments the clinic can ask), those whose recall window is
    shorter than `key`'s, shortest first."""
    mine = recall.get(key)
    if mine is None:
        return []
    shorter = [c for c in candidates if c != key and c in recall and recall[c] < mine]
    return sorted(shorter, key=lambda c: (recall[c], c))

"""Recall-window notes for an operator (``config check``, ``schedule preview``): where a
protocol asks an instrument again before half its recall window has passed (the rule is
in :mod:`bot.domain.schedule.recall`), and which shorter-recall instrument the clinic
could ask instead. Never a change of wording: a shorter recall is another instrument."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta

from bot.domain.schedule.recall import Overlap, shorter_recall
from bot.instruments import Catalog


def recall_windows(catalog: Catalog) -> dict[str, timedelta]:
    """Each loaded instrument's recall window (those that declare one)."""
    return {i.key: timedelta(days=i.recall_days) for i in catalog if i.recall_days}


def note(overlap: Overlap, catalog: Catalog) -> str:
    """The overlap in words, with the shorter-recall alternative the clinic has."""
    return f"{overlap.describe()}; {alternative(overlap.instrument, catalog)}"


def alternative(key: str, catalog: Catalog, recall: Mapping[str, timedelta] | None = None) -> str:
    windows = recall if recall is not None else recall_windows(catalog)
    validated = [i.key for i in catalog if i.kind == "validated"]
    shorter = shorter_recall(key, windows, validated)
    if shorter:
        named = ", ".join(f"{catalog.get(k).name} ({windows[k].days} days)" for k in shorter)
        return f"shorter-recall instruments configured: {named}"
    days = windows[key].days if key in windows else 0
    if days > 7:
        return (
            "no shorter-recall instrument is configured: QIDS-SR16 (7 days) once its "
            "wording file (qids_sr16.wording.toml) is supplied, or a clinician-rated MADRS "
            "(past week)"
        )
    if days > 3:
        return (
            "no shorter-recall instrument is configured: MADRS-S (3 days) once its wording "
            "file (madrs_s.wording.toml) is supplied"
        )
    return "no shorter-recall instrument exists in the catalog"

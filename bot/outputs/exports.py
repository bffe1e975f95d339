"""Exports of the record: CSV (one row per answer, one per score) here, and a FHIR R4
Bundle (:mod:`bot.outputs.fhir_export`, whose ``export_fhir`` is re-exported here).

Every answer ever given is exported: one the patient changed (BACK) is a CSV row with
``superseded_by`` / ``superseded_at`` set and, in FHIR, an ``entered-in-error``
Observation of its own beside the QuestionnaireResponse of the answers that stand.

Rows are read a page at a time in id order (keyset paging, one short transaction per
page), so an export of a large database holds one page in memory, never the whole
table. Files hold health information: they are written with mode 0600 to a temporary
name beside the target and renamed into place when complete. ``raw_text`` (what the
patient typed) is never exported: the stored value is. Columns and the FHIR mapping are
documented in docs/EXPORTS.md.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sqlmodel import col, select

from bot.instruments import Catalog
from bot.outputs.fhir_export import export_fhir as export_fhir
from bot.outputs.fhir_measures import measure_codes
from bot.outputs.paging import EVERYTHING, Progress, count, no_progress, pages, private_file, row_id
from bot.outputs.paging import PAGE_SIZE as PAGE_SIZE
from bot.outputs.paging import Counts as Counts
from bot.outputs.paging import Selection as Selection
from bot.outputs.paging import iso as iso
from bot.storage.database import Database
from bot.storage.tables import Answer, Checkin, Score

ANSWER_COLUMNS = (
    "answer_id",
    "patient_id",
    "checkin_id",
    "instrument",
    "item_key",
    "item_number",
    "item_loinc",
    "value",
    "value_loinc",
    "answered_at",
    "superseded_by",
    "superseded_at",
)
SCORE_COLUMNS = (
    "score_id",
    "patient_id",
    "checkin_id",
    "instrument",
    "total",
    "max_total",
    "band",
    "valid",
    "prorated",
    "flags",
    "loinc_panel",
    "loinc_total",
    "completed_at",
    "session_number",
    "hours_since_session",
    "rated_by",
    "time_point",
    "systolic",
    "diastolic",
)

# ---- queries -----------------------------------------------------------------------


def _answer_query(selection: Selection) -> Any:
    query = select(Answer, Checkin.patient_id).join(Checkin, col(Answer.checkin_id) == Checkin.id)
    if selection.patient_id is not None:
        query = query.where(Checkin.patient_id == selection.patient_id)
    if selection.since is not None:
        query = query.where(col(Answer.answered_at) >= selection.since)
    return query


def _score_query(selection: Selection) -> Any:
    query = select(Score)
    if selection.patient_id is not None:
        query = query.where(Score.patient_id == selection.patient_id)
    if selection.since is not None:
        query = query.where(col(Score.completed_at) >= selection.since)
    return query


def _first_id(row: Any) -> int:
    return int(row[0].id)


# ---- CSV ---------------------------------------------------------------------------


async def export_csv(
    db: Database,
    catalog: Catalog,
    out_dir: Path,
    selection: Selection = EVERYTHING,
    *,
    page_size: int = PAGE_SIZE,
    progress: Progress = no_progress,
) -> Counts:
    """Write ``answers.csv`` and ``scores.csv`` into `out_dir` (created if missing)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    answers = await _write_csv(
        db,
        out_dir / "answers.csv",
        ANSWER_COLUMNS,
        _answer_query(selection),
        (col(Answer.id), _first_id),
        lambda row: _answer_row(catalog, *row),
        "answers",
        page_size,
        progress,
    )
    scores = await _write_csv(
        db,
        out_dir / "scores.csv",
        SCORE_COLUMNS,
        _score_query(selection),
        (col(Score.id), row_id),
        lambda row: _score_row(catalog, row),
        "scores",
        page_size,
        progress,
    )
    return Counts(answers=answers, scores=scores)


async def _write_csv(
    db: Database,
    path: Path,
    columns: Sequence[str],
    query: Any,
    order: tuple[Any, Callable[[Any], int]],
    to_row: Callable[[Any], list[Any]],
    what: str,
    page_size: int,
    progress: Progress,
) -> int:
    total = await count(db, query)
    done = 0
    with private_file(path) as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(columns)
        async for rows in pages(db, query, order[0], page_size, order[1]):
            writer.writerows(to_row(r) for r in rows)
            done += len(rows)
            progress(what, done, total)
    return done


def _answer_row(catalog: Catalog, answer: Answer, patient_id: int) -> list[Any]:
    instrument = catalog.instruments.get(answer.instrument)
    item = (
        next((i for i in instrument.items if i.key == answer.item_key), None)
        if instrument
        else None
    )
    option = item.option(answer.value_int) if item and answer.value_int is not None else None
    value = answer.value_int if answer.value_int is not None else answer.value_text
    return [
        answer.id, patient_id, answer.checkin_id, answer.instrument, answer.item_key,
        item.number if item else "", (item.loinc or "") if item else "",
        "" if value is None else value, (option.loinc or "") if option else "",
        iso(answer.answered_at), _blank(answer.superseded_by),
        iso(answer.superseded_at) if answer.superseded_at else "",
    ]  # fmt: skip


def _score_row(catalog: Catalog, score: Score) -> list[Any]:
    instrument = catalog.instruments.get(score.instrument)
    codes = measure_codes(score.instrument)
    parts = score.components or {}
    return [
        score.id, score.patient_id, _blank(score.checkin_id), score.instrument,
        _blank(score.total),
        _blank(instrument.max_total if instrument else codes.max_total), score.band or "",
        _bool(score.valid), _bool(score.prorated), ";".join(score.flags),
        (instrument.loinc_panel or "") if instrument else codes.loinc_panel,
        (instrument.loinc_total or "") if instrument else codes.loinc_total,
        iso(score.completed_at), _blank(score.session_number),
        _blank(score.hours_since_session), _blank(score.rated_by), score.time_point or "",
        _blank(parts.get("systolic")), _blank(parts.get("diastolic")),
    ]  # fmt: skip


def _blank(value: object) -> object:
    return "" if value is None else value


def _bool(value: bool) -> str:
    return "true" if value else "false"

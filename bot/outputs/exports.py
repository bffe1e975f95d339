"""Exports of the record: CSV (one row per answer, one per score) and a FHIR R4 Bundle.

Rows are read a page at a time in id order (keyset paging, one short transaction per
page), so an export of a large database holds one page in memory, never the whole
table. Files hold health information: they are written with mode 0600 to a temporary
name beside the target and renamed into place when complete. ``raw_text`` (what the
patient typed) is never exported: the stored value is. Columns and the FHIR mapping are
documented in docs/EXPORTS.md.
"""

from __future__ import annotations

import csv
import json
import os
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from sqlalchemy import func
from sqlmodel import col, select

from bot.domain.instruments import Instrument
from bot.instruments import Catalog
from bot.outputs import fhir
from bot.storage.database import Database
from bot.storage.tables import Answer, Checkin, Patient, Score

PAGE_SIZE = 500
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
)

Progress = Callable[[str, int, int], None]  # (what, done, total)


def _no_progress(what: str, done: int, total: int) -> None:
    return None


@dataclass(frozen=True)
class Selection:
    """Which records to export: one patient's or everyone's, from `since` on."""

    patient_id: int | None = None
    since: datetime | None = None


@dataclass(frozen=True)
class Counts:
    answers: int = 0
    scores: int = 0
    questionnaire_responses: int = 0
    observations: int = 0
    patients: int = 0


def iso(moment: datetime) -> str:
    """ISO 8601 in UTC with a ``Z``: ``2026-05-04T09:00:00Z``."""
    return fhir.instant(moment)


# ---- paging ------------------------------------------------------------------------


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


def _id(row: Any) -> int:
    return int(row.id)


def _first_id(row: Any) -> int:
    return int(row[0].id)


async def _count(db: Database, query: Any) -> int:
    async with db.transaction() as session:
        counted = select(func.count()).select_from(query.subquery())
        return int((await session.exec(counted)).one())


async def _pages(
    db: Database, query: Any, id_column: Any, page_size: int, key: Callable[[Any], int] = _id
) -> AsyncIterator[list[Any]]:
    """The rows of `query` in `id_column` order, one page (one transaction) at a time."""
    last = 0
    while True:
        async with db.transaction() as session:
            page = query.where(id_column > last).order_by(id_column).limit(page_size)
            rows = list((await session.exec(page)).all())
        if not rows:
            return
        yield rows
        last = key(rows[-1])


# ---- CSV ---------------------------------------------------------------------------


async def export_csv(
    db: Database,
    catalog: Catalog,
    out_dir: Path,
    selection: Selection = Selection(),
    *,
    page_size: int = PAGE_SIZE,
    progress: Progress = _no_progress,
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
        (col(Score.id), _id),
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
    total = await _count(db, query)
    done = 0
    with _private_file(path) as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(columns)
        async for rows in _pages(db, query, order[0], page_size, order[1]):
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
        iso(answer.answered_at),
    ]  # fmt: skip


def _score_row(catalog: Catalog, score: Score) -> list[Any]:
    instrument = catalog.instruments.get(score.instrument)
    return [
        score.id, score.patient_id, score.checkin_id, score.instrument, _blank(score.total),
        _blank(instrument.max_total if instrument else None), score.band or "",
        _bool(score.valid), _bool(score.prorated), ";".join(score.flags),
        (instrument.loinc_panel or "") if instrument else "",
        (instrument.loinc_total or "") if instrument else "", iso(score.completed_at),
    ]  # fmt: skip


def _blank(value: object) -> object:
    return "" if value is None else value


def _bool(value: bool) -> str:
    return "true" if value else "false"


@contextmanager
def _private_file(path: Path) -> Iterator[IO[str]]:
    """A text file readable by its owner only, in place under `path` once complete."""
    temporary = path.with_name(f".{path.name}.partial")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8", newline="") as fh:
            yield fh
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


# ---- FHIR --------------------------------------------------------------------------


async def export_fhir(
    db: Database,
    catalog: Catalog,
    out_file: Path,
    selection: Selection = Selection(),
    *,
    include_identifiers: bool = False,
    now: datetime | None = None,
    page_size: int = PAGE_SIZE,
    progress: Progress = _no_progress,
) -> Counts:
    """Write one FHIR R4 Bundle (type collection), streamed a page of check-ins at a time."""
    checkins = _checkin_query(selection)
    total = await _count(db, checkins)
    counts: defaultdict[str, int] = defaultdict(int)
    done = 0
    with _private_file(out_file) as fh:
        writer = _BundleWriter(fh, now or datetime.now(UTC))
        patients: set[int] = set()
        async for page in _pages(db, checkins, col(Checkin.id), page_size):
            for resource in await _page_resources(
                db, catalog, page, selection, include_identifiers, patients
            ):
                writer.add(resource)
                counts[resource["resourceType"]] += 1
            done += len(page)
            progress("check-ins", done, total)
        writer.close()
    return Counts(
        questionnaire_responses=counts["QuestionnaireResponse"],
        observations=counts["Observation"],
        patients=counts["Patient"],
    )


def _checkin_query(selection: Selection) -> Any:
    query = select(Checkin)
    if selection.patient_id is not None:
        query = query.where(Checkin.patient_id == selection.patient_id)
    return query


async def _page_resources(
    db: Database,
    catalog: Catalog,
    checkins: list[Checkin],
    selection: Selection,
    identified: bool,
    patients_seen: set[int],
) -> list[fhir.Resource]:
    ids = [c.id for c in checkins]
    async with db.transaction() as session:
        answer_rows = await session.exec(
            select(Answer).where(col(Answer.checkin_id).in_(ids)).order_by(col(Answer.id))
        )
        answers = list(answer_rows.all())
        score_query = select(Score).where(col(Score.checkin_id).in_(ids))
        if selection.since is not None:
            score_query = score_query.where(col(Score.completed_at) >= selection.since)
        scores = list((await session.exec(score_query.order_by(col(Score.id)))).all())
        new = {c.patient_id for c in checkins} - patients_seen if identified else set()
        patients: list[Patient] = []
        if new:
            found = await session.exec(select(Patient).where(col(Patient.id).in_(new)))
            patients = list(found.all())
    patients_seen.update(p.id for p in patients if p.id is not None)
    resources: list[fhir.Resource] = [fhir.patient_resource(p) for p in patients]
    scored = {(s.checkin_id, s.instrument) for s in scores}
    resources += _responses(catalog, checkins, answers, scored, selection, identified)
    for score in scores:
        subject = fhir.patient_reference(score.patient_id, identified)
        instrument = catalog.instruments.get(score.instrument)
        resources += fhir.score_observations(score, instrument, subject)
    return resources


def _responses(
    catalog: Catalog,
    checkins: Iterable[Checkin],
    answers: Iterable[Answer],
    scored: set[tuple[int, str]],
    selection: Selection,
    identified: bool,
) -> list[fhir.Resource]:
    """A response per check-in and instrument answered from `since` on, or whose score is
    exported (an expiry scores a partial response later than its last answer)."""
    grouped: dict[tuple[int, str], list[Answer]] = defaultdict(list)
    for answer in answers:
        grouped[(answer.checkin_id, answer.instrument)].append(answer)
    by_id = {c.id: c for c in checkins}
    responses = []
    for (checkin_id, key), group in grouped.items():
        authored = max(a.answered_at for a in group)
        late = selection.since is None or authored >= selection.since
        if not late and (checkin_id, key) not in scored:
            continue
        checkin = by_id[checkin_id]
        subject = fhir.patient_reference(checkin.patient_id, identified)
        instrument: Instrument | None = catalog.instruments.get(key)
        responses.append(
            fhir.questionnaire_response(
                checkin_id,
                checkin.status,
                key,
                instrument,
                group,
                subject,
            )
        )
    return responses


class _BundleWriter:
    """Writes ``{"resourceType": "Bundle", ..., "entry": [...]}`` one entry at a time."""

    def __init__(self, fh: IO[str], now: datetime) -> None:
        self.fh = fh
        self.first = True
        head = {"resourceType": "Bundle", "type": "collection", "timestamp": fhir.instant(now)}
        fh.write(json.dumps(head, ensure_ascii=False)[:-1] + ', "entry": [\n')

    def add(self, resource: fhir.Resource) -> None:
        entry = {"fullUrl": fhir.full_url(resource["id"]), "resource": resource}
        self.fh.write(("" if self.first else ",\n") + json.dumps(entry, ensure_ascii=False))
        self.first = False

    def close(self) -> None:
        self.fh.write("\n]}\n")

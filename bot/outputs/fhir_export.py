"""The FHIR R4 export: one Bundle (type collection) of the record, streamed a page of
check-ins at a time, then a page of clinician-rated measures at a time (the mapping is
:mod:`bot.outputs.fhir` and :mod:`bot.outputs.fhir_measures`, documented in docs/EXPORTS.md).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from sqlmodel import col, select

from bot.domain.instruments import Instrument
from bot.instruments import Catalog
from bot.outputs import fhir
from bot.outputs.fhir_measures import measure_observation
from bot.outputs.paging import (
    EVERYTHING,
    PAGE_SIZE,
    Counts,
    Progress,
    Selection,
    count,
    no_progress,
    pages,
    private_file,
)
from bot.storage.database import Database
from bot.storage.tables import Answer, Checkin, Patient, Score


async def export_fhir(
    db: Database,
    catalog: Catalog,
    out_file: Path,
    selection: Selection = EVERYTHING,
    *,
    include_identifiers: bool = False,
    now: datetime | None = None,
    page_size: int = PAGE_SIZE,
    progress: Progress = no_progress,
) -> Counts:
    """Write one FHIR R4 Bundle (type collection), streamed a page of check-ins at a time."""
    checkins = _checkin_query(selection)
    total = await count(db, checkins)
    counts: defaultdict[str, int] = defaultdict(int)
    done = 0
    with private_file(out_file) as fh:
        writer = _BundleWriter(fh, now or datetime.now(UTC))
        patients: set[int] = set()
        async for page in pages(db, checkins, col(Checkin.id), page_size):
            for resource in await _page_resources(
                db, catalog, page, selection, include_identifiers, patients
            ):
                writer.add(resource)
                counts[resource["resourceType"]] += 1
            done += len(page)
            progress("check-ins", done, total)
        async for measures in pages(db, _measure_query(selection), col(Score.id), page_size):
            for resource in await _measure_resources(db, measures, include_identifiers, patients):
                writer.add(resource)
                counts[resource["resourceType"]] += 1
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


def _measure_query(selection: Selection) -> Any:
    """Clinician-rated measures: the scores made without a check-in."""
    query = select(Score).where(col(Score.checkin_id).is_(None))
    if selection.patient_id is not None:
        query = query.where(Score.patient_id == selection.patient_id)
    if selection.since is not None:
        query = query.where(col(Score.completed_at) >= selection.since)
    return query


async def _measure_resources(
    db: Database, measures: list[Score], identified: bool, patients_seen: set[int]
) -> list[fhir.Resource]:
    new = {m.patient_id for m in measures} - patients_seen if identified else set()
    resources: list[fhir.Resource] = []
    if new:
        async with db.transaction() as session:
            found = await session.exec(select(Patient).where(col(Patient.id).in_(new)))
            resources = [fhir.patient_resource(p) for p in found.all()]
        patients_seen.update(new)
    for score in measures:
        subject = fhir.patient_reference(score.patient_id, identified)
        resources.append(measure_observation(score, subject))
    return resources


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
    scored = {(s.checkin_id, s.instrument) for s in scores if s.checkin_id is not None}
    current = [a for a in answers if a.superseded_at is None]
    resources += _responses(catalog, checkins, current, scored, selection, identified)
    resources += _superseded(catalog, checkins, answers, selection, identified)
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


def _superseded(
    catalog: Catalog,
    checkins: Iterable[Checkin],
    answers: Iterable[Answer],
    selection: Selection,
    identified: bool,
) -> list[fhir.Resource]:
    """An Observation per answer the patient replaced, answered from `since` on."""
    patients = {c.id: c.patient_id for c in checkins}
    return [
        fhir.superseded_observation(
            a,
            catalog.instruments.get(a.instrument),
            fhir.patient_reference(patients[a.checkin_id], identified),
        )
        for a in answers
        if a.superseded_at is not None
        and (selection.since is None or a.answered_at >= selection.since)
    ]


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

"""What both exports share: which records, how many were written, keyset paging one short
transaction at a time, and private files renamed into place when complete."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from sqlalchemy import func
from sqlmodel import select

from bot.outputs import fhir
from bot.storage.database import Database

PAGE_SIZE = 500

Progress = Callable[[str, int, int], None]  # (what, done, total)


def no_progress(what: str, done: int, total: int) -> None:
    return None


@dataclass(frozen=True)
class Selection:
    """Which records to export: one patient's or everyone's, from `since` on."""

    patient_id: int | None = None
    since: datetime | None = None


EVERYTHING = Selection()  # every patient, from the first record


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


async def count(db: Database, query: Any) -> int:
    async with db.transaction() as session:
        counted = select(func.count()).select_from(query.subquery())
        return int((await session.exec(counted)).one())


def row_id(row: Any) -> int:
    return int(row.id)


async def pages(
    db: Database, query: Any, id_column: Any, page_size: int, key: Callable[[Any], int] = row_id
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


@contextmanager
def private_file(path: Path) -> Iterator[IO[str]]:
    """A text file readable by its owner only, in place under `path` once complete."""
    temporary = path.with_name(f".{path.name}.partial")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8", newline="") as fh:
            yield fh
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)

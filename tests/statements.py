"""Counting the SQL a block of code runs: every statement the engine sends, in order."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event

from bot.storage.database import Database


@contextmanager
def statements(db: Database, *, quick: bool = False) -> Iterator[list[str]]:
    """Every SQL statement the engine runs inside the block (`quick`: the engine of
    `Database.quick()` instead)."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(statement)

    engine = (db.quick_engine if quick else db.engine).sync_engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)

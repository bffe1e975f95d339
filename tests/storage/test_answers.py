"""Answers: one current answer per check-in item, kept so under concurrency; going BACK adds
a row and marks the earlier one superseded, never overwrites it."""

import asyncio
from datetime import datetime, timedelta

from sqlmodel import select

from bot.storage.answer_tables import NewAnswer
from bot.storage.database import Database
from bot.storage.repository import Repository
from bot.storage.tables import Answer, Checkin


def _answer(checkin: Checkin, value: int, at: datetime, item_key: str = "phq9.q1") -> Answer:
    assert checkin.id is not None
    return Answer(
        checkin_id=checkin.id,
        item_key=item_key,
        instrument="phq9",
        value_int=value,
        raw_text=str(value),
        answered_at=at,
    )


async def _save(db: Database, answer: Answer) -> bool:
    async with db.transaction() as session:
        return await Repository(session).save_answer(answer)


async def _stored(db: Database, checkin: Checkin, every: bool = False) -> list[Answer]:
    async with db.transaction() as session:
        assert checkin.id is not None
        return await Repository(session).answers_for_checkin(checkin.id, every=every)


async def test_second_answer_to_an_item_is_not_stored(
    db: Database, checkin: Checkin, now: datetime
) -> None:
    """Saving a second answer for an answered item returns False and keeps the first."""
    assert await _save(db, _answer(checkin, 1, now)) is True
    assert await _save(db, _answer(checkin, 3, now)) is False
    assert [a.value_int for a in await _stored(db, checkin)] == [1]


async def test_concurrent_answers_to_one_item_store_one_row(
    db: Database, checkin: Checkin, now: datetime
) -> None:
    """Two concurrent saves for the same (check-in, item) yield one row and one True."""
    results = await asyncio.gather(
        _save(db, _answer(checkin, 1, now)), _save(db, _answer(checkin, 2, now))
    )
    assert sorted(results) == [False, True]
    assert len(await _stored(db, checkin)) == 1


async def test_a_changed_answer_is_a_new_row_and_the_old_one_is_kept(
    db: Database, checkin: Checkin, now: datetime
) -> None:
    """After BACK, the new answer is a new row; the earlier one keeps its value and time
    and is marked superseded by the new row, at the new answer's time."""
    assert await _save(db, _answer(checkin, 2, now, "phq9.q9"))
    (first,) = await _stored(db, checkin)
    later = now + timedelta(minutes=2)
    async with db.transaction() as session:
        new_id, old_id = await Repository(session).supersede_answer(
            _answer(checkin, 0, later, "phq9.q9")
        )
    assert old_id == first.id and new_id != first.id
    every = await _stored(db, checkin, every=True)
    assert [
        (r.id, r.value_int, r.answered_at, r.superseded_by, r.superseded_at) for r in every
    ] == [
        (first.id, 2, now, new_id, later),
        (new_id, 0, later, None, None),
    ]
    assert [r.id for r in await _stored(db, checkin)] == [new_id]  # the current answer


async def test_changing_an_answer_twice_chains_the_rows(
    db: Database, checkin: Checkin, now: datetime
) -> None:
    """3, then 1, then 2: three rows, each superseded by the next; only the last is current,
    and a duplicate first answer is still refused."""
    assert await _save(db, _answer(checkin, 3, now))
    for n, value in enumerate((1, 2), start=1):
        async with db.transaction() as session:
            await Repository(session).supersede_answer(
                _answer(checkin, value, now + timedelta(minutes=n))
            )
    rows = await _stored(db, checkin, every=True)
    assert [r.value_int for r in rows] == [3, 1, 2]
    assert [r.superseded_by for r in rows] == [rows[1].id, rows[2].id, None]
    assert await _save(db, _answer(checkin, 0, now)) is False
    assert [r.value_int for r in await _stored(db, checkin)] == [2]


async def test_superseding_an_item_with_no_answer_stores_it(
    db: Database, checkin: Checkin, now: datetime
) -> None:
    """Superseding an item that has no answer yet simply stores it."""
    async with db.transaction() as session:
        _, old_id = await Repository(session).supersede_answer(_answer(checkin, 2, now, "phq9.q9"))
    assert old_id is None
    async with db.transaction() as session:
        rows = (await session.exec(select(Answer))).all()
    assert [(r.item_key, r.value_int, r.superseded_at) for r in rows] == [("phq9.q9", 2, None)]


def test_a_new_answer_has_every_column_of_the_answer_table() -> None:
    """`NewAnswer` (what a turn stores) stands for an `Answer`: a column added to the
    table and not to it would be left to its default by every turn."""
    columns = {c.name for c in Answer.__table__.columns} - {"id"}  # type: ignore[attr-defined]
    new = NewAnswer(checkin_id=1, item_key="phq9.q1", instrument="phq9", raw_text="1",
                    answered_at=datetime(2026, 1, 1))  # fmt: skip
    assert set(new.values()) == columns


async def test_a_new_answer_is_stored_as_the_table_row_would_be(
    db: Database, checkin: Checkin, now: datetime
) -> None:
    """Saved from a plain `NewAnswer`, and superseding one, the rows equal those saved
    from `Answer`s with the same fields (encrypted columns included)."""
    assert checkin.id is not None
    fields = {"checkin_id": checkin.id, "instrument": "bp", "value_int": None,
              "value_text": "120/80", "raw_text": "120 / 80", "answered_at": now}  # fmt: skip
    assert await _save(db, Answer(**fields, item_key="bp.table"))
    assert await _save(db, NewAnswer(**fields, item_key="bp.plain"))  # type: ignore[arg-type]
    later = fields | {"answered_at": now + timedelta(minutes=1)}
    async with db.transaction() as session:
        await Repository(session).supersede_answer(Answer(**later, item_key="bp.table"))
        await Repository(session).supersede_answer(NewAnswer(**later, item_key="bp.plain"))  # type: ignore[arg-type]
    rows = await _stored(db, checkin, every=True)
    table = [r.model_dump(exclude={"id", "item_key", "superseded_by"}) for r in rows
             if r.item_key == "bp.table"]  # fmt: skip
    plain = [r.model_dump(exclude={"id", "item_key", "superseded_by"}) for r in rows
             if r.item_key == "bp.plain"]  # fmt: skip
    assert plain == table and len(plain) == 2 and plain[0]["value_text"] == "120/80"

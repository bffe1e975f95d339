"""Answers: one per check-in item, kept so under concurrency and when the patient goes BACK."""

import asyncio
from datetime import datetime, timedelta

from sqlmodel import select

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


async def _stored(db: Database, checkin: Checkin) -> list[Answer]:
    async with db.transaction() as session:
        assert checkin.id is not None
        return await Repository(session).answers_for_checkin(checkin.id)


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


async def test_replace_answer_updates_the_one_row(
    db: Database, checkin: Checkin, now: datetime
) -> None:
    """After BACK, the new answer overwrites the item's row in place (same id, new value)."""
    assert await _save(db, _answer(checkin, 1, now))
    first = (await _stored(db, checkin))[0]
    later = now + timedelta(minutes=2)
    async with db.transaction() as session:
        replaced = await Repository(session).replace_answer(_answer(checkin, 3, later))
    rows = await _stored(db, checkin)
    assert [(r.id, r.value_int, r.answered_at) for r in rows] == [(first.id, 3, later)]
    assert (replaced.id, replaced.value_int) == (first.id, 3)


async def test_replace_answer_stores_a_first_answer(
    db: Database, checkin: Checkin, now: datetime
) -> None:
    """Replacing an item that has no answer yet simply stores it."""
    async with db.transaction() as session:
        await Repository(session).replace_answer(_answer(checkin, 2, now, "phq9.q9"))
    async with db.transaction() as session:
        rows = (await session.exec(select(Answer))).all()
    assert [(r.item_key, r.value_int) for r in rows] == [("phq9.q9", 2)]

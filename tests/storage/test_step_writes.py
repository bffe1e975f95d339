"""A usual turn's writes (the check-in's step, the answer, the outbox rows) as one statement
on PostgreSQL (`steps.write_step`): every row the same as the three statements write, with
the same checks (a stale check-in refused, an answered item kept, a known message
skipped), the messages numbered in order, and encrypted columns encrypted."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.orm.exc import StaleDataError
from sqlmodel import SQLModel

from bot.app.alerts import alerting
from bot.storage import steps
from bot.storage.answer_tables import Answer, NewAnswer, Score
from bot.storage.database import Database
from bot.storage.queued import QueuedMessage
from bot.storage.repository import Repository
from bot.storage.tables import Alert, Checkin, InboundMessage, OutboundMessage, Patient
from tests.conftest import _empty_tables
from tests.statements import statements
from tests.test_alerting import clinic, wired
from tests.test_services import T0, rows, said

TABLES: tuple[type[SQLModel], ...] = (
    Checkin, Answer, Score, Alert, OutboundMessage, InboundMessage
)  # fmt: skip
# one check-in's replies: answers, a reply that is none, a changed answer (BACK), item 9
# endorsed (crisis lines, the clinician's alert), the rest to the end (scores)
REPLIES = ["1", "maybe", "2", "BACK", "3", "0", "1", "2", "0", "1", "2", "2", "1"]  # PHQ-9
REPLIES += ["2", "0", "1", "3", "0", "1", "2", "1"]  # GAD-7


async def _conversation(db: Database) -> dict[str, list[dict[str, Any]]]:
    """Every row of the tables a turn writes, after a PHQ-9 and a GAD-7 answered through."""
    services, _, clock = wired(db)
    _, _, patient_id = await clinic(db)
    await services.asking.ask(patient_id, ["phq9", "gad7"])
    await services.starting.start_due()
    for n, reply in enumerate(REPLIES):
        clock.now = T0 + timedelta(minutes=n + 1)
        await services.inbox.handle_inbound(said("pat", reply, n, clock.now))
    found = {table.__name__: [r.model_dump() for r in await rows(db, table)] for table in TABLES}
    for row in (row for table in found.values() for row in table):
        row.pop("created_at", None), row.pop("updated_at", None)  # (the wall clock's)
    for checkin in found["Checkin"]:
        del checkin["idempotency_key"]  # (random: the operator's ask)
    return found


async def test_a_conversation_writes_the_same_rows_either_way(
    pg_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A whole conversation on PostgreSQL, its usual turns in one statement, then the same
    conversation (on emptied tables) in three: every row of every table a turn writes is
    the same, ids included; and the one-statement run did run one statement a turn."""
    monkeypatch.setattr(alerting, "secrets", SimpleNamespace(choice=lambda letters: letters[0]))
    with statements(pg_db) as seen:
        together = await _conversation(pg_db)
    assert sum("WITH stepped AS" in s for s in seen) >= 10  # most turns took it
    await _empty_tables(pg_db)
    monkeypatch.setattr(steps, "ONE_STATEMENT", False)
    with statements(pg_db) as seen:
        apart = await _conversation(pg_db)
    assert not [s for s in seen if "WITH stepped AS" in s]
    assert len(together["Answer"]) == 18 + 1  # one superseded (BACK)
    assert [s["instrument"] for s in together["Score"]] == ["phq9", "gad7"]
    assert [a["rule"] for a in together["Alert"]] == ["suicidality"]
    assert together["Checkin"][0]["status"] == "completed"
    for table in TABLES:
        name = table.__name__
        assert len(together[name]) == len(apart[name]), name
        for one, other in zip(together[name], apart[name], strict=True):
            assert one == other, (name, {k for k in one if one[k] != other[k]})


async def _open_checkin(db: Database) -> tuple[int, int]:
    async with db.transaction() as session:
        patient = Patient(display_name="P", timezone="UTC", channel="console", address="p1")
        await Repository(session).add(patient)
        assert patient.id is not None
        checkin = Checkin(patient_id=patient.id, idempotency_key="k", instruments=["phq9"],
                          status="sent", due_at=T0, expires_at=T0 + timedelta(days=2),
                          state={})  # fmt: skip
        await Repository(session).add(checkin)
        assert checkin.id is not None
    return patient.id, checkin.id


def _answer(checkin_id: int, item: str = "phq9.q1", value: int = 1) -> NewAnswer:
    return NewAnswer(checkin_id=checkin_id, item_key=item, instrument="phq9", value_int=value,
                     raw_text=str(value), answered_at=T0)  # fmt: skip


def _messages(patient_id: int, *keys: str) -> list[QueuedMessage]:
    return [
        QueuedMessage(channel="console", recipient_kind="patient", recipient_id=patient_id,
                      address="p1", body=f"message {key}", idempotency_key=key, next_attempt_at=T0)
        for key in keys
    ]  # fmt: skip


async def test_one_statement_writes_the_step_the_answer_and_the_messages_in_order(
    pg_db: Database,
) -> None:
    """One statement: the check-in stepped (version bumped, nothing left to flush), the
    answer stored, three messages numbered in the order given; bodies and texts stored
    encrypted, as the separate statements store them."""
    patient_id, checkin_id = await _open_checkin(pg_db)
    async with pg_db.transaction() as session:
        repo = Repository(session)
        checkin = await session.get(Checkin, checkin_id)
        assert checkin is not None
        checkin.status, checkin.state = "in_progress", {"answers": {"q1": 1}}
        with statements(pg_db) as seen:
            assert await steps.write_step(repo, checkin, _answer(checkin_id), _messages(
                patient_id, "c", "a", "b"))  # fmt: skip
            await session.flush()
        assert len(seen) == 1 and seen[0].lstrip().startswith("WITH stepped AS")
        assert checkin.version == 2 and repo.queued == 3
    (stored,) = await rows(pg_db, Checkin)
    assert (stored.status, stored.state, stored.version) == (
        "in_progress",
        {"answers": {"q1": 1}},
        2,
    )
    (answer,) = await rows(pg_db, Answer)
    assert (answer.item_key, answer.value_int, answer.raw_text) == ("phq9.q1", 1, "1")
    queued = await rows(pg_db, OutboundMessage)
    assert [m.idempotency_key for m in queued] == ["c", "a", "b"]  # by id: as given
    assert [m.body for m in queued] == ["message c", "message a", "message b"]
    async with pg_db.engine.connect() as connection:
        raw = (await connection.execute(text("SELECT body FROM outbound_message"))).scalars()
        assert not {"message c", "message a", "message b"} & set(raw)  # (ciphertext)
        raw = (await connection.execute(text("SELECT raw_text FROM answer"))).scalar_one()
        assert raw != "1"


async def test_a_stale_checkin_is_refused_and_nothing_is_written(pg_db: Database) -> None:
    """The check-in changed by another transaction since it was read: StaleDataError, and
    the transaction leaves no answer and no message behind."""
    patient_id, checkin_id = await _open_checkin(pg_db)
    async with pg_db.transaction() as session:
        checkin = await session.get(Checkin, checkin_id)
        assert checkin is not None
        session.expunge(checkin)  # (a copy read before the other transaction's change)
    async with pg_db.transaction() as other:
        await (await other.connection()).execute(text("UPDATE checkin SET version = version + 1"))
    with pytest.raises(StaleDataError):
        await _step_stale(pg_db, checkin, patient_id)
    assert await rows(pg_db, Answer) == [] and await rows(pg_db, OutboundMessage) == []


async def _step_stale(db: Database, stale: Checkin, patient_id: int) -> None:
    async with db.transaction() as session:
        checkin = await session.merge(stale, load=False)
        checkin.state = {"answers": {"q1": 1}}
        assert checkin.id is not None
        await steps.write_step(
            Repository(session), checkin, _answer(checkin.id), _messages(patient_id, "x")
        )


async def test_an_answered_item_keeps_its_answer_and_a_known_message_is_skipped(
    pg_db: Database,
) -> None:
    """The item answered already: False, the first answer kept; the step and the new
    message are still written, and a message whose key is known is not queued again."""
    patient_id, checkin_id = await _open_checkin(pg_db)
    async with pg_db.transaction() as session:
        repo = Repository(session)
        assert await repo.save_answer(_answer(checkin_id, value=0))
        await repo.enqueue(_messages(patient_id, "known"))
    async with pg_db.transaction() as session:
        repo = Repository(session)
        checkin = await session.get(Checkin, checkin_id)
        assert checkin is not None
        checkin.state = {"answers": {"q1": 3}}
        assert not await steps.write_step(repo, checkin, _answer(checkin_id, value=3),
                                          _messages(patient_id, "known", "new"))  # fmt: skip
        assert repo.queued == 1
    assert [a.value_int for a in await rows(pg_db, Answer)] == [0]
    assert [m.idempotency_key for m in await rows(pg_db, OutboundMessage)] == ["known", "new"]
    (stored,) = await rows(pg_db, Checkin)
    assert (stored.state, stored.version) == ({"answers": {"q1": 3}}, 2)


async def test_a_step_with_nothing_to_send_or_store_writes_only_the_step(pg_db: Database) -> None:
    """No answer and no message (a reminder's step, say): the one statement is the step."""
    _, checkin_id = await _open_checkin(pg_db)
    async with pg_db.transaction() as session:
        checkin = await session.get(Checkin, checkin_id)
        assert checkin is not None
        checkin.reminders_sent = 1
        assert await steps.write_step(Repository(session), checkin, None, [])
    (stored,) = await rows(pg_db, Checkin)
    assert (stored.reminders_sent, stored.version) == (1, 2)


async def test_a_step_that_changes_nothing_runs_no_statement(pg_db: Database) -> None:
    """No change, no answer, no message: nothing is sent to the database at all."""
    _, checkin_id = await _open_checkin(pg_db)
    async with pg_db.transaction() as session:
        checkin = await session.get(Checkin, checkin_id)
        assert checkin is not None
        with statements(pg_db) as seen:
            assert await steps.write_step(Repository(session), checkin, None, [])
    assert seen == []
    (stored,) = await rows(pg_db, Checkin)
    assert stored.version == 1

"""Many rows in one statement (bot/storage/bulk.py), on a real SQLite file and a real
PostgreSQL server (where rows travel as one array per column): what is stored reads back
as the ORM would have written it: encrypted columns, JSON, aware times, Python-side
defaults, skipped duplicates, the check-in's version bumped on update."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlmodel import col, select

from bot.storage import bulk
from bot.storage.database import Database
from bot.storage.tables import Checkin, OutboundMessage, Patient

T0 = datetime(2026, 3, 8, 6, 30, tzinfo=UTC)


def _message(n: int) -> dict[str, object]:
    return {
        "channel": "telegram", "recipient_kind": "patient", "recipient_id": n,
        "address": f"chat-{n}", "body": f"Question {n}: how are you?",
        "payload": {"intent": "Ask", "buttons": [["0", "a:0"]], "n": n},
        "idempotency_key": f"begin{n}:0", "next_attempt_at": T0 + timedelta(seconds=n),
        "priority": 0, "status": "queued",
    }  # fmt: skip


async def test_insert_new_stores_each_value_as_its_column_binds_it(db: Database) -> None:
    """Three new rows and one whose key exists: the three are stored (address and body
    encrypted, payload JSON, times aware, created_at filled), the duplicate skipped, and
    only the new rows come back."""
    async with db.transaction() as session:
        first = await bulk.insert_new(
            session, OutboundMessage, [_message(1)], ("idempotency_key",), ("id", "idempotency_key")
        )
    async with db.transaction() as session:
        again = await bulk.insert_new(
            session, OutboundMessage, [_message(n) for n in (1, 2, 3, 4)], ("idempotency_key",),
            ("id", "idempotency_key"),
        )  # fmt: skip
    assert [r.idempotency_key for r in first] == ["begin1:0"]
    assert sorted(r.idempotency_key for r in again) == ["begin2:0", "begin3:0", "begin4:0"]
    async with db.transaction() as session:
        stored = (
            await session.exec(select(OutboundMessage).order_by(col(OutboundMessage.id)))
        ).all()
        raw = (await session.exec(text("SELECT body FROM outbound_message"))).all()  # type: ignore[call-overload]
    assert [(m.recipient_id, m.address, m.body, m.payload["n"]) for m in stored] == [
        (n, f"chat-{n}", f"Question {n}: how are you?", n) for n in (1, 2, 3, 4)
    ]
    assert [m.next_attempt_at for m in stored] == [T0 + timedelta(seconds=n) for n in (1, 2, 3, 4)]
    assert all(m.created_at is not None and m.created_at.tzinfo is not None for m in stored)
    assert len(raw) == 4 and not any("how are you" in row[0] for row in raw)  # encrypted


async def test_update_by_id_writes_alike_and_differing_rows_and_bumps_the_version(
    db: Database,
) -> None:
    """Two check-ins given the same values and one given its own: each row gets its
    values and its version goes up by one; another column's onupdate (a patient's
    updated_at) is filled when its rows are updated apart."""
    async with db.transaction() as session:
        patient_ids = [
            r.id for r in await bulk.insert_new(
                session, Patient,
                [{"display_name": f"P{n}", "timezone": "UTC", "channel": "console",
                  "address": f"p{n}", "status": "active"} for n in range(3)],
                ("id",),
            )
        ]  # fmt: skip
        checkin_ids = [
            r.id for r in await bulk.insert_new(
                session, Checkin,
                [{"patient_id": p, "idempotency_key": f"k{p}", "instruments": ["phq2"],
                  "status": "pending", "due_at": T0, "expires_at": T0 + timedelta(days=1),
                  "state": {"instruments": ["phq2"], "status": "pending"}, "version": 1}
                 for p in patient_ids],
                ("idempotency_key",),
            )
        ]  # fmt: skip
    async with db.transaction() as session:
        before = {p.id: p.updated_at for p in (await session.exec(select(Patient))).all()}
    later = T0 + timedelta(hours=1)
    async with db.transaction() as session:
        await bulk.update_by_id(
            session, Checkin,
            [{"id": checkin_ids[0], "lease_until": later}, {"id": checkin_ids[1], "lease_until": later},
             {"id": checkin_ids[2], "lease_until": later + timedelta(minutes=5)}],
        )  # fmt: skip
        await bulk.update_by_id(
            session, Patient,
            [{"id": p, "planned_until": T0 + timedelta(days=n)} for n, p in enumerate(patient_ids)],
        )  # fmt: skip
    async with db.transaction() as session:
        checkins = (await session.exec(select(Checkin).order_by(col(Checkin.id)))).all()
        patients = (await session.exec(select(Patient).order_by(col(Patient.id)))).all()
    assert [(c.lease_until, c.version) for c in checkins] == [
        (later, 2),
        (later, 2),
        (later + timedelta(minutes=5), 2),
    ]
    assert [c.state["status"] for c in checkins] == ["pending"] * 3
    assert [p.planned_until for p in patients] == [T0 + timedelta(days=n) for n in range(3)]
    assert all(p.updated_at > before[p.id] for p in patients)

"""The delivery clock's stamping pass on PostgreSQL looks each open check-in's opening up
by its unique key, whatever the statistics say: in a wave the outbox was analyzed while
every message was queued, and a plan driven by the status index compared every sent
message with every open check-in (minutes a pass at 100,000)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.dialects import postgresql

from bot.storage import bulk
from bot.storage import delivery_clock as clock
from bot.storage.database import Database
from bot.storage.tables import Checkin, OutboundMessage, Patient

T0 = datetime(2026, 3, 2, 14, tzinfo=UTC)
WAVE = 2000


async def _wave(db: Database) -> list[int]:
    """`WAVE` started check-ins with their two opening messages queued, analyzed so."""
    async with db.transaction() as session:
        (patient,) = await bulk.insert_new(
            session, Patient,
            [{"display_name": "P", "timezone": "UTC", "channel": "console", "address": "p",
              "status": "active"}],
            ("id",),
        )  # fmt: skip
        started = await bulk.insert_new(
            session, Checkin,
            [{"patient_id": patient.id, "idempotency_key": f"k{n}", "instruments": ["phq2"],
              "status": "sent", "due_at": T0, "expires_at": T0 + timedelta(days=1),
              "sent_at": T0, "state": {}, "version": 1} for n in range(WAVE)],
            ("idempotency_key",),
        )  # fmt: skip
        ids = sorted(row.id for row in started)
        await bulk.insert_new(
            session, OutboundMessage,
            [{"channel": "console", "recipient_kind": "patient", "recipient_id": patient.id,
              "address": "p", "body": "b", "payload": {}, "idempotency_key": f"begin{i}:{n}",
              "next_attempt_at": T0, "status": "queued"} for i in ids for n in (0, 1)],
            ("idempotency_key",),
        )  # fmt: skip
    async with db.transaction() as session:
        await session.exec(text("ANALYZE checkin, outbound_message"))  # type: ignore[call-overload]
    return ids


async def test_stamping_looks_openings_up_by_key_after_the_wave_went_out(pg_db: Database) -> None:
    """Analyzed with nothing sent, then 100 openings sent: the pass finds exactly those
    check-ins, and its plan reads the outbox through the idempotency key's index."""
    ids = await _wave(pg_db)
    sent = ids[:100]
    async with pg_db.transaction() as session:
        await session.exec(
            text(
                "UPDATE outbound_message SET status = 'sent', sent_at = :at "
                "WHERE idempotency_key = ANY(:keys)"
            ).bindparams(at=T0 + timedelta(minutes=1), keys=[f"begin{i}:0" for i in sent])
        )  # type: ignore[call-overload]
        found = await clock.delivered_unstamped(session, 500)
        sql = clock.unstamped(500).compile(
            dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}
        )
        explained = await (await session.connection()).exec_driver_sql(f"EXPLAIN {sql}")
        plan = "\n".join(row[0] for row in explained.all())
    assert [row.id for row in found] == sent
    assert {row.delivered for row in found} == {T0 + timedelta(minutes=1)}
    assert "uq_outbound_message_idempotency_key" in plan, plan

"""Delivery receipts against a real database, on SQLite and PostgreSQL: a receipt that
arrives before its send is recorded is kept and applied by the transaction recording the
send, under the rules of one that arrives after (final once, the first final wins, an
opt-out makes the patient unreachable); one that never meets its message is pruned after
a day; and one racing the send's recording is never lost."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from sqlalchemy import event

from bot.app.outbox.receipts import apply_early, prune_early, record_status
from bot.app.outbox.sending import Sent, _GroupCommit
from bot.storage.database import Database
from bot.storage.repository import Repository
from bot.storage.tables import EarlyReceipt, OutboundMessage, Patient
from tests.statements import statements
from tests.test_services import SimClock, rows

NOW = datetime(2026, 3, 2, 14, 30, tzinfo=UTC)
SID = "SM" + "a" * 32


async def _queued(db: Database, channel: str = "sms") -> int:
    """An active patient and one message to them, queued."""
    async with db.transaction() as session:
        repo = Repository(session)
        patient = Patient(display_name="Ada", timezone="UTC", channel=channel,
                          address="+447700900001", status="active")  # fmt: skip
        await repo.add(patient)
        assert patient.id is not None
        message = OutboundMessage(
            channel=channel, recipient_kind="patient", recipient_id=patient.id,
            address="+447700900001", body="How are you?", idempotency_key="receipt-test",
            next_attempt_at=NOW,
        )  # fmt: skip
        (message_id,) = await repo.enqueue([message])
    return message_id


async def _status(db: Database, status: str, error: str | None = None) -> None:
    opted_out = error == "21610"
    await record_status(db, SimClock(NOW), "sms", SID, status, error, opted_out=opted_out)


async def _marked(db: Database, message_id: int) -> None:
    await _GroupCommit(db).record([Sent(message_id, SID, NOW, "sms")])


async def _state(db: Database) -> tuple[str, str | None, str, int]:
    """The message's status and error, the patient's status, how many receipts are kept."""
    (message,) = await rows(db, OutboundMessage)
    (patient,) = await rows(db, Patient)
    return message.status, message.last_error, patient.status, len(await rows(db, EarlyReceipt))


async def test_an_opt_out_before_the_send_is_recorded_is_applied_with_it(db: Database) -> None:
    """Failed with 21610 while no message carried the sid: kept, then applied when the send
    is recorded; the patient is opted out and nothing stays kept."""
    message_id = await _queued(db)
    await _status(db, "failed", "21610")
    assert await _state(db) == ("queued", None, "active", 1)
    await _marked(db, message_id)
    error = "sms: twilio error 21610 (after sending)"
    assert await _state(db) == ("failed", error, "opted_out", 0)


async def test_a_receipt_after_the_send_is_applied_at_once(db: Database) -> None:
    """The usual order: the send recorded, then delivered; nothing kept."""
    message_id = await _queued(db)
    await _marked(db, message_id)
    await _status(db, "delivered")
    assert await _state(db) == ("delivered", None, "active", 0)


async def test_the_first_final_receipt_wins_before_the_send_as_after(db: Database) -> None:
    """Delivered, then an older failed and a sent, all before the send is recorded: it ends
    delivered, as it would had they come after; statuses on the way are not kept."""
    message_id = await _queued(db)
    for status, error in (("delivered", None), ("sent", None), ("failed", "30003")):
        await _status(db, status, error)
    assert len(await rows(db, EarlyReceipt)) == 2
    await _marked(db, message_id)
    assert await _state(db) == ("delivered", None, "active", 0)
    await _status(db, "failed", "21610")
    assert await _state(db) == ("delivered", None, "active", 0)


async def test_another_channels_receipt_is_not_taken(db: Database) -> None:
    """A WhatsApp receipt with the same sid is not an SMS send's: it stays kept."""
    message_id = await _queued(db)
    await record_status(db, SimClock(NOW), "whatsapp", SID, "delivered", None, opted_out=False)
    await _marked(db, message_id)
    assert await _state(db) == ("sent", None, "active", 1)


async def test_a_receipt_that_never_meets_its_message_is_pruned_after_a_day(
    db: Database,
) -> None:
    """Another system's sid: kept for a day, then pruned; a newer one stays."""
    await _status(db, "delivered")
    clock = SimClock(NOW + timedelta(hours=23))
    assert await prune_early(db, clock) == 0
    await record_status(db, clock, "sms", "SM" + "b" * 32, "failed", None, opted_out=False)
    clock.now += timedelta(hours=2)
    assert await prune_early(db, clock) == 1
    (kept,) = await rows(db, EarlyReceipt)
    assert kept.provider_id == "SM" + "b" * 32


async def test_a_receipt_racing_the_send_being_recorded_is_not_lost(db: Database) -> None:
    """The send's transaction has written the sid and looked for kept receipts (none) but
    not committed when the receipt arrives: the receipt waits for it, then finds the
    message, rather than being kept where no send will take it."""
    message_id = await _queued(db)
    async with db.transaction() as session:
        await Repository(session).mark_sent(message_id, SID, NOW)
        await apply_early(session, {("sms", SID): message_id}, NOW)
        receipt = asyncio.ensure_future(_status(db, "failed", "21610"))
        await asyncio.sleep(0.3)
        assert not receipt.done()
    await receipt
    assert await _state(db) == ("failed", "sms: twilio error 21610 (after sending)", "opted_out", 0)


async def test_recording_a_send_looks_for_receipts_in_one_statement_and_only_for_twilio(
    db: Database,
) -> None:
    """An SMS send's recording adds one statement (nothing kept: nothing more); a Telegram
    send's adds none."""
    sms_id = await _queued(db)
    with statements(db) as seen:
        await _marked(db, sms_id)
    assert len([s for s in seen if "early_receipt" in s]) == 1
    with statements(db, quick=True) as seen:  # PostgreSQL: the UPDATE alone, on the quick pool
        await _GroupCommit(db).record([Sent(sms_id + 1, "tg-1", NOW, "telegram")])
    assert [s.split()[0] for s in seen if not s.startswith("BEGIN")] == ["UPDATE"]


async def test_a_batch_with_an_sms_send_applies_its_receipt_in_the_marks_transaction(
    db: Database,
) -> None:
    """A Telegram send and an SMS send recorded together, a receipt kept for the SMS one:
    both marks and the receipt in one transaction of the main engine (on PostgreSQL too,
    where a batch with nothing to apply goes to the quick pool); nothing stays kept."""
    sms_id = await _queued(db)
    async with db.transaction() as session:
        (telegram_id,) = await Repository(session).enqueue([OutboundMessage(
            channel="telegram", recipient_kind="patient", recipient_id=1, address="1",
            body="Hello", idempotency_key="receipt-test:telegram", next_attempt_at=NOW,
        )])  # fmt: skip
    await _status(db, "delivered")
    commits: list[object] = []

    def on_commit(connection: object) -> None:
        commits.append(connection)

    event.listen(db.engine.sync_engine, "commit", on_commit)
    try:
        with statements(db) as on_main, statements(db, quick=True) as on_quick:
            await _GroupCommit(db).record(
                [Sent(telegram_id, "tg-1", NOW, "telegram"), Sent(sms_id, SID, NOW, "sms")]
            )
    finally:
        event.remove(db.engine.sync_engine, "commit", on_commit)
    assert len(commits) == 1
    assert any(s.startswith("UPDATE outbound_message") for s in on_main)
    assert any("early_receipt" in s for s in on_main)
    if db.dialect == "postgresql":
        assert on_quick == []
    status = {m.id: m.status for m in await rows(db, OutboundMessage)}
    assert (status[telegram_id], status[sms_id]) == ("sent", "delivered")
    assert await rows(db, EarlyReceipt) == []

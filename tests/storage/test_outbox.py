"""The outbox: due messages are claimed once, under a lease, in each recipient's order; a
recipient's consecutive ready messages in one claim."""

import asyncio
import random
from collections import defaultdict
from datetime import datetime, timedelta

import pytest
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.storage import outbox
from bot.storage.database import Database
from bot.storage.queued import QueuedMessage
from bot.storage.repository import Repository
from bot.storage.tables import OutboundMessage

LEASE = timedelta(seconds=30)


def _message(
    recipient: int, n: int, due: datetime, priority: int = outbox.REPLY
) -> OutboundMessage:
    return OutboundMessage(
        channel="sms",
        recipient_kind="patient",
        recipient_id=recipient,
        address=f"+1555010{recipient}",
        body=f"message {n} for {recipient}",
        idempotency_key=f"{recipient}:{n}",
        next_attempt_at=due,
        priority=priority,
    )


async def _enqueue(db: Database, *rows: OutboundMessage) -> list[OutboundMessage]:
    """Queue `rows`; the rows queued, read back by the ids enqueue returned (in its order)."""
    async with db.transaction() as session:
        ids = await Repository(session).enqueue(rows)
        found = await session.exec(select(OutboundMessage).where(col(OutboundMessage.id).in_(ids)))
        stored = {row.id: row for row in found.all()}
    return [stored[i] for i in ids]


async def _claim(db: Database, at: datetime, limit: int = 10) -> list[str]:
    """The keys of the messages claimed, in the order the claim returned them."""
    async with db.transaction() as session:
        claimed = await Repository(session).claim_outbox(at, limit, LEASE)
        return await _keys(session, [row.id for row in claimed])


async def _keys(session: AsyncSession, ids: list[int]) -> list[str]:
    statement = select(OutboundMessage.id, OutboundMessage.idempotency_key)
    found = dict((await session.exec(statement.where(col(OutboundMessage.id).in_(ids)))).all())
    return [found[i] for i in ids]


async def _sent(db: Database, key: str, at: datetime) -> None:
    async with db.transaction() as session:
        repo = Repository(session)
        await repo.mark_sent(await _id_of(repo, key), f"SM-{key}", at)


async def _id_of(repo: Repository, key: str) -> int:
    row = (
        await repo.session.exec(
            select(OutboundMessage).where(OutboundMessage.idempotency_key == key)
        )
    ).one()
    assert row.id is not None
    return row.id


def test_a_queued_message_has_every_column_of_the_outbox() -> None:
    """`QueuedMessage` (what a turn queues) stands for an `OutboundMessage`: a column added
    to the table and not to it would be left to its default by every turn."""
    columns = {c.name for c in OutboundMessage.__table__.columns} - {"id"}  # type: ignore[attr-defined]
    queued = QueuedMessage(channel="sms", recipient_kind="patient", recipient_id=1,
                           address="+15550100", body="b", idempotency_key="k",
                           next_attempt_at=datetime(2026, 1, 1))  # fmt: skip
    assert set(queued.values()) == columns


async def test_a_queued_message_is_stored_as_the_table_row_would_be(
    db: Database, now: datetime
) -> None:
    fields = {"channel": "telegram", "recipient_kind": "clinician", "recipient_id": 3,
              "address": "42", "body": "<b>alert</b>", "payload": {"html": True, "n": [1]},
              "next_attempt_at": now, "priority": outbox.URGENT,
              "created_at": now - timedelta(seconds=1)}  # fmt: skip
    table_row, queued = await _enqueue(
        db,
        OutboundMessage(**fields, idempotency_key="table"),
        QueuedMessage(**fields, idempotency_key="queued"),  # type: ignore[arg-type]
    )
    ignored = {"id", "idempotency_key"}
    assert queued.model_dump(exclude=ignored) == table_row.model_dump(exclude=ignored)
    assert queued.payload == {"html": True, "n": [1]} and queued.priority == outbox.URGENT


async def test_enqueue_skips_known_idempotency_keys(db: Database, now: datetime) -> None:
    """Queuing the same key twice queues it once; the second call returns nothing."""
    assert len(await _enqueue(db, _message(1, 1, now))) == 1
    assert await _enqueue(db, _message(1, 1, now)) == []


async def test_several_queued_at_once_are_numbered_in_the_order_given(
    db: Database, now: datetime
) -> None:
    """A turn's messages go in one INSERT: ids (the recipient's order) follow the order
    given, not the keys' order, and a known key is skipped without disturbing the rest."""
    order = random.Random(4).sample(range(40), 40)
    await _enqueue(db, _message(1, order[5], now))
    queued = await _enqueue(db, *(_message(1, n, now) for n in order))
    assert [row.idempotency_key for row in queued] == [f"1:{n}" for n in order if n != order[5]]
    ids = [row.id or 0 for row in queued]
    assert ids == sorted(ids)
    assert all(row.body == f"message {row.idempotency_key[2:]} for 1" for row in queued)


async def test_urgent_messages_are_claimed_first_but_never_overtake_in_a_line(
    db: Database, now: datetime
) -> None:
    """A crisis message queued behind a wave of routine ones is claimed in the next batch;
    one queued behind its own recipient's earlier message still waits for it."""
    wave = [_message(r, 1, now, outbox.ROUTINE) for r in range(10, 40)]
    reply, crisis, behind = _message(2, 1, now), _message(3, 1, now), _message(10, 2, now)
    reply.priority, crisis.priority, behind.priority = outbox.REPLY, outbox.URGENT, outbox.URGENT
    await _enqueue(db, *wave)
    await _enqueue(db, reply)
    await _enqueue(db, crisis)
    await _enqueue(db, behind)  # recipient 10's second message: its first is routine
    assert await _claim(db, now, limit=3) == ["3:1", "2:1", "10:1"]  # and sent in this order
    assert await _claim(db, now, limit=1) == ["11:1"]  # routine, oldest first


async def test_claim_takes_only_due_messages(db: Database, now: datetime) -> None:
    """A message whose next attempt is in the future is not claimed yet."""
    later = now + timedelta(seconds=10)
    await _enqueue(db, _message(1, 1, now), _message(2, 1, later))
    assert await _claim(db, now) == ["1:1"]
    assert await _claim(db, later) == ["2:1"]


async def test_claim_sets_lease_and_counts_attempt(db: Database, now: datetime) -> None:
    """A claimed message is 'sending', leased until now + lease, with one attempt counted."""
    await _enqueue(db, _message(1, 1, now))
    async with db.transaction() as session:
        (row,) = await Repository(session).claim_outbox(now, 10, LEASE)
        stored = await session.get(OutboundMessage, row.id)
    assert (row.lease_until, row.attempts) == (now + LEASE, 1)
    assert stored is not None and (stored.status, stored.lease_until) == ("sending", now + LEASE)
    assert (row.address, row.body, row.channel) == ("+15550101", "message 1 for 1", "sms")


async def test_a_recipients_consecutive_messages_leave_from_one_claim(
    db: Database, now: datetime
) -> None:
    """A claim takes a recipient's due messages together, in id order, line by line; the
    limit counts lines; nothing behind them is claimed again while they are leased."""
    rows = [_message(1, 1, now), _message(2, 1, now), _message(1, 2, now), _message(1, 3, now)]
    await _enqueue(db, *rows)
    assert await _claim(db, now, limit=1) == ["1:1", "1:2", "1:3"]
    assert await _claim(db, now) == ["2:1"]
    await _enqueue(db, _message(1, 4, now))  # queued behind messages being sent
    assert await _claim(db, now) == []
    for n in (1, 2, 3):
        await _sent(db, f"1:{n}", now)
    assert await _claim(db, now) == ["1:4"]


async def test_scheduled_outreach_is_claimed_head_by_head(db: Database, now: datetime) -> None:
    """A wave's lines (routine heads) are not claimed whole, so workers share a wave: the
    second message of a patient's opening waits for the first to be sent."""
    await _enqueue(db, *(_message(r, n, now, outbox.ROUTINE) for r in (1, 2) for n in (1, 2)))
    assert await _claim(db, now) == ["1:1", "2:1"]
    await _sent(db, "1:1", now)
    assert await _claim(db, now) == ["1:2"]


async def test_a_claim_stops_at_a_message_not_ready(db: Database, now: datetime) -> None:
    """A message behind one that waits (a retry, a held notice) waits too: the claim takes
    the recipient's line only up to it."""
    later = now + timedelta(seconds=10)
    await _enqueue(db, _message(1, 1, now), _message(1, 2, later), _message(1, 3, now))
    assert await _claim(db, now) == ["1:1"]
    await _sent(db, "1:1", now)
    assert await _claim(db, now) == []  # 1:2 heads the line and is not due
    assert await _claim(db, later) == ["1:2", "1:3"]


async def test_a_dead_workers_line_is_claimed_again_whole(db: Database, now: datetime) -> None:
    """Messages claimed together by a worker that died are claimed together again once
    their lease runs out, in order, each counting a second attempt."""
    await _enqueue(db, _message(1, 1, now), _message(1, 2, now))
    assert await _claim(db, now) == ["1:1", "1:2"]
    assert await _claim(db, now + LEASE - timedelta(seconds=1)) == []
    async with db.transaction() as session:
        claimed = await Repository(session).claim_outbox(now + LEASE, 10, LEASE)
    assert [(row.body, row.attempts) for row in claimed] == [
        ("message 1 for 1", 2),
        ("message 2 for 1", 2),
    ]


async def test_retry_keeps_later_messages_waiting(db: Database, now: datetime) -> None:
    """A message being retried still blocks its recipient's later messages until it goes."""
    await _enqueue(db, _message(1, 1, now))
    assert await _claim(db, now) == ["1:1"]
    await _enqueue(db, _message(1, 2, now))
    retry_at = now + timedelta(minutes=1)
    async with db.transaction() as session:
        repo = Repository(session)
        await repo.mark_retry(await _id_of(repo, "1:1"), "provider timeout", retry_at)
    assert await _claim(db, now + timedelta(seconds=59)) == []
    assert await _claim(db, retry_at) == ["1:1", "1:2"]


async def test_dead_message_unblocks_the_recipient(db: Database, now: datetime) -> None:
    """Once a message is given up on, the recipient's next message may be claimed."""
    await _enqueue(db, _message(1, 1, now))
    assert await _claim(db, now) == ["1:1"]
    await _enqueue(db, _message(1, 2, now))
    async with db.transaction() as session:
        repo = Repository(session)
        await repo.mark_dead(await _id_of(repo, "1:1"), "number unreachable")
    assert await _claim(db, now) == ["1:2"]


async def test_expired_lease_is_reclaimed(db: Database, now: datetime) -> None:
    """A claim whose lease ran out (a crashed worker) is claimed again, counting a new attempt."""
    await _enqueue(db, _message(1, 1, now))
    assert await _claim(db, now) == ["1:1"]
    assert await _claim(db, now + LEASE - timedelta(seconds=1)) == []
    async with db.transaction() as session:
        (row,) = await Repository(session).claim_outbox(now + LEASE, 10, LEASE)
    assert (row.body, row.attempts, row.lease_until) == ("message 1 for 1", 2, now + 2 * LEASE)


async def test_claim_respects_limit_oldest_first(db: Database, now: datetime) -> None:
    """With more due recipients than the limit, the longest-waiting messages go first."""
    await _enqueue(db, *(_message(r, 1, now - timedelta(seconds=r)) for r in range(1, 6)))
    assert await _claim(db, now, limit=2) == ["4:1", "5:1"]


async def test_mark_sent_records_provider_id(db: Database, now: datetime) -> None:
    """A sent message keeps the provider's id and the time, and loses its lease."""
    await _enqueue(db, _message(1, 1, now))
    await _claim(db, now)
    await _sent(db, "1:1", now + timedelta(seconds=1))
    async with db.transaction() as session:
        repo = Repository(session)
        row = await session.get(OutboundMessage, await _id_of(repo, "1:1"))
    assert row is not None
    assert (row.status, row.provider_id, row.sent_at, row.lease_until) == (
        "sent",
        "SM-1:1",
        now + timedelta(seconds=1),
        None,
    )


@pytest.mark.postgres
async def test_open_claim_hides_rows_from_other_claimers(pg_db: Database, now: datetime) -> None:
    """While one claim is uncommitted, a second claimer skips its rows and their successors."""
    await _enqueue(pg_db, _message(1, 1, now), _message(1, 2, now), _message(2, 1, now))
    async with pg_db.transaction() as session:
        first = await Repository(session).claim_outbox(now, 1, LEASE)
        assert [row.body for row in first] == ["message 1 for 1", "message 2 for 1"]
        assert await _claim(pg_db, now) == ["2:1"]


async def _worker(db: Database, now: datetime, log: list[str]) -> None:
    """Claim, 'send' after a short pause, mark sent; until nothing is left."""
    idle = 0
    while idle < 3:
        claimed = await _claim(db, now, limit=2)
        idle = 0 if claimed else idle + 1
        for key in claimed:
            await asyncio.sleep(random.uniform(0, 0.005))
            log.append(key)
            await _sent(db, key, now)
        await asyncio.sleep(0.001)


async def test_concurrent_claimers_share_without_overlap(db: Database, now: datetime) -> None:
    """Two concurrent claimers never take the same message and keep each recipient's order."""
    rows = [_message(r, n, now) for n in range(1, 6) for r in range(1, 5)]
    await _enqueue(db, *rows)
    log: list[str] = []
    await asyncio.gather(_worker(db, now, log), _worker(db, now, log))
    assert sorted(log) == sorted(row.idempotency_key for row in rows)
    per_recipient: dict[str, list[int]] = defaultdict(list)
    for key in log:
        recipient, n = key.split(":")
        per_recipient[recipient].append(int(n))
    assert all(order == [1, 2, 3, 4, 5] for order in per_recipient.values())


async def test_a_hand_off_leases_a_clinicians_alert_and_counts_only_due_rows_as_waiting(
    db: Database, now: datetime
) -> None:
    """A turn's alert to a clinician is leased to this process like a patient's reply (one
    recipient an INSERT, due, nothing of theirs waiting); a notice held for its digest,
    due only later, is queued without a lease and wakes nobody now: the claim it would
    wake for would find nothing due."""
    claiming = outbox.Claiming(lambda: now, now + LEASE, frozenset({"sms"}))
    alert = _message(7, 1, now, outbox.URGENT)
    alert.recipient_kind = "clinician"
    held = _message(8, 1, now + timedelta(seconds=1), outbox.URGENT)
    held.recipient_kind = "clinician"
    reply = _message(9, 1, now)
    async with db.transaction() as session:
        repo = Repository(session, claiming)
        await repo.enqueue([alert])
        await repo.enqueue([held])
        assert ([m.recipient_kind for m in repo.claimed], repo.queued) == (["clinician"], 0)
        second = _message(7, 2, now, outbox.URGENT)
        second.recipient_kind = "clinician"
        await repo.enqueue([second])  # behind the leased alert: a claim's
        assert (len(repo.claimed), repo.queued) == (1, 1)
    async with db.transaction() as session:
        repo = Repository(session)  # no courier: everything due is for a claim
        await repo.enqueue([reply])
        assert repo.queued == 1

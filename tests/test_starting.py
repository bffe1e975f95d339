"""Starting a chunk of due check-ins together (bot/app/conversations/starting.py) does to every check-in what
starting it alone does: the same holds, the same rows, the same opening messages under the
same keys. On a real SQLite file and a real PostgreSQL server."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.app.conversations.starting import HELD_BEHIND, HELD_INACTIVE
from bot.domain import conversation as core
from bot.storage.database import Database
from bot.storage.repository import Repository
from bot.storage.tables import Checkin, OutboundMessage, Patient
from tests.test_services import T0, Wired, rows, wire

NY = "America/New_York"  # T0 (09:00 UTC) is 05:00 there: quiet hours until 08:00
NY_MORNING = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)


async def _patient(db: Database, name: str, *, status: str = "active", zone: str = "UTC") -> int:
    async with db.transaction() as session:
        patient = Patient(
            display_name=name, timezone=zone, channel="console", address=name, status=status
        )
        await Repository(session).add(patient)
    assert patient.id is not None
    return patient.id


async def _checkin(
    db: Database, patient_id: int, instruments: tuple[str, ...], **columns: Any
) -> int:
    """A due check-in written directly (Services.ask refuses some of what a race can leave)."""
    async with db.transaction() as session:
        row = Checkin(
            patient_id=patient_id,
            idempotency_key=f"test:{uuid.uuid4().hex}",
            instruments=list(instruments),
            due_at=T0 - timedelta(minutes=1),
            expires_at=T0 + timedelta(days=1),
            state=core.to_json(core.Conversation(instruments)),
            **columns,
        )
        await Repository(session).add(row)
    assert row.id is not None
    return row.id


async def _scenario(db: Database, prefix: str) -> list[int]:
    """One of everything a chunk can meet, in claim order; the check-ins' ids."""
    normal = await _patient(db, f"{prefix}-normal")
    paused = await _patient(db, f"{prefix}-paused", status="paused")
    busy = await _patient(db, f"{prefix}-busy")
    quiet = await _patient(db, f"{prefix}-quiet", zone=NY)
    urgent = await _patient(db, f"{prefix}-urgent", zone=NY)
    twice = await _patient(db, f"{prefix}-twice")
    empty = await _patient(db, f"{prefix}-empty")
    other = await _patient(db, f"{prefix}-other")
    await _checkin(db, busy, ("gad7",), status="sent")  # open already
    return [
        await _checkin(db, normal, ("phq2",)),
        await _checkin(db, paused, ("phq2",)),
        await _checkin(db, busy, ("phq2",)),
        await _checkin(db, quiet, ("phq2",)),
        await _checkin(db, urgent, ("phq2",), ignore_quiet_hours=True),
        await _checkin(db, twice, ("phq2",)),
        await _checkin(db, twice, ("gad7",)),
        await _checkin(db, empty, ()),  # nothing to ask: completes at once (an event)
        await _checkin(db, empty, ("phq2",)),  # so this one may start after it
        await _checkin(db, other, ("phq2",), status="sent"),  # started meanwhile
        await _checkin(db, other, ("gad7",)),
    ]


async def _outcome(db: Database, ids: list[int], prefix: str) -> list[tuple[Any, ...]]:
    """What starting left, with ids replaced by positions and names by the patient's role."""
    checkins = {c.id: c for c in await rows(db, Checkin)}
    position = {checkin_id: n for n, checkin_id in enumerate(ids)}
    found: list[tuple[Any, ...]] = []
    for checkin_id in ids:
        c = checkins[checkin_id]
        found.append((c.status, c.lease_until, c.sent_at, c.next_reminder_at, c.state, c.version))
    for m in await rows(db, OutboundMessage):
        source, n = m.idempotency_key.removeprefix("begin").split(":")
        if int(source) in position and m.address.startswith(prefix):
            role = m.address.removeprefix(prefix)
            found.append((position[int(source)], n, role, m.body, m.payload, m.priority))
    return found


async def test_a_chunk_starts_each_check_in_as_starting_it_alone_does(db: Database) -> None:
    w = wire(db)
    together = await _scenario(db, "a")
    alone = await _scenario(db, "b")
    async with db.transaction() as session:
        assert await w.services.starting.start_chunk(Repository(session), together) == 5
    assert await w.services.starting.start_one_by_one(alone) == 5
    assert await _outcome(db, together, "a") == await _outcome(db, alone, "b")


async def test_what_a_chunk_holds_and_starts(db: Database) -> None:
    w = wire(db)
    ids = await _scenario(db, "a")
    async with db.transaction() as session:
        await w.services.starting.start_chunk(Repository(session), ids)
    by_id = {c.id: c for c in await rows(db, Checkin)}
    normal, paused, busy, quiet, urgent, first, second, empty, after, _, other = (
        by_id[i] for i in ids
    )
    assert [c.status for c in (normal, urgent, first, after)] == ["sent"] * 4
    assert empty.status == "completed"
    assert paused.lease_until == T0 + HELD_INACTIVE
    assert busy.lease_until == second.lease_until == other.lease_until == T0 + HELD_BEHIND
    assert quiet.status == "pending" and quiet.lease_until == NY_MORNING
    keys = {m.idempotency_key for m in await rows(db, OutboundMessage)}
    assert f"begin{normal.id}:1" in keys  # the first question, its introduction above it
    assert f"begin{normal.id}:0" not in keys  # (no message of its own)
    assert not any(k.startswith((f"begin{quiet.id}:", f"begin{second.id}:")) for k in keys)


async def test_starting_a_chunk_twice_sends_nothing_twice(db: Database) -> None:
    w = wire(db)
    ids = await _scenario(db, "a")
    counts = []
    for _ in range(2):
        async with db.transaction() as session:
            await w.services.starting.start_chunk(Repository(session), ids)
        counts.append(len(await rows(db, OutboundMessage)))
    assert counts == [5, 5]  # the openings of four check-ins (one message each), the
    # empty one's closing


async def test_a_failing_check_in_falls_back_and_the_rest_still_start(
    db: Database, caplog: Any
) -> None:
    w: Wired = wire(db)
    broken = await _checkin(db, await _patient(db, "broken"), ("no_such_instrument",))
    fine = [await _checkin(db, await _patient(db, f"fine{n}"), ("phq2",)) for n in range(3)]
    assert await w.services.starting.start_due() == 3
    by_id = {c.id: c for c in await rows(db, Checkin)}
    assert [by_id[i].status for i in fine] == ["sent"] * 3
    assert by_id[broken].status == "pending"
    assert "one by one now" in caplog.text
    assert f"check-in {broken} could not start" in caplog.text

"""Inbound messages an operator looks after: those set aside after failing to process (or
still waiting), and putting set-aside ones back for the recovery pass.

Nothing a patient wrote is read out: a listed message is its id, channel, time, attempts,
the exception's name and the patient it came from. Both steps are audited.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import col, select

from bot.app.operator.refusals import Refused
from bot.app.ports import Clock
from bot.domain.errors import NotFound
from bot.storage import checkins as q
from bot.storage.database import Database
from bot.storage.repository import SET_ASIDE, Repository
from bot.storage.tables import InboundMessage


@dataclass(frozen=True)
class HeldMessage:
    id: int
    channel: str
    received_at: datetime
    attempts: int
    problem: str | None  # the exception's name, for one set aside
    patient_id: int | None  # None: the sender is not a patient


async def list_messages(
    db: Database, clock: Clock, *, waiting: bool = False, limit: int = 100
) -> list[HeldMessage]:
    """Messages set aside (or, with `waiting`, not processed yet), oldest first."""
    statement = select(InboundMessage).order_by(col(InboundMessage.id)).limit(limit)
    if waiting:
        statement = statement.where(col(InboundMessage.processed_at).is_(None))
    else:
        statement = statement.where(col(InboundMessage.error).startswith(SET_ASIDE))
    found = []
    async with db.transaction() as session:
        for message in (await session.exec(statement)).all():
            assert message.id is not None
            patient = await q.patient_by_address(session, message.channel, message.sender)
            found.append(HeldMessage(
                message.id, message.channel, message.received_at, message.attempts,
                (message.error or "").removeprefix(SET_ASIDE) or None,
                patient.id if patient is not None else None,
            ))  # fmt: skip
        await Repository(session).audit(
            clock(), "operator", "inbound_listed", "inbound", waiting=waiting, count=len(found)
        )
    return found


async def retry(db: Database, clock: Clock, inbound_ids: Sequence[int]) -> list[int]:
    """Put set-aside messages back: the next recovery pass processes them again, with a
    fresh count of attempts. All or none: an id that is missing or not set aside refuses."""
    async with db.transaction() as session:
        repo = Repository(session)
        for inbound_id in inbound_ids:
            message = await session.get(InboundMessage, inbound_id)
            if message is None:
                raise NotFound("inbound message", inbound_id)
            if not (message.error or "").startswith(SET_ASIDE):
                raise Refused(
                    f"inbound message {inbound_id} is not set aside; only those are retried"
                )
            message.processed_at, message.error, message.attempts = None, None, 0
            await repo.add(message)
            await repo.audit(clock(), "operator", "inbound_retried", f"inbound:{inbound_id}")
    return list(inbound_ids)

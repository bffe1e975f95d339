"""The repository: small typed reads and writes inside one transaction.

A use case opens ``async with database.transaction() as session``, wraps the session in a
``Repository`` and calls these methods; the transaction commits or rolls back as a whole.
Writes that must be idempotent (inbox, answers, outbox, planned check-ins) are single
``INSERT ... ON CONFLICT DO NOTHING`` statements, never a check followed by an insert.
Answers are append-only (``bot.storage.answer_tables``): nothing here overwrites one.
"""

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import Table, update
from sqlalchemy import select as sa_select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.storage import audit as audit_chain
from bot.storage import outbox, prebuilt
from bot.storage.answer_tables import CURRENT, NewAnswer
from bot.storage.inbound_rows import new_inbound
from bot.storage.queued import NewOutbound, QueuedMessage
from bot.storage.tables import (
    Alert,
    Answer,
    AuditEvent,
    Checkin,
    InboundMessage,
    OutboundMessage,
    Patient,
    Score,
    set_lookup_hash,
)

Row = TypeVar("Row", bound=SQLModel)

_ANSWER_KEY = ("checkin_id", "item_key")


def _table(entity: type[SQLModel]) -> Table:
    """The entity's table, for plain Core statements (no ORM objects built or synced)."""
    table = entity.__table__  # type: ignore[attr-defined]
    assert isinstance(table, Table)
    return table


SET_ASIDE = "set_aside:"  # the error of an inbound message given up on, then its problem


class Repository:
    """Typed access to the tables for one transaction (the session's)."""

    def __init__(self, session: AsyncSession, claiming: outbox.Claiming | None = None) -> None:
        self.session = session
        self.dialect = session.get_bind().dialect.name
        self.claiming = claiming  # hand-off: what `enqueue` may lease to our deliverer
        self.claimed: list[outbox.Outgoing] = []  # ... and did, in id order
        self.queued = 0  # rows `enqueue` queued due without a lease (a claim must take them)
        self._connection: AsyncConnection | None = None

    async def connection(self) -> AsyncConnection:
        """The transaction's connection, for Core statements: asked of the session once
        (each asking costs ~40 calls; a turn's statements asked four times). Core
        statements on it run no autoflush: what they write depends on no pending object."""
        if self._connection is None:
            self._connection = await self.session.connection()
        return self._connection

    async def add(self, *rows: SQLModel) -> None:
        """Insert or update `rows` now (flushed, so ids are set)."""
        self.session.add_all(rows)
        await self.session.flush()

    # Inbox

    async def record_inbound(
        self,
        channel: str,
        provider_id: str,
        sender: str,
        text: str,
        received_at: datetime,
        kind: str = "text",
    ) -> int | None:
        """Store an inbound message once; its id, or None when (channel, provider_id) was
        seen before (see `bot.storage.inbound_rows.new_inbound`)."""
        row = await new_inbound(self.session, channel, provider_id, sender, text, received_at, kind)
        if row is None:
            return None
        statement = prebuilt.insert_returning_id(
            self.dialect, _table(InboundMessage), ("channel", "provider_hash")
        )
        found = await self.session.exec(statement, params=prebuilt.params(row.values()))
        new_id: int | None = found.scalars().first()
        return new_id

    async def mark_processed(
        self, inbound_id: int, now: datetime, error: str | None = None
    ) -> None:
        """Record that an inbound message was handled (with the error, if it failed)."""
        await self._update(InboundMessage, inbound_id, processed_at=now, error=error)

    async def count_failure(
        self, inbound_id: int, now: datetime, problem: str, give_up_at: int
    ) -> int:
        """One more failed attempt at processing an inbound message; how many there have
        been. At `give_up_at` the message is set aside: marked processed with the error
        ``set_aside:<problem>``, so it no longer blocks its sender's later messages nor
        the recovery pass (``checkin inbound retry`` puts it back)."""
        plain = _table(InboundMessage)
        attempts = (
            await self.session.exec(
                update(plain)
                .where(plain.c.id == inbound_id, plain.c.processed_at.is_(None))
                .values(attempts=plain.c.attempts + 1)
                .returning(plain.c.attempts)
            )
        ).scalar_one_or_none()
        if attempts is not None and attempts >= give_up_at:
            await self.mark_processed(inbound_id, now, error=f"{SET_ASIDE}{problem}")
        return attempts or 0

    # Patients and check-ins

    async def get_patient(self, patient_id: int) -> Patient | None:
        return await self.session.get(Patient, patient_id)

    async def lock_patient(self, patient_id: int) -> Patient | None:
        """Load the patient and hold its row lock until the transaction ends.

        PostgreSQL: ``SELECT ... FOR UPDATE``. SQLite has no row locks (SQLAlchemy leaves
        the clause out): the ``BEGIN IMMEDIATE`` transaction already serializes writers.
        """
        statement = (
            select(Patient)
            .where(Patient.id == patient_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        return (await self.session.exec(statement)).first()

    async def create_checkin(self, checkin: Checkin) -> Checkin | None:
        """Plan a check-in once; None when its idempotency key was already planned."""
        return await self._insert_new(checkin, ("idempotency_key",))

    async def get_checkin(self, checkin_id: int) -> Checkin | None:
        return await self.session.get(Checkin, checkin_id)

    async def checkins_for_patient(self, patient_id: int, limit: int = 50) -> list[Checkin]:
        """The patient's most recent check-ins, newest due first."""
        statement = (
            select(Checkin)
            .where(Checkin.patient_id == patient_id)
            .order_by(col(Checkin.due_at).desc(), col(Checkin.id).desc())
            .limit(limit)
        )
        return list((await self.session.exec(statement)).all())

    # Answers and scores

    async def save_answer(self, answer: Answer | NewAnswer) -> bool:
        """Store the answer to one item; False (and nothing written) if it has one already."""
        statement = prebuilt.insert_returning_id(self.dialect, _table(Answer), _ANSWER_KEY, CURRENT)
        connection = await self.connection()
        found = await connection.execute(statement, prebuilt.params(_values(answer)))
        return found.first() is not None

    async def supersede_answer(self, answer: Answer | NewAnswer) -> tuple[int, int | None]:
        """Store a new answer to an item the patient went BACK to; the item's current answer
        (if any) is marked superseded by it, at the new answer's time, and otherwise kept as
        it was. The new row's id, and the id of the one it superseded."""
        table = _table(Answer)
        current = (table.c.checkin_id == answer.checkin_id) & (table.c.item_key == answer.item_key)
        old_id: int | None = (
            await self.session.exec(
                update(table)
                .where(current, table.c.superseded_at.is_(None))
                .values(superseded_at=answer.answered_at)
                .returning(table.c.id)
            )
        ).scalar_one_or_none()
        inserted = self._insert(table).values(_values(answer)).returning(table.c.id)
        new_id: int = (await self.session.exec(inserted)).scalar_one()
        if old_id is not None:
            await self._update(Answer, old_id, superseded_by=new_id)
        return new_id, old_id

    async def answers_for_checkin(self, checkin_id: int, *, every: bool = False) -> list[Answer]:
        """The check-in's current answers in the order given (`every`: the superseded too)."""
        statement = select(Answer).where(Answer.checkin_id == checkin_id)
        if not every:
            statement = statement.where(col(Answer.superseded_at).is_(None))
        return list((await self.session.exec(statement.order_by(col(Answer.id)))).all())

    async def answers_for_checkins(self, checkin_ids: Sequence[int]) -> list[Answer]:
        """Every answer to these check-ins, superseded ones included, in the order given."""
        statement = select(Answer).where(col(Answer.checkin_id).in_(checkin_ids))
        return list((await self.session.exec(statement.order_by(col(Answer.id)))).all())

    async def scores_for_patient(
        self, patient_id: int, instrument: str | None = None
    ) -> list[Score]:
        """The patient's scores, oldest first (the order a trend is drawn in)."""
        statement = select(Score).where(Score.patient_id == patient_id)
        if instrument is not None:
            statement = statement.where(Score.instrument == instrument)
        statement = statement.order_by(col(Score.completed_at), col(Score.id))
        return list((await self.session.exec(statement)).all())

    async def alerts_for_patient(self, patient_id: int, status: str | None = None) -> list[Alert]:
        """The patient's alerts, newest first, optionally only those in one status."""
        statement = select(Alert).where(Alert.patient_id == patient_id)
        if status is not None:
            statement = statement.where(Alert.status == status)
        statement = statement.order_by(col(Alert.created_at).desc(), col(Alert.id).desc())
        return list((await self.session.exec(statement)).all())

    # Outbox

    async def enqueue(self, rows: Sequence[NewOutbound]) -> list[int]:
        """Queue messages in the given order; rows whose idempotency key exists are skipped.

        Returns the ids of the rows actually queued, ascending: the order each recipient
        receives them in. Only the ids come back (a whole row would be decrypted again).
        With `claiming` (a hand-off), rows it covers are leased as they are inserted and
        added, with their ids, to `claimed`.
        """
        if not rows:
            return []
        values, claiming = self.outbox_values(rows)
        # one statement for a turn's messages: one INSERT with a VALUES row each (the
        # driver's "insertmanyvalues"), which both databases number in the order given;
        # the statement is fixed and its parameters vary, so it is built once
        statement = prebuilt.enqueue(self.dialect, leasing=claiming is not None)
        result = await (await self.connection()).execute(statement, values)
        return self.enqueued([tuple(r) for r in result.all()], rows, claiming)

    def outbox_values(
        self, rows: Sequence[NewOutbound]
    ) -> tuple[list[dict[str, Any]], outbox.Claiming | None]:
        """`enqueue`'s parameters for `rows`, and the hand-off that leases them (if any)."""
        values = [_values(row) for row in rows]
        claiming = self.claiming if self.claiming and self.claiming.covers(rows) else None
        if claiming is not None:
            values = [v | claiming.leased(row) for v, row in zip(values, rows, strict=True)]
        return values, claiming

    def enqueued(
        self,
        returned: Sequence[tuple[Any, ...]],
        rows: Sequence[NewOutbound],
        claiming: outbox.Claiming | None,
    ) -> list[int]:
        """Count what `enqueue`'s INSERT returned (id, status, key) as queued, or claimed
        for the hand-off; the ids, ascending."""
        inserted = sorted(returned)
        claimed = claiming.collect(inserted, rows) if claiming is not None else []
        self.claimed += claimed
        due_by = self.claiming  # (its clock, even when these rows were not leased)
        later = due_by.not_due(inserted, rows, claimed) if due_by is not None else 0
        self.queued += len(inserted) - len(claimed) - later
        return [row_id for row_id, *_ in inserted]

    async def claim_outbox(
        self, now: datetime, limit: int, lease: timedelta
    ) -> list[outbox.Outgoing]:
        """Take up to `limit` due messages for sending, each leased until ``now + lease``,
        with the ready messages behind each in its recipient's line.

        The heads: the most urgent (``priority``) first, then the oldest (see
        bot/storage/outbox.py). PostgreSQL locks the chosen heads with ``FOR UPDATE SKIP
        LOCKED`` so concurrent workers take different lines (what is behind a head is never
        due while the head is unfinished); SQLite claims in one ``UPDATE``. Returned line
        by line (`outbox.by_line`), only the columns sending needs.
        """
        due = {"now": now, "limit": limit}
        leased = {"lease_until": now + lease, "now": now}
        if self.dialect == "postgresql":
            found = await self.session.exec(outbox.DUE_IDS_LOCKED, params=due)
            ids = list(found.all())
            if not ids:
                return []
            result = await self.session.exec(outbox.LEASE_IDS, params={"ids": ids, **leased})
        else:
            result = await self.session.exec(outbox.LEASE_DUE, params={**due, **leased})
        return outbox.by_line([outbox.Outgoing(*row) for row in result.all()])

    async def renew_leases(
        self, ids: Sequence[int], held_until: datetime, until: datetime
    ) -> set[int]:
        """Extend to `until` the leases of messages `ids` still being sent under the lease
        that ends `held_until` (ours); the ids renewed. A message sent, given up, or
        claimed again by another worker after our lease ran out is left alone."""
        if not ids:
            return set()
        table = prebuilt.OUTBOX_TABLE
        # rows locked right now are skipped, not waited for: one being marked sent needs
        # no renewal, and waiting could deadlock with that commit (PostgreSQL)
        ours = (
            sa_select(table.c.id)
            .where(
                table.c.id.in_(ids),
                table.c.status == "sending",
                table.c.lease_until == held_until,
            )
            .with_for_update(skip_locked=True)
        )
        statement = (
            update(table)
            .where(table.c.id.in_(ours.scalar_subquery()))
            .values(lease_until=until)
            .returning(table.c.id)
        )
        return set((await self.session.exec(statement)).scalars().all())

    async def mark_sent(self, message_id: int, provider_id: str | None, now: datetime) -> None:
        """The provider accepted the message."""
        await self.mark_sent_all([(message_id, provider_id, now)])

    async def mark_sent_all(self, sent: Sequence[tuple[int, str | None, datetime]]) -> None:
        """The provider accepted these messages (id, provider's id, when): one statement
        run for each (``executemany``: on SQLite one trip to its thread for them all)."""
        if params := prebuilt.sent_params(sent):  # (a list of one runs as a plain execute)
            await self.session.exec(prebuilt.MARK_SENT, params=params)

    async def mark_retry(self, message_id: int, error: str, next_attempt_at: datetime) -> None:
        """Sending failed for now; try again at `next_attempt_at` (still head of its line)."""
        await self._update(
            OutboundMessage,
            message_id,
            status="queued",
            last_error=error,
            next_attempt_at=next_attempt_at,
            lease_until=None,
        )

    async def mark_dead(self, message_id: int, error: str) -> None:
        """Give up on the message; the recipient's next message may go."""
        await self._update(
            OutboundMessage, message_id, status="dead", last_error=error, lease_until=None
        )

    # Audit

    async def audit(
        self, at: datetime, actor: str, action: str, subject: str, **detail: Any
    ) -> None:
        """Append an audit event (no health information in `detail`); it joins the hash
        chain when this transaction commits (see bot/storage/audit.py)."""
        row = AuditEvent(at=at, actor=actor, action=action, subject=subject, detail=detail)
        audit_chain.append(self.session, row)

    # Helpers

    def _insert(self, table: type[SQLModel] | Table) -> sqlite.Insert | postgresql.Insert:
        if self.dialect == "postgresql":
            return postgresql.insert(table)
        return sqlite.insert(table)

    async def insert_new(self, row: Row, unique: Sequence[str]) -> Row | None:
        """Insert `row` unless one with the same `unique` columns exists (then None)."""
        return await self._insert_new(row, unique)

    async def _insert_new(self, row: Row, unique: Sequence[str]) -> Row | None:
        """Insert `row` unless one with the same `unique` columns exists; the stored row."""
        table = type(row)
        statement = (
            self._insert(table)
            .values(_values(row))
            .on_conflict_do_nothing(index_elements=unique)
            .returning(table)
        )
        stored: Row | None = (await self.session.exec(statement)).scalars().first()
        return stored

    async def _update(self, table: type[SQLModel], row_id: int, **values: Any) -> None:
        """A plain UPDATE by id: on the table, not the entity, so the ORM neither fetches
        the row back nor looks for it in the session (rows updated this way are not read
        again in the same transaction)."""
        plain = _table(table)
        await self.session.exec(update(plain).where(plain.c.id == row_id).values(**values))


def _values(row: SQLModel | QueuedMessage | NewAnswer) -> dict[str, Any]:
    """The row's column values for an INSERT (the database assigns the id), its lookup hash
    set (a Core INSERT runs no ORM flush events)."""
    if isinstance(row, QueuedMessage | NewAnswer):
        return row.values()
    set_lookup_hash(row)
    return row.model_dump(exclude={"id"})

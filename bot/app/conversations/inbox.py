"""Inbound messages: recorded before anything else happens to them, then processed under
the sender's row lock, in the order they arrived; recovered after a crash; set aside, with
an alert, when one keeps failing.

* :meth:`Inbox.handle_inbound` records a message and processes it in one transaction (if
  processing fails, the record is committed alone), for a provider that sends a message
  again until it is acknowledged (Telegram): the webhook answers after the commit.
* :meth:`Inbox.receive` records a message and nothing else (its own, short transaction),
  for a provider that may not send it again (Twilio): a crash while processing cannot
  lose it. :meth:`Inbox.process` then handles it. Processing a message twice is
  impossible: ``processed_at`` is set in the same transaction, under the patient lock.
* :meth:`Inbox.process_pending` is the tick's recovery pass.

In a process whose deliverer runs a courier (``ctx.handoff``), the rows a message's
processing queues for the patient are leased to that deliverer in the same transaction
and handed to it after the commit: no claim reads them back (see bot/storage/outbox.py).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from bot.app.context import Context
from bot.app.conversations.replies import from_patient
from bot.app.conversations.strangers import from_stranger
from bot.app.outbox.edits import edit_targets
from bot.storage import checkins as q
from bot.storage.inbound import record_first
from bot.storage.outbox import Claiming
from bot.storage.repository import Repository
from bot.storage.tables import Checkin, InboundMessage, Patient

log = logging.getLogger(__name__)
# Recovery leaves a message this long to the webhook that recorded it: processing one takes
# well under a second, and a recovery pass that took in-flight messages too would process
# every one of them twice over under load (harmless, but twice the database work).
RECOVERY_GRACE = timedelta(seconds=10)
INBOUND_ATTEMPTS = 5  # recovery passes at a message that fails before it is set aside
# Dropped from stored text: control characters but newline and tab; UTF-16 surrogates (a
# lone one cannot be encoded as UTF-8, so neither database could store the text); and the
# Unicode non-characters (U+FDD0-U+FDEF and the last two code points of every plane).
_CONTROL = dict.fromkeys(c for c in range(32) if chr(c) not in "\n\t")
_UNSTORABLE = _CONTROL | dict.fromkeys(range(0xD800, 0xE000)) | dict.fromkeys(range(0xFDD0, 0xFDF0))
_UNSTORABLE |= dict.fromkeys(p + e for p in range(0, 0x110000, 0x10000) for e in (0xFFFE, 0xFFFF))


@dataclass(frozen=True)
class Inbound:
    channel: str
    provider_id: str
    sender: str
    text: str
    received_at: datetime
    kind: str = "text"  # "button": text is "<item key>=<value>"; "member": the new chat status


def clean_text(text: str) -> str:
    """Text as stored: without NUL and other control characters (PostgreSQL refuses NUL,
    and they carry no meaning a patient intended), without unpaired surrogates and other
    non-characters; at most 4,000 characters."""
    return text.translate(_UNSTORABLE)[:4000]


@dataclass(frozen=True)
class Inbox:
    ctx: Context
    recovery_grace: timedelta = RECOVERY_GRACE

    async def receive(self, inbound: Inbound) -> int | None:
        """Record the message durably and nothing else; its id, or None if it was already
        recorded."""
        async with self.ctx.db.transaction() as session:
            return await _record(Repository(session), inbound)

    async def handle_inbound(self, inbound: Inbound) -> bool:
        """Record the message and process it, in one transaction. False when it had been
        recorded before (a provider's redelivery: nothing is done).

        The sender's patient row is locked before the message is numbered, so two
        messages from one patient arriving together on PostgreSQL are numbered in the
        order they are processed in. A patient's message with none of theirs waiting
        before it (the usual case) is inserted already processed, by the statement that
        looks for those (bot/storage/inbound.py): it commits with its processing or not
        at all. If processing fails, the transaction is rolled back and the message
        recorded alone: the failure is logged (by type: an error could quote the
        patient) and the recovery pass processes it later. If even that fails (the
        database is away), this raises: the webhook answers 5xx without acknowledging,
        and the provider sends the message again."""
        with self.ctx.underway.one():
            return await self._handle_inbound(inbound)

    async def _handle_inbound(self, inbound: Inbound) -> bool:
        try:
            async with self.ctx.db.transaction() as session:
                repo = Repository(session, self._claiming())
                found = await q.patient_with_open_checkin(session, inbound.channel, inbound.sender)
                if found is None:
                    inbound_id = await _record(repo, inbound)
                    if inbound_id is not None:
                        await self._process_locked(
                            repo, None, inbound.channel, inbound.sender, inbound_id
                        )
                else:
                    inbound_id = await self._record_and_process(
                        repo, found.patient, found.checkin, inbound
                    )
                asked = found.asked if found is not None else None
                edits = await edit_targets(session, repo.claimed, asked)
            self._hand_over(repo, edits)
            return inbound_id is not None
        except Exception as exc:
            failure = type(exc).__name__
        recorded = await self.receive(inbound)  # raises when the database is away
        if recorded is not None:
            log.error("inbound %s left for recovery (%s)", recorded, failure)
        return recorded is not None

    async def _record_and_process(
        self, repo: Repository, patient: Patient, open_now: Checkin | None, inbound: Inbound
    ) -> int | None:
        """Record a patient's message and process it, the patient's row locked (and
        `open_now` the check-in open then, read with it); its id, or None if it was
        recorded before. Usually nothing of theirs is waiting: the message is stored
        already processed and taken at once (neither read back nor marked after).
        Otherwise those waiting are processed first, in order, then this one (the check-in
        read again for each)."""
        now = self.ctx.clock()
        message = await record_first(repo, **_stored(inbound), now=now)
        if message is None or message.id is None:
            return None
        if message.processed_at is None:
            await self._process_locked(repo, patient, inbound.channel, inbound.sender, message.id)
        else:
            await from_patient(self.ctx, repo, patient, message, now, open_now)
        return message.id

    async def process(self, inbound_id: int) -> None:
        """Handle a recorded message, and before it any earlier one from the same sender
        still waiting, so a patient's replies are taken in the order they arrived even when
        several workers pick them up at once."""
        with self.ctx.underway.one():
            await self._process(inbound_id)

    async def _process(self, inbound_id: int) -> None:
        async with self.ctx.db.transaction() as session:
            repo = Repository(session, self._claiming())
            message = await session.get(InboundMessage, inbound_id)
            if message is None or message.processed_at is not None:
                return
            patient = await q.patient_by_address(
                session, message.channel, message.sender, lock=True
            )
            await self._process_locked(repo, patient, message.channel, message.sender, inbound_id)
            edits = await edit_targets(session, repo.claimed)
        self._hand_over(repo, edits)

    def _claiming(self) -> Claiming | None:
        return self.ctx.handoff.claiming() if self.ctx.handoff is not None else None

    def _hand_over(self, repo: Repository, edits: dict[int, str | None]) -> None:
        """After the commit: the rows leased to this process's deliverer are its to send
        (and it is woken for any others queued)."""
        if self.ctx.handoff is not None:  # (a courier that started during the turn
            # leased nothing of it, but must still be woken for what it queued)
            self.ctx.handoff.take(repo.claimed, edits, more=repo.queued > 0)

    async def process_pending(self, limit: int = 100) -> int:
        """Process messages recorded but not processed (after a crash) at least
        `recovery_grace` ago; how many there were.

        Each message is isolated: one that fails is logged (by id, nothing it said) and left
        for the next pass, and the others go on, so one patient's problem never holds up
        another patient's check-ins or crisis messages. One that fails INBOUND_ATTEMPTS
        passes is set aside (see `_failed`)."""
        async with self.ctx.db.transaction() as session:
            since = self.ctx.clock() - self.recovery_grace
            ids = await q.unprocessed_inbound(session, limit, since)
        counted: set[int] = set()
        for inbound_id in ids:
            try:
                await self.process(inbound_id)
            except Exception as exc:
                await self._failed(inbound_id, type(exc).__name__, counted)
        return len(ids)

    async def _process_locked(
        self, repo: Repository, patient: Patient | None, channel: str, sender: str, up_to: int
    ) -> None:
        """Process the sender's waiting messages up to `up_to`, the patient's row locked
        (None: the sender is not a patient)."""
        now = self.ctx.clock()
        if patient is None:
            message = await repo.session.get(InboundMessage, up_to)
            assert message is not None
            note = await from_stranger(self.ctx, repo, message, now)
            await repo.mark_processed(up_to, now, error=note)
            return
        waiting = await q.unprocessed_from(repo.session, channel, sender, up_to)
        for earlier in waiting:  # empty if another worker processed them while we waited
            assert earlier.id is not None
            await from_patient(self.ctx, repo, patient, earlier, now)
            await repo.mark_processed(earlier.id, now)

    async def _failed(self, inbound_id: int, problem: str, counted: set[int]) -> None:
        """Count a failed recovery attempt against the message that failed: the oldest its
        sender has waiting (processing a message processes those before it first), once a
        pass, under the patient's lock (see `_head_of_line`): one processed meanwhile is
        not counted. After INBOUND_ATTEMPTS that message is set aside: left waiting, it
        would block its sender's later messages and, with enough like it, the recovery
        pass itself. Logged by id and exception only; the patient's clinician gets an urgent
        alert, since what the message said (perhaps an answer that matters) is unknown."""
        try:
            async with self.ctx.db.transaction() as session:
                message, patient = await _head_of_line(session, inbound_id) or (None, None)
                if message is None or message.id is None or message.id in counted:
                    return
                head = message.id
                counted.add(head)
                repo, now = Repository(session), self.ctx.clock()
                attempts = await repo.count_failure(head, now, problem, INBOUND_ATTEMPTS)
                alerting = self.ctx.alerting
                if attempts >= INBOUND_ATTEMPTS and alerting is not None and patient is not None:
                    await alerting.message_set_aside(repo, patient, now)
        except Exception as exc:  # the database itself failing: the next pass tries again
            log.error("inbound %s could not be processed (%s, then %s)",
                      inbound_id, problem, type(exc).__name__)  # fmt: skip
            return
        if attempts >= INBOUND_ATTEMPTS:
            log.error(
                "inbound %s set aside after %d failed attempts (%s); its sender's later "
                "messages go on. `checkin inbound list` shows it, `checkin inbound retry %s` "
                "tries it again",
                head, attempts, problem, head,
            )  # fmt: skip
        else:
            log.error("inbound %s could not be processed (%s; attempt %d of %d)",
                      head, problem, attempts, INBOUND_ATTEMPTS)  # fmt: skip


async def _record(repo: Repository, inbound: Inbound) -> int | None:
    return await repo.record_inbound(**_stored(inbound))


def _stored(inbound: Inbound) -> dict[str, Any]:
    """What is recorded of an inbound message (its text cleaned)."""
    return {
        "channel": inbound.channel,
        "provider_id": inbound.provider_id,
        "sender": inbound.sender,
        "text": clean_text(inbound.text),
        "received_at": inbound.received_at,
        "kind": inbound.kind,
    }


async def _head_of_line(
    session: AsyncSession, inbound_id: int
) -> tuple[InboundMessage, Patient | None] | None:
    """The oldest unprocessed message of `inbound_id`'s sender, up to it, and the sender's
    patient (None: a stranger), their row locked first; None when it was processed
    meanwhile (perhaps by a turn the lock waited for). The lock comes before any write to
    the sender's messages, as in a turn: a pass that counted an attempt first, then locked
    the patient to raise the set-aside alert, deadlocked on PostgreSQL with a turn
    processing that message (it holds the patient, then marks the message)."""
    message = await session.get(InboundMessage, inbound_id)
    if message is None or message.processed_at is not None:
        return None
    sender = message.channel, message.sender
    patient = await q.patient_by_address(session, *sender, lock=True)
    waiting = await q.unprocessed_from(session, *sender, inbound_id)  # (read after the lock)
    return (waiting[0], patient) if waiting else None

"""Use cases: each loads what it needs, asks the pure core, and saves the outcome together
with the messages it causes (the outbox) in one transaction.

* :meth:`Services.handle_inbound` records an inbound message and processes it in one
  transaction (if processing fails, the record is committed alone), for a provider that
  sends a message again until it is acknowledged (Telegram): the webhook answers after
  the commit.
* :meth:`Services.receive` records an inbound message and nothing else (its own, short
  transaction), for a provider that may not send it again (Twilio): a crash while
  processing cannot lose it. :meth:`Services.process` then handles it: lock the
  patient's row, step the conversation, write answers, scores, state and replies, mark
  the message processed. Processing a message twice is impossible: ``processed_at`` is
  set in the same transaction, under the patient lock.
* :meth:`Services.start_due` and :meth:`Services.expire_due` are what the scheduler tick
  calls; :meth:`Services.ask` queues a check-in.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlmodel.ext.asyncio.session import AsyncSession

from bot.app.alerting import Alerting
from bot.app.enrollment import (
    ATTEMPTS_LIMITED,
    CODE_REFUSED,
    redeem,
    start_parameter,
    too_many_attempts,
)
from bot.app.planning import CATCH_UP_S
from bot.app.ports import Clock
from bot.config import Clinic
from bot.domain import conversation as core
from bot.domain import events as ev
from bot.domain.errors import ConfigError, NotFound
from bot.domain.instruments import BloodPressure
from bot.domain.parsing import normalize, parse_command
from bot.domain.schedule import QuietHours, defer, in_quiet_hours
from bot.instruments import Catalog
from bot.rendering.renderer import Renderer
from bot.storage import checkins as q
from bot.storage import outbox
from bot.storage.database import Database
from bot.storage.repository import Repository
from bot.storage.tables import Answer, Checkin, InboundMessage, OutboundMessage, Patient, Score

log = logging.getLogger(__name__)
YES = frozenset({"yes", "y", "si", "s"})  # replies that accept an SMS invitation
START_LEASE = timedelta(minutes=2)  # a worker starting a check-in holds it this long
# Recovery leaves a message this long to the webhook that recorded it: processing one takes
# well under a second, and a recovery pass that took in-flight messages too would process
# every one of them twice over under load (harmless, but twice the database work).
RECOVERY_GRACE = timedelta(seconds=10)
INBOUND_ATTEMPTS = 5  # recovery passes at a message that fails before it is set aside
HELD_BEHIND = timedelta(minutes=5)  # looked at again this often while another one is open
HELD_INACTIVE = timedelta(hours=1)  # ... while the patient is paused or not yet consented


@dataclass(frozen=True)
class Inbound:
    channel: str
    provider_id: str
    sender: str
    text: str
    received_at: datetime
    kind: str = "text"  # "button": text is "<item key>=<value>"; "member": the new chat status


@dataclass
class Services:
    db: Database
    catalog: Catalog
    renderer: Renderer
    clinic: Clinic
    clock: Clock
    expire_after: timedelta = timedelta(hours=24)
    alerting: Alerting | None = None
    start_lease: timedelta = START_LEASE
    recovery_grace: timedelta = RECOVERY_GRACE
    catch_up_s: float = CATCH_UP_S  # the start stage claims again while batches are full

    # ---- inbound ---------------------------------------------------------------------

    async def receive(self, inbound: Inbound) -> int | None:
        """Record the message durably and nothing else; its id, or None if it was already
        recorded."""
        async with self.db.transaction() as session:
            return await self._record_inbound(Repository(session), inbound)

    async def handle_inbound(self, inbound: Inbound) -> bool:
        """Record the message and process it, in one transaction. False when it had been
        recorded before (a provider's redelivery: nothing is done).

        The sender's patient row is locked before the message is numbered, so two
        messages from one patient arriving together on PostgreSQL are numbered in the
        order they are processed in. If processing fails, the transaction is rolled back
        and the message recorded alone: the failure is logged (by type: an error could
        quote the patient) and the recovery pass processes it later. If even that fails
        (the database is away), this raises: the webhook answers 5xx without
        acknowledging, and the provider sends the message again."""
        try:
            async with self.db.transaction() as session:
                repo = Repository(session)
                patient = await q.patient_by_address(
                    session, inbound.channel, inbound.sender, lock=True
                )
                inbound_id = await self._record_inbound(repo, inbound)
                if inbound_id is not None:
                    await self._process_locked(
                        repo, patient, inbound.channel, inbound.sender, inbound_id
                    )
            return inbound_id is not None
        except Exception as exc:
            failure = type(exc).__name__
        recorded = await self.receive(inbound)  # raises when the database is away
        if recorded is not None:
            log.error("inbound %s left for recovery (%s)", recorded, failure)
        return recorded is not None

    async def process(self, inbound_id: int) -> None:
        """Handle a recorded message, and before it any earlier one from the same sender
        still waiting, so a patient's replies are taken in the order they arrived even when
        several workers pick them up at once."""
        async with self.db.transaction() as session:
            repo = Repository(session)
            message = await session.get(InboundMessage, inbound_id)
            if message is None or message.processed_at is not None:
                return
            patient = await q.patient_by_address(
                session, message.channel, message.sender, lock=True
            )
            await self._process_locked(repo, patient, message.channel, message.sender, inbound_id)

    async def _record_inbound(self, repo: Repository, inbound: Inbound) -> int | None:
        return await repo.record_inbound(
            inbound.channel,
            inbound.provider_id,
            inbound.sender,
            clean_text(inbound.text),
            inbound.received_at,
            kind=inbound.kind,
        )

    async def _process_locked(
        self, repo: Repository, patient: Patient | None, channel: str, sender: str, up_to: int
    ) -> None:
        """Process the sender's waiting messages up to `up_to`, the patient's row locked
        (None: the sender is not a patient)."""
        now = self.clock()
        if patient is None:
            message = await repo.session.get(InboundMessage, up_to)
            assert message is not None
            note = await self._from_stranger(repo, message, now)
            await repo.mark_processed(up_to, now, error=note)
            return
        waiting = await q.unprocessed_from(repo.session, channel, sender, up_to)
        for earlier in waiting:  # empty if another worker processed them while we waited
            assert earlier.id is not None
            await self._from_patient(repo, patient, earlier, now)
            await repo.mark_processed(earlier.id, now)

    async def process_pending(self, limit: int = 100) -> int:
        """Process messages recorded but not processed (after a crash) at least
        `recovery_grace` ago; how many there were.

        Each message is isolated: one that fails is logged (by id, nothing it said) and left
        for the next pass, and the others go on, so one patient's problem never holds up
        another patient's check-ins or crisis messages. One that fails INBOUND_ATTEMPTS
        passes is set aside (see `_failed`)."""
        async with self.db.transaction() as session:
            ids = await q.unprocessed_inbound(session, limit, self.clock() - self.recovery_grace)
        counted: set[int] = set()
        for inbound_id in ids:
            try:
                await self.process(inbound_id)
            except Exception as exc:
                await self._failed(inbound_id, type(exc).__name__, counted)
        return len(ids)

    async def _failed(self, inbound_id: int, problem: str, counted: set[int]) -> None:
        """Count a failed recovery attempt against the message that failed: the oldest its
        sender has waiting (processing a message processes those before it first), once a
        pass. After INBOUND_ATTEMPTS that message is set aside: left waiting, it would
        block its sender's later messages and, with enough like it, the recovery pass
        itself. Logged by id and exception only; the patient's clinician gets an urgent
        alert, since what the message said (perhaps an answer that matters) is unknown."""
        try:
            async with self.db.transaction() as session:
                message = await self._head_of_line(session, inbound_id)
                if message is None or message.id is None or message.id in counted:
                    return
                head = message.id
                counted.add(head)
                repo, now = Repository(session), self.clock()
                attempts = await repo.count_failure(head, now, problem, INBOUND_ATTEMPTS)
                if attempts >= INBOUND_ATTEMPTS and self.alerting is not None:
                    sender = message.channel, message.sender
                    if (patient := await q.patient_by_address(session, *sender)) is not None:
                        await self.alerting.message_set_aside(repo, patient, now)
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

    @staticmethod
    async def _head_of_line(session: AsyncSession, inbound_id: int) -> InboundMessage | None:
        """The oldest unprocessed message of `inbound_id`'s sender, up to it (None: it was
        processed meanwhile)."""
        message = await session.get(InboundMessage, inbound_id)
        if message is None or message.processed_at is not None:
            return None
        waiting = await q.unprocessed_from(session, message.channel, message.sender, inbound_id)
        return waiting[0] if waiting else message

    async def _from_patient(
        self, repo: Repository, patient: Patient, message: InboundMessage, now: datetime
    ) -> None:
        assert patient.id is not None and message.id is not None
        if message.kind == "member":
            await self._membership(repo, patient, message.text, now)
            return
        checkin = await q.open_checkin(repo.session, patient.id)
        opted_out = patient.status == "opted_out"
        source = f"in{message.id}"
        if message.kind == "button":
            if checkin is None or opted_out:
                return  # a button on a closed check-in: nothing to do
            item, _, value = message.text.partition("=")
            transition = core.press(
                core.from_json(checkin.state), item, _int(value), self._setting(patient), now
            )
            await self._apply(repo, patient, checkin, transition, source, now, message.id)
            return
        if patient.status == "invited":
            await self._consent(repo, patient, message, now)
            return
        text = "/start" if start_parameter(message.text) else message.text
        if opted_out and normalize(text) in YES:
            text = "start"  # SMS: YES opts back in, as carriers expect
        if checkin is None or opted_out:
            intents, events = core.outside(text, patient.language, opted_out, now)
            empty = core.Transition(core.Conversation(()), intents, events)
            await self._apply(repo, patient, None, empty, source, now, message.id)
            return
        transition = core.step(core.from_json(checkin.state), text, self._setting(patient), now)
        await self._apply(repo, patient, checkin, transition, source, now, message.id)

    async def _consent(
        self, repo: Repository, patient: Patient, message: InboundMessage, now: datetime
    ) -> None:
        """An invited SMS patient answers the invitation: YES starts, STOP declines, anything
        else repeats the question. Nothing else is sent before YES; the answer is audited."""
        assert patient.id is not None
        source = f"in{message.id}"
        command = parse_command(message.text, patient.language)
        if normalize(message.text) in YES or (command is not None and command.name == "start"):
            patient.status, patient.consent_at = "active", now
            await repo.add(patient)
            await repo.audit(now, "patient", "consent_given", f"patient:{patient.id}")
            await repo.enqueue(self._outbox(patient, (ev.Enrolled(),), source, now))
        elif command is not None and command.name == "stop":
            patient.status = "opted_out"
            await repo.add(patient)
            await repo.audit(now, "patient", "consent_refused", f"patient:{patient.id}")
            await repo.enqueue(self._outbox(patient, (ev.OptOutConfirmed(),), source, now))
        else:
            await repo.enqueue(self._outbox(patient, (ev.Invitation(),), source, now))

    async def invite(self, patient_id: int) -> None:
        """Send an SMS patient the invitation (the only message before they reply YES)."""
        async with self.db.transaction() as session:
            repo = Repository(session)
            patient = await repo.lock_patient(patient_id)
            if patient is None:
                raise NotFound("patient", patient_id)
            now = self.clock()
            key = f"invite{patient_id}:{now:%Y%m%dT%H%M%S}"
            await repo.enqueue(self._outbox(patient, (ev.Invitation(),), key, now))
            await repo.audit(now, "operator", "invited", f"patient:{patient_id}")

    async def _membership(
        self, repo: Repository, patient: Patient, status: str, now: datetime
    ) -> None:
        """Telegram's my_chat_member: the patient blocked (kicked) or unblocked the bot."""
        if status == "kicked" and patient.status != "blocked":
            patient.status = "blocked"
        elif status == "member" and patient.status == "blocked":
            patient.status = "active"
        else:
            return
        await repo.add(patient)
        await repo.audit(
            now,
            "patient",
            f"bot_{'blocked' if status == 'kicked' else 'unblocked'}",
            f"patient:{patient.id}",
        )

    async def _from_stranger(
        self, repo: Repository, message: InboundMessage, now: datetime
    ) -> str | None:
        """Someone not (yet) linked: an enrolment code, a clinician, or a stranger told nothing.
        Returns the note kept on the inbound record (None when all went well)."""
        assert message.id is not None
        session = repo.session
        clinician = await q.clinician_by_address(session, message.channel, message.sender)
        if clinician is not None:
            if self.alerting is not None and message.kind in ("text", "button"):
                await self.alerting.clinician_says(
                    repo, clinician, message.text, f"in{message.id}", now, kind=message.kind
                )
            return None
        code = start_parameter(message.text) if message.kind == "text" else None
        intent: ev.Intent
        note: str | None = "unknown sender"
        linked = None
        if code is None:
            if message.kind != "text" or message.channel != "telegram":
                return note
            intent = ev.Stranger()
        else:
            limited = await too_many_attempts(session, message.channel, message.sender, now)
            if not limited:
                linked = await redeem(session, code, message.channel, message.sender, now)
            if linked is not None and linked.patient is not None:
                rows = self._outbox(linked.patient, (ev.Enrolled(),), f"in{message.id}", now)
                await repo.enqueue(rows)
                return None
            intent = ev.Enrolled("clinician") if linked is not None else ev.EnrollRefused()
            note = None if linked is not None else ATTEMPTS_LIMITED if limited else CODE_REFUSED
        rendered = self.renderer.render(intent, message.channel, "en")
        assert rendered is not None
        clinician = linked.clinician if linked is not None else None
        await repo.enqueue([
            OutboundMessage(
                channel=message.channel,
                recipient_kind="clinician" if clinician is not None else "stranger",
                recipient_id=(clinician.id or 0) if clinician is not None else 0,
                address=message.sender,
                body=rendered.text,
                payload={"intent": type(intent).__name__, "html": rendered.html},
                idempotency_key=f"in{message.id}:0",
                next_attempt_at=now,
                priority=outbox.REPLY,
            )
        ])  # fmt: skip
        return note

    # ---- check-ins -------------------------------------------------------------------

    async def ask(
        self,
        patient_id: int,
        instruments: Sequence[str],
        due_at: datetime | None = None,
        key: str | None = None,
        *,
        ignore_quiet_hours: bool = False,
    ) -> Checkin:
        """Queue a check-in (sent by the next scheduler tick once it is due)."""
        if len(set(instruments)) != len(instruments):
            raise ConfigError("checkin ask", "instruments", "an instrument is listed twice")
        for instrument in instruments:
            self.catalog.get(instrument)  # unknown or unavailable instruments fail here
        due = due_at or self.clock()
        async with self.db.transaction() as session:
            repo = Repository(session)
            patient = await repo.get_patient(patient_id)
            if patient is None:
                raise NotFound("patient", patient_id)
            for instrument in instruments:
                if patient.language not in self.catalog.get(instrument).languages:
                    raise ConfigError(
                        "checkin ask",
                        instrument,
                        f"has no {patient.language!r} wording, and an instrument is never shown "
                        "in a translation that is not official (see docs/INSTRUMENTS.md)",
                    )
            checkin = Checkin(
                patient_id=patient_id,
                idempotency_key=key or f"ask:{patient_id}:{uuid.uuid4().hex}",
                instruments=list(instruments),
                status="pending",
                due_at=due,
                expires_at=due + self.expire_after,
                state=core.to_json(core.Conversation(tuple(instruments))),
                ignore_quiet_hours=ignore_quiet_hours,
            )
            created = await repo.create_checkin(checkin)
            if created is None:
                raise ValueError(f"a check-in with key {key!r} already exists")
            return created

    async def start_due(self, limit: int = 500) -> int:
        """Send the first question of every due check-in whose patient has none open.

        Due check-ins are claimed with a short lease (PostgreSQL: ``FOR UPDATE SKIP
        LOCKED``), so several workers start different ones; each chunk of them then runs
        under its patients' row locks and re-checks the rows, so none is ever sent twice
        (see bot/starting.py)."""
        from bot.app import starting  # it builds on this module

        return await starting.start_due(self, limit)

    async def _start_in(self, repo: Repository, checkin_id: int) -> int:
        session = repo.session
        checkin = await repo.get_checkin(checkin_id)
        if checkin is None:
            return 0
        patient = await repo.lock_patient(checkin.patient_id)
        await session.refresh(checkin)
        if patient is None or checkin.status != "pending":
            return 0
        now = self.clock()
        if patient.status != "active":
            checkin.lease_until = now + HELD_INACTIVE  # paused, blocked, not yet consented
            await repo.add(checkin)
            return 0
        if await q.open_checkin(session, checkin.patient_id) is not None:
            checkin.lease_until = now + HELD_BEHIND  # one open check-in per patient
            await repo.add(checkin)
            return 0
        if not checkin.ignore_quiet_hours and self._quiet_now(patient, now):
            checkin.lease_until = self._quiet_end(patient, now)  # the allowed hours
            await repo.add(checkin)
            return 0
        checkin.lease_until = None
        transition = core.begin(core.from_json(checkin.state), self._setting(patient), now)
        await self._apply(repo, patient, checkin, transition, f"begin{checkin_id}", now, None)
        return 1

    async def remind_due(self, limit: int = 500) -> int:
        """Re-ask the current question of open check-ins whose reminder is due."""
        async with self.db.transaction() as session:
            due = await q.reminders_due(session, self.clock(), limit)
        sent = 0
        for checkin_id in due:
            try:
                sent += await self._remind(checkin_id)
            except Exception as exc:
                log.error("check-in %s could not be reminded (%s)", checkin_id, type(exc).__name__)
        return sent

    async def _remind(self, checkin_id: int) -> int:
        async with self.db.transaction() as session:
            repo = Repository(session)
            checkin = await repo.get_checkin(checkin_id)
            if checkin is None:
                return 0
            patient = await repo.lock_patient(checkin.patient_id)
            await session.refresh(checkin)
            now = self.clock()
            due = checkin.next_reminder_at
            if patient is None or due is None or due > now or checkin.status not in q.OPEN_STATUSES:
                return 0  # answered, closed or reminded meanwhile
            if patient.status != "active":
                checkin.next_reminder_at = None
                await repo.add(checkin)
                return 0
            if self._quiet_now(patient, now):
                checkin.next_reminder_at = self._quiet_end(patient, now)
                await repo.add(checkin)
                return 0
            checkin.reminders_sent += 1
            transition = core.remind(core.from_json(checkin.state), self._setting(patient), now)
            source = f"remind{checkin_id}:{checkin.reminders_sent}"
            await self._apply(repo, patient, checkin, transition, source, now, None)
            return 1

    async def expire_due(self, limit: int = 500) -> int:
        """Close check-ins past their expiry, keeping and scoring partial answers."""
        async with self.db.transaction() as session:
            overdue = [c.id for c in await q.overdue(session, self.clock(), limit)]
        for checkin_id in overdue:
            assert checkin_id is not None
            try:
                await self._expire(checkin_id)
            except Exception as exc:
                log.error("check-in %s could not expire (%s)", checkin_id, type(exc).__name__)
        return len(overdue)

    async def _expire(self, checkin_id: int) -> None:
        async with self.db.transaction() as session:
            repo = Repository(session)
            checkin = await repo.get_checkin(checkin_id)
            if checkin is None:
                return
            patient = await repo.lock_patient(checkin.patient_id)
            await session.refresh(checkin)
            if patient is None or checkin.status not in ("pending", *q.OPEN_STATUSES):
                return
            now = self.clock()
            conv = core.from_json(checkin.state)
            if conv.status == "pending":
                conv = core.Conversation(conv.instruments, status="asking")  # never sent: missed
            transition = core.expire(conv, self._setting(patient), now)
            await self._apply(repo, patient, checkin, transition, f"expire{checkin_id}", now, None)

    async def escalate_due(self) -> int:
        """Escalate alerts nobody acknowledged in time (the tick calls this)."""
        if self.alerting is None:
            return 0
        async with self.db.transaction() as session:
            return await self.alerting.escalate_due(Repository(session), self.clock())

    # ---- writing a transition ---------------------------------------------------------

    def _quiet_now(self, patient: Patient, now: datetime) -> bool:
        return in_quiet_hours(now, _zone(patient), self._quiet())

    def _quiet_end(self, patient: Patient, now: datetime) -> datetime:
        return defer(now, _zone(patient), self._quiet())

    def _quiet(self) -> QuietHours:
        return QuietHours(self.clinic.quiet_hours_start_local, self.clinic.quiet_hours_end_local)

    def _setting(self, patient: Patient) -> core.Setting:
        instruments = {i.key: i for i in self.catalog}
        return core.Setting(instruments, patient.language, self.clinic.show_scores)

    async def _apply(
        self,
        repo: Repository,
        patient: Patient,
        checkin: Checkin | None,
        transition: core.Transition,
        source: str,
        now: datetime,
        inbound_id: int | None,
    ) -> None:
        """Write the transition's state, events and messages in the caller's transaction."""
        assert patient.id is not None
        if checkin is not None:
            _update_checkin(checkin, transition.state, now)
            await repo.add(checkin)
            if checkin.status in q.CLOSED_STATUSES:  # the next one held behind it may start now
                await q.release_held(repo.session, patient.id)
        for event in transition.events:
            await self._record(repo, patient, checkin, event, inbound_id)
        await repo.enqueue(self._outbox(patient, transition.intents, source, now))
        if self.alerting is not None:  # same transaction: the answer and its alert together
            await self.alerting.on_events(repo, patient, transition.events, now)

    async def _record(
        self,
        repo: Repository,
        patient: Patient,
        checkin: Checkin | None,
        event: ev.Event,
        inbound_id: int | None,
    ) -> None:
        assert patient.id is not None
        if isinstance(event, ev.AnswerRecorded) and checkin is not None and checkin.id is not None:
            answer = _answer_row(checkin.id, event, inbound_id)
            if event.replaced:
                await repo.replace_answer(answer)
            elif not await repo.save_answer(answer):
                log.warning("check-in %s item answered twice; first answer kept", checkin.id)
        elif isinstance(event, ev.ScoreRecorded) and checkin is not None and checkin.id is not None:
            await repo.add(_score_row(checkin.id, patient.id, event))
        elif isinstance(event, ev.FlagRaised):
            await repo.audit(
                event.at,
                "patient",
                "flag_raised",
                f"patient:{patient.id}",
                flag=event.flag,
                item=event.item,
            )
        elif isinstance(event, ev.OptedOut):
            patient.status = "opted_out"
            await repo.add(patient)
            await q.cancel_pending(repo.session, patient.id)
            await repo.audit(event.at, "patient", "opted_out", f"patient:{patient.id}")
        elif isinstance(event, ev.OptedIn):
            patient.status = "active"
            await repo.add(patient)
            await repo.audit(event.at, "patient", "opted_in", f"patient:{patient.id}")

    def _outbox(
        self, patient: Patient, intents: Sequence[ev.Intent], source: str, now: datetime
    ) -> list[OutboundMessage]:
        assert patient.id is not None and patient.address is not None
        answering = source.startswith("in")  # a reply to what the patient just sent
        rows = []
        for n, intent in enumerate(intents):
            rendered = self.renderer.render(intent, patient.channel, patient.language)
            if rendered is None:
                continue
            payload: dict[str, object] = {"intent": type(intent).__name__, "html": rendered.html}
            if isinstance(intent, ev.Ask | ev.Answered):
                payload["item"] = intent.item
            if isinstance(intent, ev.Answered):
                payload["edit"] = True  # Telegram edits the question to show the choice
            if rendered.buttons:
                payload["buttons"] = [[b.label, b.data] for b in rendered.buttons]
            rows.append(
                OutboundMessage(
                    channel=patient.channel,
                    recipient_kind="patient",
                    recipient_id=patient.id,
                    address=patient.address,
                    body=rendered.text,
                    payload=payload,
                    idempotency_key=f"{source}:{n}",
                    next_attempt_at=now,
                    priority=_priority(intent, answering),
                )
            )
        return rows


def _priority(intent: ev.Intent, answering: bool) -> int:
    """Crisis resources before everything; replies before scheduled outreach."""
    if isinstance(intent, ev.CrisisResources):
        return outbox.URGENT
    return outbox.REPLY if answering else outbox.ROUTINE


_CONTROL = dict.fromkeys(c for c in range(32) if chr(c) not in "\n\t")


def clean_text(text: str) -> str:
    """Text as stored: without NUL and other control characters (PostgreSQL refuses NUL,
    and they carry no meaning a patient intended); at most 4,000 characters."""
    return text.translate(_CONTROL)[:4000]


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        return -1  # no option has it: the press changes nothing


def _zone(patient: Patient) -> ZoneInfo:
    try:
        return ZoneInfo(patient.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def _update_checkin(checkin: Checkin, conv: core.Conversation, now: datetime) -> None:
    checkin.state = core.to_json(conv)
    more = checkin.reminder_after_s is not None and checkin.reminders_sent < checkin.max_reminders
    if conv.is_open and more and checkin.reminder_after_s is not None:
        # the next reminder counts from the latest message or answer
        checkin.next_reminder_at = now + timedelta(seconds=checkin.reminder_after_s)
    else:
        checkin.next_reminder_at = None
    if conv.status == "asking":
        checkin.status = "in_progress" if conv.answers else "sent"
        checkin.sent_at = checkin.sent_at or now
    elif conv.status in ("expired", "cancelled"):
        checkin.status = conv.status
        checkin.partial = bool(conv.answers)
    else:
        checkin.status = conv.status
    if conv.status == "completed":
        checkin.completed_at = now


def _answer_row(checkin_id: int, event: ev.AnswerRecorded, inbound_id: int | None) -> Answer:
    value = event.value
    return Answer(
        checkin_id=checkin_id,
        item_key=event.item,
        instrument=event.instrument,
        value_int=value if isinstance(value, int) else None,
        value_text=str(value) if isinstance(value, BloodPressure) else None,
        raw_text=event.raw_text,
        inbound_message_id=inbound_id,
        answered_at=event.at,
    )


def _score_row(checkin_id: int, patient_id: int, event: ev.ScoreRecorded) -> Score:
    result = event.result
    return Score(
        checkin_id=checkin_id,
        patient_id=patient_id,
        instrument=result.instrument,
        total=result.total,
        band=result.band,
        valid=result.valid,
        prorated=result.prorated,
        flags=list(result.flags),
        completed_at=event.at,
    )

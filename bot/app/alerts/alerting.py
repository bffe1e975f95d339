"""Alerts in the shell: triggers from answers and scores become alert rows and clinician
messages in the same transaction as the answer; the tick escalates; a clinician's
``ACK CODE`` acknowledges. The decisions are the pure core's (bot/domain/alerts/).

A clinician's messages are answered by :mod:`bot.app.alerts.desk`, which this hands
them to; acknowledging and resolving are :mod:`bot.app.alerts.actions`, and queueing a
message to a clinician :mod:`bot.app.alerts.notices` (the desk uses both, never this).

A clinician message carries the minimum: the patient's display name (or pseudonym), the
rule, the level, numbers (score, change, item number and value), the time and the code.
Never item wording, never what the patient wrote.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from sqlmodel import col, select

from bot.app.alerts import desk, notices
from bot.app.alerts.actions import acknowledge_alert, resolve_alert
from bot.app.alerts.digests import Digests
from bot.app.alerts.facts import missed_triggers, opt_out_triggers, score_triggers
from bot.domain import conversation as core
from bot.domain import events as ev
from bot.domain.alerts import (
    CRISIS_NOTED_RULES,
    CRISIS_SENT_AT,
    WORDING_MISSING,
    Actor,
    AlertRules,
    Change,
    OptOutHow,
    Trigger,
    escalate,
    new_code,
    on_answer,
    on_endorsed,
    on_late_answer,
    on_risk_language,
    on_wording_missing,
    raise_or_update,
    safety_answer_lowered,
    undelivered,
    why_rerouted,
)
from bot.domain.scoring import lowered_after_endorsement
from bot.instruments import Catalog
from bot.rendering.renderer import Renderer
from bot.storage.alerts import backup as backup_of
from bot.storage.alerts import next_in_line, state_of, store, unresolved_for_update
from bot.storage.alerts import primary as primary_of
from bot.storage.checkins import open_checkin
from bot.storage.outbox import Outgoing
from bot.storage.repository import Repository
from bot.storage.tables import Alert, Clinician, OutboundMessage, Patient

log = logging.getLogger(__name__)
MESSAGE_SET_ASIDE = "message_unprocessed"  # the rule of the alert for a set-aside message


@dataclass
class Alerting:
    catalog: Catalog
    rules: AlertRules
    renderer: Renderer
    unrouted: int = 0  # notices nobody could be given, since start (each also audited)
    digests: Digests | None = None  # notices held for a digest ([alerts] digest_window_s)

    # ---- raising ---------------------------------------------------------------------

    async def on_events(
        self,
        repo: Repository,
        patient: Patient,
        events: Sequence[ev.Event],
        now: datetime,
        crisis_sent_at: datetime | None = None,
    ) -> None:
        """Raise or update alerts for what the conversation just recorded; then amend
        the alerts of safety answers lowered after they were endorsed.

        `crisis_sent_at`: the patient was sent crisis lines in the same transaction; the
        alerts of ``CRISIS_NOTED_RULES`` record it, so every message about them says so."""
        triggers: list[Trigger] = []
        lowered: list[ev.AnswerRecorded] = []
        for event in events:
            if isinstance(event, ev.AnswerRecorded):
                instrument = self.catalog.get(event.instrument)
                triggers += on_answer(instrument, event.item, event.value, self.rules, now)
                item = instrument.item(event.item)
                if lowered_after_endorsement(item, event.previous, event.value):
                    lowered.append(event)
            elif isinstance(event, ev.LateAnswer):
                instrument = self.catalog.get(event.instrument)
                triggers += on_late_answer(instrument, event.item, event.value, self.rules, now)
            elif isinstance(event, ev.SafetyEndorsed):
                instrument = self.catalog.get(event.instrument)
                triggers += on_endorsed(instrument, event.item, self.rules, now)
            elif isinstance(event, ev.RiskLanguage):
                triggers += on_risk_language(self.rules, now, in_checkin=event.item is not None)
            elif isinstance(event, ev.ScoreRecorded):
                triggers += await score_triggers(
                    repo.session, self.catalog, self.rules, patient, event, now
                )
            elif isinstance(event, ev.CheckinExpired) and not event.partial:
                triggers += await missed_triggers(repo.session, self.rules, patient, now)
        for trigger in triggers:
            if crisis_sent_at is not None and trigger.rule in CRISIS_NOTED_RULES:
                sent = crisis_sent_at.astimezone(UTC).isoformat()
                trigger = replace(trigger, detail={**trigger.detail, CRISIS_SENT_AT: sent})
            await self._raise(repo, patient, trigger, now)
        for answer in lowered:
            await self._lowered(repo, patient, answer, now)
        for event in events:  # last: an alert raised just above counts as a sign of risk
            if isinstance(event, ev.OptedOut):
                await self.opted_out(
                    repo, patient, "stop", event.in_checkin, event.safety_item, now
                )

    async def opted_out(
        self,
        repo: Repository,
        patient: Patient,
        how: OptOutHow,
        in_checkin: bool,
        safety_item: str | None,
        now: datetime,
    ) -> None:
        """The patient stopped: replied STOP, blocked the bot or declined the invitation.
        The clinician is told, urgently when the patient may be at risk."""
        args = (how, in_checkin, safety_item, now)
        for trigger in await opt_out_triggers(
            repo.session, self.catalog, self.rules, patient, *args
        ):
            await self._raise(repo, patient, trigger, now)

    async def unreachable(
        self, repo: Repository, patient: Patient, how: OptOutHow, now: datetime
    ) -> None:
        """The patient blocked the bot, or opted out where we saw no STOP (the carrier's
        21610): :meth:`opted_out`, with the check-in open now, if any, and the safety
        item it had reached (it stays open, and expires as usual)."""
        assert patient.id is not None
        checkin = await open_checkin(repo.session, patient.id)
        reached = None
        if checkin is not None:
            setting = core.Setting({i.key: i for i in self.catalog})
            reached = core.safety_reached(core.from_json(checkin.state), setting)
        await self.opted_out(repo, patient, how, checkin is not None, reached, now)

    async def message_set_aside(self, repo: Repository, patient: Patient, now: datetime) -> None:
        """A message from the patient failed every processing attempt and was set aside
        (``checkin inbound list``): nobody knows what it said, and it may be an answer
        that matters, so the responsible clinician is asked to contact the patient."""
        assert patient.id is not None
        await repo.lock_patient(patient.id)  # before their alerts: see unresolved_for_update
        await self._raise(repo, patient, Trigger(MESSAGE_SET_ASIDE, "urgent", now), now)

    async def wording_missing(
        self, repo: Repository, patient: Patient, instruments: Sequence[str], now: datetime
    ) -> None:
        """A due check-in leaves `instruments` out: no wording in the patient's language.
        The clinician is told once per patient and instrument; the patient's alerts of the
        rule, whatever their status, are the memory of what was told."""
        assert patient.id is not None
        details = await repo.session.exec(
            select(Alert.detail).where(
                Alert.patient_id == patient.id, Alert.rule == WORDING_MISSING
            )
        )
        told = {str(d.get("instrument")) for d in details.all() if isinstance(d, dict)}
        for trigger in on_wording_missing(instruments, patient.language, told, self.rules, now):
            await self._raise(repo, patient, trigger, now)

    async def _raise(
        self, repo: Repository, patient: Patient, trigger: Trigger, now: datetime
    ) -> None:
        assert patient.id is not None
        rows = await unresolved_for_update(repo.session, patient.id)  # locked: see there
        taken = {r.code for r in rows}
        code = new_code(lambda alphabet: secrets.choice(alphabet), taken)
        primary = await primary_of(repo.session, patient)
        change = raise_or_update(
            [state_of(r) for r in rows], trigger, now, self.rules, primary or 0, code
        )
        if change.event is None:
            return
        row = next((r for r in rows if r.code == change.alert.code), None)
        row = row or Alert(patient_id=patient.id, rule=trigger.rule, level=trigger.level, code=code)
        store(row, change.alert)
        await repo.add(row)
        await repo.audit(
            now,
            "system",
            type(change.event).__name__,
            f"patient:{patient.id}",
            code=row.code,
            rule=row.rule,
            level=row.level,
        )
        await self._notify(repo, patient, row, change, now)

    async def _lowered(
        self, repo: Repository, patient: Patient, answer: ev.AnswerRecorded, now: datetime
    ) -> None:
        """The alerts an endorsed safety answer raised keep their level; their detail
        gains the change and the clinicians told so far are told of it."""
        assert patient.id is not None and answer.previous is not None
        primary = await primary_of(repo.session, patient)
        for row in await unresolved_for_update(repo.session, patient.id):
            change = safety_answer_lowered(
                state_of(row), answer.item, answer.previous, answer.value, now, primary or 0
            )
            if change is None:
                continue
            store(row, change.alert)
            await repo.add(row)
            await repo.audit(
                now, "system", "safety_answer_lowered", f"patient:{patient.id}", code=row.code,
                rule=row.rule, level=row.level,
            )  # fmt: skip
            source = f"alert{row.id}:lowered:{answer.at:%Y%m%dT%H%M%S.%f}"
            await self._notify(repo, patient, row, change, now, source)

    # ---- escalation -------------------------------------------------------------------

    async def escalate_due(self, repo: Repository, now: datetime) -> int:
        """Tell the backup (then both, repeatedly) about alerts unacknowledged past deadline.
        PostgreSQL: each alert taken is locked and read afresh; one another transaction
        holds (another worker's tick, a reroute, an acknowledgement) is skipped, never
        waited for, and left for the next tick, so it is never escalated twice, written
        back stale, or told to the backup once acknowledged. Id order, as `undelivered`
        locks: no deadlock. SQLite: its one writer holds the lock from BEGIN already."""
        statement = select(Alert).where(
            Alert.status == "open",
            col(Alert.ack_deadline).is_not(None),
            col(Alert.ack_deadline) <= now,
        )
        statement = statement.order_by(col(Alert.id))
        if repo.dialect == "postgresql":
            statement = statement.with_for_update(skip_locked=True)
        statement = statement.execution_options(populate_existing=True)
        count = 0
        for row in (await repo.session.exec(statement)).all():
            patient = await repo.get_patient(row.patient_id)
            if patient is None:
                continue
            primary = await primary_of(repo.session, patient)
            backup = await backup_of(repo.session, primary)
            change = escalate(state_of(row), now, primary or 0, backup, self.rules)
            if change is None:
                continue
            store(row, change.alert)
            await repo.add(row)
            await repo.audit(
                now, "system", "AlertEscalated", f"patient:{patient.id}", code=row.code
            )
            await self._notify(repo, patient, row, change, now)
            count += 1
        return count

    async def undelivered(
        self, repo: Repository, message: Outgoing | OutboundMessage, now: datetime
    ) -> None:
        """A message to a clinician failed for good (refused, blocked, invalid number):
        each open alert it told of goes at once to the next clinician in line (see
        :func:`bot.domain.alerts.undelivered`), in the caller's transaction. Audited
        (``alert_undelivered``, counted by ``checkin alerts``) and logged, ids only."""
        # locked (an acknowledgement committing meanwhile is not overwritten), read afresh,
        # all at once and in id order, as the escalation pass takes them: a digest lists
        # its alerts crisis first, and locking in that order could deadlock with it
        told = sorted(set(notices.alerts_told(message.payload)))
        statement = select(Alert).where(col(Alert.id).in_(told)).order_by(col(Alert.id))
        statement = statement.with_for_update().execution_options(populate_existing=True)
        for row in (await repo.session.exec(statement)).all() if told else ():
            patient = await repo.get_patient(row.patient_id)
            if patient is None:
                continue
            primary = await primary_of(repo.session, patient)
            line = await next_in_line(repo.session, primary)
            change = undelivered(state_of(row), message.recipient_id, now, line)
            if change is None:
                continue
            store(row, change.alert)
            await repo.add(row)
            instead = change.notify[0] if change.notify else None
            log.warning(
                "alert %s (level %s): message %s to clinician %s failed for good; told now: %s",
                row.id, row.level, message.id, message.recipient_id, instead or "nobody left",
            )  # fmt: skip
            await repo.audit(
                now, "system", "alert_undelivered", f"patient:{patient.id}", code=row.code,
                alert_id=row.id, clinician=message.recipient_id, message=message.id,
                rerouted_to=instead,
            )  # fmt: skip
            if change.event is not None:
                await repo.audit(
                    now, "system", "AlertEscalated", f"patient:{patient.id}", code=row.code
                )
                why = why_rerouted(change.alert, primary)  # the notice says why it comes to them
                await self._notify(repo, patient, row, change, now, rerouted=why)

    # ---- acknowledgement --------------------------------------------------------------

    async def clinician_says(
        self,
        repo: Repository,
        clinician: Clinician,
        text: str,
        source: str,
        now: datetime,
        kind: str = "text",
    ) -> None:
        """A linked clinician's text or button: ``ACK CODE``, ``ALERTS``, ``/patients``,
        ``/trend``, ... (see :mod:`bot.app.alerts.desk`)."""
        await desk.handle(self.catalog, self.renderer, repo, clinician, text, kind, source, now)

    async def acknowledge(
        self, repo: Repository, row: Alert, by: int | None, now: datetime
    ) -> bool:
        """Clinician `by` (None: the operator) has seen the alert; False when it was not
        open (see :func:`bot.app.alerts.actions.acknowledge_alert`)."""
        return await acknowledge_alert(repo, row, by, now)

    async def resolve(self, repo: Repository, row: Alert, by: Actor, now: datetime) -> bool:
        """Close the alert; True when it is resolved now (see
        :func:`bot.app.alerts.actions.resolve_alert`)."""
        return await resolve_alert(repo, row, by, now)

    # ---- messages ---------------------------------------------------------------------

    async def _notify(
        self,
        repo: Repository,
        patient: Patient,
        row: Alert,
        change: Change,
        now: datetime,
        source: str | None = None,
        rerouted: ev.Rerouted | None = None,
    ) -> None:
        """Tell the clinicians `change` names; `source`: the messages' idempotency key
        (default: one per raise, upgrade and escalation of the alert); `rerouted`: see
        :class:`bot.domain.events.AlertNotice`."""
        assert row.id is not None
        source = source or f"alert{row.id}:{row.escalation_count}:{row.occurrences}"
        for clinician_id in change.notify:
            clinician = await repo.session.get(Clinician, clinician_id) if clinician_id else None
            if clinician is None or clinician.address is None:
                await self._unrouted(repo, patient, row, clinician_id, now)
                continue
            notice = ev.AlertNotice(
                code=row.code, rule=row.rule, level=row.level, patient=patient.display_name,
                detail=dict(row.detail), escalation=row.escalation_count, at=now, rerouted=rerouted,
            )  # fmt: skip
            window = self.rules.digest_window
            until = None
            if self.digests is not None and window > timedelta(0):
                assert clinician.id is not None
                until = await self.digests.until(repo, clinician.id, now, window)
            if until is not None and self.digests is not None:
                r = self.renderer
                await notices.hold(r, repo, clinician, notice, row.id, source, now, until)
                self.digests.held(until)
            else:
                await notices.tell(
                    self.renderer, repo, clinician, notice, source, now, alerts=[row.id]
                )

    async def _unrouted(
        self, repo: Repository, patient: Patient, row: Alert, clinician_id: int, now: datetime
    ) -> None:
        """Nobody to tell: a WARNING with opaque ids, an audit `checkin alerts` counts."""
        self.unrouted += 1
        log.warning(
            "alert %s (level %s) has nobody to notify (clinician %s); unrouted so far: %d",
            row.id, row.level, clinician_id or "none", self.unrouted,
        )  # fmt: skip
        await repo.audit(
            now, "system", "alert_unrouted", f"patient:{patient.id}", code=row.code,
            alert_id=row.id, clinician=clinician_id or None,
        )  # fmt: skip

    async def tell(
        self,
        repo: Repository,
        clinician: Clinician,
        intent: ev.Intent,
        source: str,
        now: datetime,
        photo: bytes | None = None,
    ) -> None:
        """Queue a message to a clinician (see :func:`bot.app.alerts.notices.tell`)."""
        await notices.tell(self.renderer, repo, clinician, intent, source, now, photo)

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
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.app.alerts import desk, notices
from bot.app.alerts.actions import acknowledge_alert, resolve_alert
from bot.domain import conversation as core
from bot.domain import events as ev
from bot.domain.alerts import (
    Actor,
    AlertRules,
    Change,
    OptOutFacts,
    OptOutHow,
    Trigger,
    endorsed_since,
    escalate,
    is_safety_item,
    new_code,
    on_answer,
    on_missed,
    on_opted_out,
    on_score,
    raise_or_update,
    serious_open,
)
from bot.domain.outcomes import Observation
from bot.instruments import Catalog
from bot.rendering.renderer import Renderer
from bot.storage.alerts import (
    answers_since,
    count_before,
    recent_outcomes,
    session_times,
    state_of,
    store,
)
from bot.storage.alerts import backup as backup_of
from bot.storage.alerts import primary as primary_of
from bot.storage.alerts import unresolved as rows_for
from bot.storage.checkins import open_checkin
from bot.storage.repository import Repository
from bot.storage.tables import Alert, Clinician, Patient, Score

log = logging.getLogger(__name__)
MESSAGE_SET_ASIDE = "message_unprocessed"  # the rule of the alert for a set-aside message


@dataclass
class Alerting:
    catalog: Catalog
    rules: AlertRules
    renderer: Renderer
    unrouted: int = 0  # notices nobody could be given, since start (each also audited)

    # ---- raising ---------------------------------------------------------------------

    async def on_events(
        self, repo: Repository, patient: Patient, events: Sequence[ev.Event], now: datetime
    ) -> None:
        """Raise or update alerts for what the conversation just recorded."""
        triggers: list[Trigger] = []
        for event in events:
            if isinstance(event, ev.AnswerRecorded):
                instrument = self.catalog.get(event.instrument)
                triggers += on_answer(instrument, event.item, event.value, self.rules, now)
            elif isinstance(event, ev.ScoreRecorded):
                triggers += await self._score_triggers(repo.session, patient, event, now)
            elif isinstance(event, ev.CheckinExpired) and not event.partial:
                triggers += await self._missed_triggers(repo.session, patient, now)
        for trigger in triggers:
            await self._raise(repo, patient, trigger, now)
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
        for trigger in await self._opt_out_triggers(repo.session, patient, *args):
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
        await self._raise(repo, patient, Trigger(MESSAGE_SET_ASIDE, "urgent", now), now)

    async def _score_triggers(
        self, session: AsyncSession, patient: Patient, event: ev.ScoreRecorded, now: datetime
    ) -> list[Trigger]:
        assert patient.id is not None
        instrument = self.catalog.get(event.result.instrument)
        sessions = await session_times(session, patient.id)
        earlier = (
            await session.exec(
                select(Score).where(
                    Score.patient_id == patient.id,
                    Score.instrument == instrument.key,
                    col(Score.total).is_not(None),
                    col(Score.completed_at) < now,
                )
            )
        ).all()
        history = [
            Observation(s.completed_at, s.total, count_before(sessions, s.completed_at))
            for s in earlier
            if s.total is not None
        ]
        current_session = count_before(sessions, now)
        return on_score(instrument, event.result, history, self.rules, now, session=current_session)

    async def _missed_triggers(
        self, session: AsyncSession, patient: Patient, now: datetime
    ) -> list[Trigger]:
        """Check-ins missed in a row (the one just expired included: it is flushed)."""
        assert patient.id is not None
        recent = await recent_outcomes(session, patient.id)
        open_alerts = [state_of(r) for r in await rows_for(session, patient.id)]
        return on_missed(recent, open_alerts, self.rules, now)

    async def _opt_out_triggers(
        self,
        session: AsyncSession,
        patient: Patient,
        how: OptOutHow,
        in_checkin: bool,
        safety_item: str | None,
        now: datetime,
    ) -> list[Trigger]:
        """The facts a stop is judged by: open serious alerts, recent endorsed safety
        items (answer values only), the safety item the stopped check-in had reached."""
        assert patient.id is not None
        rule = self.rules.opted_out
        items = {i.key: i for ins in self.catalog for i in ins.items if is_safety_item(i)}
        answers = await answers_since(session, patient.id, now - rule.recent, sorted(items))
        facts = OptOutFacts(
            how,
            in_checkin=in_checkin,
            open_serious_alert=serious_open(
                [state_of(r) for r in await rows_for(session, patient.id)], rule
            ),
            endorsed_recently=endorsed_since(
                [(items[key], value, at) for key, value, at in answers], now - rule.recent
            ),
            reached_item=items.get(safety_item) if safety_item else None,
        )
        return on_opted_out(facts, self.rules, now)

    async def _raise(
        self, repo: Repository, patient: Patient, trigger: Trigger, now: datetime
    ) -> None:
        assert patient.id is not None
        rows = await rows_for(repo.session, patient.id)
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

    # ---- escalation -------------------------------------------------------------------

    async def escalate_due(self, repo: Repository, now: datetime) -> int:
        """Tell the backup (then both, repeatedly) about alerts unacknowledged past deadline."""
        statement = select(Alert).where(
            Alert.status == "open",
            col(Alert.ack_deadline).is_not(None),
            col(Alert.ack_deadline) <= now,
        )
        count = 0
        for row in (await repo.session.exec(statement.order_by(col(Alert.id)))).all():
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
        self, repo: Repository, patient: Patient, row: Alert, change: Change, now: datetime
    ) -> None:
        for clinician_id in change.notify:
            clinician = await repo.session.get(Clinician, clinician_id) if clinician_id else None
            if clinician is None or clinician.address is None:
                await self._unrouted(repo, patient, row, clinician_id, now)
                continue
            notice = ev.AlertNotice(
                code=row.code,
                rule=row.rule,
                level=row.level,
                patient=patient.display_name,
                detail=dict(row.detail),
                escalation=row.escalation_count,
                at=now,
            )
            await self.tell(
                repo,
                clinician,
                notice,
                f"alert{row.id}:{row.escalation_count}:{row.occurrences}",
                now,
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

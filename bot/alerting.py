"""Alerts in the shell: triggers from answers and scores become alert rows and clinician
messages in the same transaction as the answer; the tick escalates; a clinician's
``ACK CODE`` acknowledges. The decisions are the pure core's (bot/domain/alerts*.py).

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
from typing import Any

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.domain import events as ev
from bot.domain.alerts import AlertRules, Trigger
from bot.domain.alerts_evaluate import on_answer, on_score
from bot.domain.alerts_events import clinician as clinician_actor
from bot.domain.alerts_lifecycle import (
    AlertState,
    Change,
    acknowledge,
    escalate,
    new_code,
    normalize_code,
    raise_or_update,
)
from bot.domain.outcomes import Observation
from bot.instruments import Catalog
from bot.rendering import Renderer
from bot.storage.repository import Repository
from bot.storage.tables import Alert, Clinician, OutboundMessage, Patient, Score, TreatmentSession

log = logging.getLogger(__name__)
UNRESOLVED = ("open", "acknowledged")


@dataclass
class Alerting:
    catalog: Catalog
    rules: AlertRules
    renderer: Renderer

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
        for trigger in triggers:
            await self._raise(repo, patient, trigger, now)

    async def _score_triggers(
        self, session: AsyncSession, patient: Patient, event: ev.ScoreRecorded, now: datetime
    ) -> list[Trigger]:
        assert patient.id is not None
        instrument = self.catalog.get(event.result.instrument)
        sessions = await _session_times(session, patient.id)
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
            Observation(s.completed_at, s.total, _count_before(sessions, s.completed_at))
            for s in earlier
            if s.total is not None
        ]
        current_session = _count_before(sessions, now)
        return on_score(instrument, event.result, history, self.rules, now, session=current_session)

    async def _raise(
        self, repo: Repository, patient: Patient, trigger: Trigger, now: datetime
    ) -> None:
        assert patient.id is not None
        rows = await _unresolved(repo.session, patient.id)
        taken = {r.code for r in rows}
        code = new_code(lambda alphabet: secrets.choice(alphabet), taken)
        primary = await _primary(repo.session, patient)
        change = raise_or_update(
            [_state(r) for r in rows], trigger, now, self.rules, primary or 0, code
        )
        if change.event is None:
            return
        row = next((r for r in rows if r.code == change.alert.code), None)
        row = row or Alert(patient_id=patient.id, rule=trigger.rule, level=trigger.level, code=code)
        _store(row, change.alert)
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
            primary = await _primary(repo.session, patient)
            backup = await _backup(repo.session, primary)
            change = escalate(_state(row), now, primary or 0, backup, self.rules)
            if change is None:
                continue
            _store(row, change.alert)
            await repo.add(row)
            await repo.audit(
                now, "system", "AlertEscalated", f"patient:{patient.id}", code=row.code
            )
            await self._notify(repo, patient, row, change, now)
            count += 1
        return count

    # ---- acknowledgement --------------------------------------------------------------

    async def clinician_says(
        self, repo: Repository, clinician: Clinician, text: str, source: str, now: datetime
    ) -> None:
        """``ACK CODE`` (or ``/ack CODE``) from a linked clinician acknowledges the alert."""
        words = text.strip().lstrip("/").split()
        if len(words) != 2 or words[0].lower() != "ack":
            await self._tell(repo, clinician, ev.ClinicianHelp(), source, now)
            return
        code = normalize_code(words[1])
        row = None
        if code is not None:
            statement = select(Alert).where(Alert.code == code, col(Alert.status).in_(UNRESOLVED))
            row = (await repo.session.exec(statement)).first()
        if row is None or clinician.id is None:
            await self._tell(repo, clinician, ev.AckUnknown(words[1][:12]), source, now)
            return
        change = acknowledge(_state(row), clinician.id, now)
        _store(row, change.alert)
        await repo.add(row)
        subject = f"patient:{row.patient_id}"
        who = f"clinician:{clinician_actor(clinician.id).id}"
        await repo.audit(now, who, "AlertAcknowledged", subject, code=row.code)
        await self._tell(repo, clinician, ev.AckConfirmed(row.code), source, now)

    # ---- messages ---------------------------------------------------------------------

    async def _notify(
        self, repo: Repository, patient: Patient, row: Alert, change: Change, now: datetime
    ) -> None:
        for clinician_id in change.notify:
            clinician = await repo.session.get(Clinician, clinician_id) if clinician_id else None
            if clinician is None or clinician.address is None:
                log.warning("alert %s has nobody to notify (clinician %s)", row.id, clinician_id)
                await repo.audit(
                    now, "system", "alert_unrouted", f"patient:{patient.id}", code=row.code
                )
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
            await self._tell(
                repo,
                clinician,
                notice,
                f"alert{row.id}:{row.escalation_count}:{row.occurrences}",
                now,
            )

    async def _tell(
        self, repo: Repository, clinician: Clinician, intent: ev.Intent, source: str, now: datetime
    ) -> None:
        assert clinician.id is not None and clinician.address is not None
        rendered = self.renderer.render(intent, clinician.channel, "en")
        if rendered is None:
            return
        await repo.enqueue([
            OutboundMessage(
                channel=clinician.channel,
                recipient_kind="clinician",
                recipient_id=clinician.id,
                address=clinician.address,
                body=rendered.text,
                payload={"intent": type(intent).__name__, "html": rendered.html},
                idempotency_key=f"{source}:c{clinician.id}",
                next_attempt_at=now,
            )
        ])  # fmt: skip


def _state(row: Alert) -> AlertState:
    return AlertState(
        code=row.code,
        rule=row.rule,
        level=row.level,  # type: ignore[arg-type]
        created_at=row.created_at,
        ack_deadline=row.ack_deadline,
        detail=dict(row.detail),
        status=row.status,  # type: ignore[arg-type]
        escalation_count=row.escalation_count,
        last_notified_at=row.last_notified_at,
        recipients=tuple(row.recipients),
        occurrences=row.occurrences,
        last_triggered_at=row.last_triggered_at,
        acknowledged_by=row.acknowledged_by,
        acknowledged_at=row.acknowledged_at,
    )


def _store(row: Alert, state: AlertState) -> None:
    values: dict[str, Any] = {
        "rule": state.rule,
        "level": state.level,
        "status": state.status,
        "code": state.code,
        "detail": dict(state.detail),
        "created_at": state.created_at,
        "ack_deadline": state.ack_deadline,
        "escalation_count": state.escalation_count,
        "last_notified_at": state.last_notified_at,
        "recipients": list(state.recipients),
        "occurrences": state.occurrences,
        "last_triggered_at": state.last_triggered_at,
        "acknowledged_by": state.acknowledged_by,
        "acknowledged_at": state.acknowledged_at,
        "resolved_at": state.resolved_at,
        "resolved_by": f"{state.resolved_by.kind}:{state.resolved_by.id}"
        if state.resolved_by
        else None,
    }
    for name, value in values.items():
        setattr(row, name, value)


async def _unresolved(session: AsyncSession, patient_id: int) -> list[Alert]:
    statement = select(Alert).where(
        Alert.patient_id == patient_id, col(Alert.status).in_(UNRESOLVED)
    )
    return list((await session.exec(statement.order_by(col(Alert.id)))).all())


async def _primary(session: AsyncSession, patient: Patient) -> int | None:
    """The responsible clinician; without one, the clinic's first active clinician."""
    if patient.clinician_id is not None:
        return patient.clinician_id
    statement = select(Clinician.id).where(Clinician.active == True).order_by(col(Clinician.id))  # noqa: E712
    return (await session.exec(statement)).first()


async def _backup(session: AsyncSession, primary: int | None) -> int | None:
    if primary is None:
        return None
    clinician = await session.get(Clinician, primary)
    return clinician.backup_clinician_id if clinician is not None else None


async def _session_times(session: AsyncSession, patient_id: int) -> list[datetime]:
    statement = select(TreatmentSession.at).where(
        TreatmentSession.patient_id == patient_id, col(TreatmentSession.cancelled_at).is_(None)
    )
    return sorted((await session.exec(statement)).all())


def _count_before(sessions: Sequence[datetime], at: datetime) -> int | None:
    done = sum(1 for s in sessions if s < at)
    return done or None

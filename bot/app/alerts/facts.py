"""The facts an alert rule is judged by, read from the database: a patient's earlier scores
and treatment sessions, their recent check-in outcomes and unresolved alerts, and the
safety answers of the last days. Each function returns the pure core's triggers; raising
them is :mod:`bot.app.alerts.alerting`'s."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.domain import events as ev
from bot.domain.alerts import (
    AlertRules,
    OptOutFacts,
    OptOutHow,
    Trigger,
    endorsed_since,
    is_safety_item,
    on_missed,
    on_opted_out,
    on_score,
    serious_open,
)
from bot.domain.outcomes import Observation
from bot.instruments import Catalog
from bot.storage.alerts import answers_since, count_before, recent_outcomes, session_times, state_of
from bot.storage.alerts import unresolved as rows_for
from bot.storage.tables import Patient, Score


async def score_triggers(
    session: AsyncSession,
    catalog: Catalog,
    rules: AlertRules,
    patient: Patient,
    event: ev.ScoreRecorded,
    now: datetime,
) -> list[Trigger]:
    assert patient.id is not None
    instrument = catalog.get(event.result.instrument)
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
    return on_score(instrument, event.result, history, rules, now, session=current_session)


async def missed_triggers(
    session: AsyncSession, rules: AlertRules, patient: Patient, now: datetime
) -> list[Trigger]:
    """Check-ins missed in a row (the one just expired included: it is flushed)."""
    assert patient.id is not None
    recent = await recent_outcomes(session, patient.id)
    open_alerts = [state_of(r) for r in await rows_for(session, patient.id)]
    return on_missed(recent, open_alerts, rules, now)


async def opt_out_triggers(
    session: AsyncSession,
    catalog: Catalog,
    rules: AlertRules,
    patient: Patient,
    how: OptOutHow,
    in_checkin: bool,
    safety_item: str | None,
    now: datetime,
) -> list[Trigger]:
    """The facts a stop is judged by: open serious alerts, recent endorsed safety
    items (answer values only), the safety item the stopped check-in had reached."""
    assert patient.id is not None
    rule = rules.opted_out
    items = {i.key: i for ins in catalog for i in ins.items if is_safety_item(i)}
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
    return on_opted_out(facts, rules, now)

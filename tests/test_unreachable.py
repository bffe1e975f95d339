"""A patient found unreachable while sending (they blocked the bot) is marked so even when
raising their clinician's alert fails: the alert's work alone is undone, and an ERROR
names the ids. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from bot.app.alerts.alerting import Alerting
from bot.app.outbox.delivery import Deliverer
from bot.channels.telegram import TelegramChannel
from bot.domain.alerts import DEFAULT_RULES
from bot.rendering.renderer import Renderer
from bot.storage.alerts import unresolved_for_update
from bot.storage.database import Database
from bot.storage.repository import Repository
from bot.storage.tables import Alert, AuditEvent, OutboundMessage, Patient
from tests.standins.server import serve
from tests.standins.telegram import TelegramStandIn, blocked
from tests.test_alerts_turn_lock import waiting_for_a_lock
from tests.test_services import CATALOG, CLINIC, rows, wire


@pytest.fixture(autouse=True)
def _ptb_timedelta(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PTB_TIMEDELTA", "true")


@asynccontextmanager
async def blocked_bot(db: Database, clock: Any) -> AsyncIterator[Deliverer]:
    """A deliverer whose Telegram sends are refused with 403 (the patient blocked the bot),
    through the real client and the Bot API stand-in."""
    stand_in = TelegramStandIn()
    stand_in.fail(blocked(), method="sendMessage")
    alerting = Alerting(CATALOG, DEFAULT_RULES, Renderer(CATALOG, CLINIC))
    async with serve(stand_in.app) as url:
        channel = TelegramChannel(stand_in.token, api_base_url=f"{url}/bot", timeout_s=2)
        try:
            yield Deliverer(db, {"telegram": channel}, clock, alerting=alerting)
        finally:
            await channel.close()


async def test_a_failed_alert_leaves_the_blocked_patient_marked_and_the_message_dead(
    db: Database, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The 403 of a patient who blocked the bot, and telling the clinician fails once the
    alert is written: the patient is blocked, the message dead (not sent again after its
    lease), no alert row nor its audit is left, and the ERROR carries ids only."""
    w = wire(db)
    async with db.transaction() as session:
        session.add(Patient(display_name="P-017", timezone="UTC", channel="telegram",
                            address="4101", status="active"))  # fmt: skip
    (patient,) = await rows(db, Patient)
    await w.services.asking.ask(patient.id, ["phq2"])
    await w.services.starting.start_due()

    async def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("P-017 cannot be told")  # the text must not reach the log

    monkeypatch.setattr(Alerting, "_notify", broken)  # after the alert's row and audit
    async with blocked_bot(db, w.clock) as deliverer:
        report = await deliverer.run_once()

    assert report.dead == 1
    (patient,) = await rows(db, Patient)
    assert patient.status == "blocked"
    assert [m.status for m in await rows(db, OutboundMessage)] == ["dead"]
    assert await rows(db, Alert) == []
    actions = [a.action for a in await rows(db, AuditEvent)]
    assert "patient_blocked" in actions and "AlertRaised" not in actions
    (error,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert f"patient {patient.id} is unreachable" in error.getMessage()
    assert "RuntimeError" in error.getMessage() and "P-017" not in error.getMessage()


@pytest.mark.postgres
async def test_marking_a_patient_waits_for_their_turn_before_locking_their_alerts(
    pg_db: Database,
) -> None:
    """PostgreSQL: a send finds the patient gone while their turn (here: a transaction
    holding their row) is under way; the turn then reads their alerts to write them. The
    send takes the patient's row before their alerts, as the turn does: it waits, the turn
    goes on, and both commit (the other order would deadlock, and one would be ended)."""
    w = wire(pg_db)
    async with pg_db.transaction() as session:
        patient = Patient(display_name="P-017", timezone="UTC", channel="telegram",
                          address="4101", status="active")  # fmt: skip
        session.add(patient)
        await session.flush()
        assert patient.id is not None
        session.add(Alert(patient_id=patient.id, rule="phq9_high", level="urgent", code="K7"))
    await w.services.asking.ask(patient.id, ["phq2"])
    await w.services.starting.start_due()
    async with blocked_bot(pg_db, w.clock) as deliverer:
        async with pg_db.transaction() as turn:
            await Repository(turn).lock_patient(patient.id)
            sending = asyncio.ensure_future(deliverer.run_once())
            await waiting_for_a_lock(pg_db)
            (held,) = await asyncio.wait_for(unresolved_for_update(turn, patient.id), 5)
            held.occurrences += 1
        assert (await asyncio.wait_for(sending, 5)).dead == 1
    (patient,) = await rows(pg_db, Patient)
    assert patient.status == "blocked"
    alerts = await rows(pg_db, Alert)
    assert [(a.rule, a.occurrences) for a in alerts] == [("phq9_high", 2), ("opted_out", 1)]

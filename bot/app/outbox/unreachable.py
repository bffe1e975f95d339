"""A patient the provider says is gone (blocked the bot, opted out at the carrier): marked
so, for the operator and the clinician. Sending and delivery receipts both find out.

Both record the failure and call :func:`mark_unreachable` in the same transaction. Its
alert for the clinician runs in a savepoint, as a reroute does (see
:mod:`bot.app.alerts.rerouting`): should raising it fail (a deadlock on PostgreSQL, a
bug), only the alert's work is undone. The patient is marked all the same, and the
failure recorded: otherwise the sender's message would stay leased and go again after
its lease (to fail the same way, the patient never marked, the clinician never told),
and a status callback would answer 500. An ERROR, ids only, asks the operator to tell
the clinician.
"""

from __future__ import annotations

import logging
from datetime import datetime

from bot.app.alerts.alerting import Alerting
from bot.domain.alerts import OptOutHow
from bot.storage.outbox import Outgoing
from bot.storage.repository import Repository
from bot.storage.tables import OutboundMessage, Patient

log = logging.getLogger(__name__)


async def mark_unreachable(
    repo: Repository,
    message: Outgoing | OutboundMessage,
    now: datetime,
    alerting: Alerting | None = None,
) -> None:
    """The patient blocked the bot (or opted out at the carrier): visible to the operator,
    and to the clinician through the ``opted_out`` alert (unless they had left already).
    The patient's row is locked first (PostgreSQL), as a turn's is, before their alerts:
    their status is read afresh, and the lock order is a turn's (no deadlock)."""
    patient = await repo.lock_patient(message.recipient_id)
    if patient is None or patient.status in ("blocked", "opted_out", "discharged"):
        return
    patient_id, status = patient.id, "opted_out" if message.channel == "sms" else "blocked"
    if alerting is not None and patient.status in ("active", "paused"):
        how: OptOutHow = "stop" if message.channel == "sms" else "blocked"
        await _alert(alerting, repo, patient, message, how, now)
    patient.status = status
    await repo.add(patient)
    await repo.audit(
        now, "system", f"patient_{status}", f"patient:{patient_id}", channel=message.channel
    )


async def _alert(
    alerting: Alerting,
    repo: Repository,
    patient: Patient,
    message: Outgoing | OutboundMessage,
    how: OptOutHow,
    now: datetime,
) -> None:
    """``alerting.unreachable`` in a savepoint; on a failure its rows and its count of
    queued rows are undone, and an ERROR names the ids and the exception's type (never its
    text, which may quote a row). Its audit events go too: a savepoint's rollback forgets
    every event the transaction buffered (bot/storage/audit.py), and neither caller has
    buffered any before this."""
    queued = repo.queued
    try:
        async with repo.session.begin_nested():
            await alerting.unreachable(repo, patient, how, now)
    except Exception as exc:  # the patient's new status must commit all the same
        repo.queued = queued
        log.error(
            "patient %s is unreachable (outbound %s failed: %s), and raising the alert for "
            "their clinician failed (%s): marked all the same; tell their clinician",
            patient.id, message.id, how, type(exc).__name__,
        )  # fmt: skip

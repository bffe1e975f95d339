"""Rerouting the alerts of a clinician's message that failed for good, without risking the
record of the failure.

Both places that learn of such a failure (the sender, on the provider's refusal, and a
status callback) record it and then call :func:`reroute_undelivered` in the same
transaction. The reroute (``Alerting.undelivered``) locks alert rows and queues notices;
should it fail (a deadlock on PostgreSQL, a bug, a missing row), the failure would roll
back with it: the sender's message would stay leased and go again after its lease, and a
status callback would answer 500 and lose its status until Twilio retried. So the reroute
runs in a savepoint, and a failure in it undoes only its own work: it is logged, the
failure record commits, and the alerts escalate at their acknowledgement deadline as any
unacknowledged alert does.
"""

from __future__ import annotations

import logging
from datetime import datetime

from bot.app.alerts.alerting import Alerting
from bot.storage.outbox import Outgoing
from bot.storage.repository import Repository
from bot.storage.tables import OutboundMessage

log = logging.getLogger(__name__)


async def reroute_undelivered(
    alerting: Alerting, repo: Repository, message: Outgoing | OutboundMessage, now: datetime
) -> None:
    """``alerting.undelivered`` in a savepoint of the caller's transaction; on a failure its
    changes, and its count of queued rows, are undone and an ERROR names the ids and the
    exception's type (never its text, which may quote a row)."""
    queued = repo.queued
    try:
        async with repo.session.begin_nested():
            await alerting.undelivered(repo, message, now)
    except Exception as exc:  # the failure's record must commit all the same
        repo.queued = queued
        log.error(
            "outbound %s to clinician %s failed for good, and rerouting its alerts failed "
            "(%s): they escalate at their acknowledgement deadline",
            message.id, message.recipient_id, type(exc).__name__,
        )  # fmt: skip

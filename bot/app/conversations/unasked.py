"""A due check-in's instruments that cannot be asked in the patient's language (no wording
in it, or a licensed instrument still without its wording) are left out when it starts,
never silently:

* the check-in goes ahead with the instruments that have the language (the side-effect
  check, say); with none left it is cancelled, as nothing could be asked;
* the responsible clinician gets a ``wording_missing`` alert naming the instrument, once
  per patient and instrument (:meth:`bot.app.alerts.alerting.Alerting.wording_missing`);
* the audit trail records which instruments were left out of which check-in.

Planning keeps such instruments in the check-in (``bot.app.planning.rows``), so a language
added before the check-in is due (a wording file, a restart) is asked after all.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from bot.app.context import Context
from bot.app.conversations.transitions import update_checkin
from bot.domain import conversation as core
from bot.storage.repository import Repository
from bot.storage.tables import Checkin, Patient

log = logging.getLogger(__name__)


async def leave_out(
    ctx: Context,
    repo: Repository,
    patient: Patient,
    checkin: Checkin,
    missing: Sequence[str],
    now: datetime,
) -> core.Conversation | None:
    """The pending conversation without `missing`, written on the row; None when nothing
    is left to ask (the check-in is cancelled). Alerts and audit in the caller's transaction."""
    conv = core.from_json(checkin.state)
    keep = tuple(k for k in conv.instruments if k not in missing)
    log.warning("check-in %s: %d instrument(s) left out, no %r wording",
                checkin.id, len(missing), patient.language)  # fmt: skip
    await repo.audit(
        now, "system", "instruments_not_asked", f"patient:{patient.id}",
        checkin=checkin.id, instruments=list(missing), language=patient.language,
    )  # fmt: skip
    if ctx.alerting is not None:
        await ctx.alerting.wording_missing(repo, patient, missing, now)
    checkin.lease_until = None
    if not keep:
        update_checkin(checkin, replace(conv, status="cancelled"), now)
        await repo.add(checkin)
        return None
    conv = replace(conv, instruments=keep)
    checkin.instruments = list(keep)
    checkin.state = core.to_json(conv)
    return conv

"""An alert's record amended when the answer that raised it is lowered. Pure.

A patient who endorsed a safety item (PHQ-9 item 9 = 2) and then went BACK and answered 0
has not taken the endorsement back for the clinician: the alert stays at its level and
status (acknowledged or not, its deadline as it was), its detail gains the change
(``changed_from``, ``changed_to``: numbers only, never the patient's words), and the
clinicians told about it so far hear of the change, so nobody reads a later score of 0
without knowing a 2 was given.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from bot.domain.alerts.events import AlertUpdated
from bot.domain.alerts.lifecycle import AlertState, Change
from bot.domain.instruments import AnswerValue, BloodPressure


def safety_answer_lowered(
    alert: AlertState,
    item_key: str,
    before: AnswerValue,
    after: AnswerValue,
    now: datetime,
    primary: int,
) -> Change | None:
    """The change to `alert` when item `item_key`'s answer went from `before` down to
    `after`; None when the alert is not about that item or is resolved. `primary`: the
    responsible clinician, told when nobody was told before (an unrouted alert)."""
    if alert.status == "resolved" or alert.detail.get("item") != item_key:
        return None
    if isinstance(before, BloodPressure) or isinstance(after, BloodPressure):
        return None
    detail = {**alert.detail, "changed_from": before, "changed_to": after}
    expected = alert.ack_deadline is not None or alert.status == "acknowledged"
    notify = alert.recipients or ((primary,) if expected else ())
    updated = replace(
        alert,
        detail=detail,
        last_notified_at=now if notify else alert.last_notified_at,
        recipients=tuple(dict.fromkeys([*alert.recipients, *notify])),
    )
    event = AlertUpdated(
        alert.code,
        alert.rule,
        alert.level,
        alert.level,
        now,
        alert.occurrences,
        reopened=False,
        notified=notify,
    )
    return Change(updated, event, notify)

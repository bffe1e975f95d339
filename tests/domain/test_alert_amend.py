"""A safety answer lowered after it raised an alert: the alert keeps its level, status and
deadline; its detail gains the change; those told before are told again."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from bot.domain.alerts import AlertState, AlertUpdated, safety_answer_lowered

T0 = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
LATER = T0 + timedelta(minutes=2)
RAISED = AlertState(
    "ABC234", "suicidality", "crisis", created_at=T0, ack_deadline=T0 + timedelta(minutes=15),
    detail={"instrument": "phq9", "item": "phq9.q9", "item_number": 9, "value": 2},
    recipients=(7,), last_notified_at=T0,
)  # fmt: skip
ACKED = replace(RAISED, status="acknowledged", acknowledged_by=7, acknowledged_at=T0)
UNROUTED = replace(RAISED, recipients=(), last_notified_at=None)
INFO = replace(RAISED, level="info", ack_deadline=None, recipients=(), last_notified_at=None)

# (alert, item answered, whom to tell): None when the alert is left alone
CASES = [
    (RAISED, "phq9.q9", (7,)),
    (ACKED, "phq9.q9", (7,)),  # acknowledged: still told, status unchanged
    (UNROUTED, "phq9.q9", (3,)),  # nobody told yet: the primary
    (INFO, "phq9.q9", ()),  # informational: nobody is paged
    (RAISED, "phq9.q1", None),  # another item's answer
    (replace(RAISED, status="resolved"), "phq9.q9", None),
]


@pytest.mark.parametrize(("alert", "item", "notify"), CASES)
def test_an_alert_amended_when_its_safety_answer_is_lowered(
    alert: AlertState, item: str, notify: tuple[int, ...] | None
) -> None:
    """Item 9 from 2 to 0: detail changed_from 2, changed_to 0; nothing else of the alert
    moves but who was told and when."""
    change = safety_answer_lowered(alert, item, 2, 0, LATER, primary=3)
    if notify is None:
        assert change is None
        return
    assert change is not None and change.notify == notify
    amended = change.alert
    assert amended.detail == {**alert.detail, "changed_from": 2, "changed_to": 0}
    assert (amended.level, amended.status, amended.ack_deadline) == (
        alert.level,
        alert.status,
        alert.ack_deadline,
    )
    assert amended.occurrences == alert.occurrences
    assert isinstance(change.event, AlertUpdated) and change.event.notified == notify
    assert amended.last_notified_at == (LATER if notify else alert.last_notified_at)

"""What a step copies onto its check-in row (`update_checkin`): the values are the
conversation's, and an attribute whose value is already right is left untouched (the ORM
keeps no change for it, as none for one set to its own value)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import inspect as sa_inspect

from bot.app.conversations.transitions import update_checkin
from bot.domain.conversation_state import Conversation, to_json
from bot.storage.tables import Checkin

NOW = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
EARLIER = NOW - timedelta(hours=2)
PHQ = ("phq9",)


def checkin(**fields: Any) -> Checkin:
    base: dict[str, Any] = {"patient_id": 1, "instruments": ["phq9"], "due_at": EARLIER,
                            "expires_at": NOW + timedelta(days=1),
                            "idempotency_key": "k", "reminder_after_s": 3600,
                            "max_reminders": 2, "reminders_sent": 0}  # fmt: skip
    return Checkin.model_validate(base | fields)


@pytest.mark.parametrize(
    ("conv", "before", "expected", "why"),
    [
        (Conversation(PHQ, "asking", "phq9.q1"), {"status": "pending"},
         {"status": "sent", "sent_at": NOW, "next_reminder_at": NOW + timedelta(hours=1)},
         "the first question: sent now, reminded in an hour"),
        (Conversation(PHQ, "asking", "phq9.q2", {"phq9.q1": 0}),
         {"status": "in_progress", "sent_at": EARLIER},
         {"status": "in_progress", "sent_at": EARLIER, "next_reminder_at": NOW + timedelta(hours=1)},
         "an answer: still in progress, sent when it was"),
        (Conversation(PHQ, "completed", None, {"phq9.q1": 0}),
         {"status": "in_progress", "sent_at": EARLIER, "next_reminder_at": NOW},
         {"status": "completed", "completed_at": NOW, "next_reminder_at": None},
         "the last answer: completed now, no reminder"),
        (Conversation(PHQ, "cancelled", None, {"phq9.q1": 0}), {"status": "in_progress"},
         {"status": "cancelled", "partial": True, "next_reminder_at": None},
         "cancelled with an answer: partial"),
        (Conversation(PHQ, "asking", "phq9.q1"), {"status": "sent", "reminders_sent": 2},
         {"status": "sent", "next_reminder_at": None}, "no reminder left"),
    ],
)  # fmt: skip
def test_a_step_copies_the_conversation_onto_its_row(
    conv: Conversation, before: dict[str, Any], expected: dict[str, Any], why: str
) -> None:
    row = checkin(**before)
    update_checkin(row, conv, NOW)
    assert row.state == to_json(conv), why
    assert {k: getattr(row, k) for k in expected} == expected, why


def test_a_value_already_right_is_not_set_again() -> None:
    """Only the state and what differs are set (what the ORM would count as changed)."""
    conv = Conversation(PHQ, "asking", "phq9.q2", {"phq9.q1": 0})
    row = checkin(status="in_progress", sent_at=EARLIER, next_reminder_at=None,
                  reminder_after_s=None, state={"old": True})  # fmt: skip
    state = sa_inspect(row)
    state._commit_all(state.dict)  # (as if loaded: nothing changed yet)
    update_checkin(row, conv, NOW)
    assert set(state.committed_state) == {"state"}

"""The delivery clock (bot/domain/deadlines.py): a check-in's reminder and expiry count
from when its first message went out, never past a pre-session check-in's session start."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot.domain.deadlines import Deadlines, at_expiry, from_delivery

T0 = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
H = timedelta(hours=1)


def started(
    reminder: datetime | None = T0 + H,
    expires: datetime = T0 + 24 * H,
    closes: datetime | None = None,
    expire_after: timedelta | None = 24 * H,
) -> Deadlines:
    """Deadlines as written when the check-in was started at T0 (1 h reminder)."""
    return Deadlines(reminder, expires, H, expire_after, closes)


@pytest.mark.parametrize(
    ("why", "before", "delivered", "reminder", "expires"),
    [
        ("delivered at once: nothing moves", started(), T0, T0 + H, T0 + 24 * H),
        ("held back 3 h by the provider: both move 3 h",
         started(), T0 + 3 * H, T0 + 4 * H, T0 + 27 * H),
        ("an answer since moved the reminder later: it stays",
         started(reminder=T0 + 6 * H), T0 + 3 * H, T0 + 6 * H, T0 + 27 * H),
        ("no reminder left: none is made", started(reminder=None), T0 + 3 * H, None, T0 + 27 * H),
        ("pre-session: never past the session's start",
         started(expires=T0 + 2 * H, closes=T0 + 2 * H), T0 + H, T0 + 2 * H, T0 + 2 * H),
        ("pre-session, delivered before its planned expiry window ends",
         started(expires=T0 + 3 * H, closes=T0 + 10 * H, expire_after=3 * H),
         T0 + 2 * H, T0 + 3 * H, T0 + 5 * H),
        ("a row from before the delivery clock keeps its expiry",
         started(expire_after=None), T0 + 3 * H, T0 + 4 * H, T0 + 24 * H),
        ("delivered before it was due (never earlier than planned)",
         started(), T0 - H, T0 + H, T0 + 24 * H),
    ],
)  # fmt: skip
def test_deadlines_count_from_delivery(
    why: str, before: Deadlines, delivered: datetime, reminder: datetime | None, expires: datetime
) -> None:
    moved = from_delivery(before, delivered)
    assert (moved.next_reminder_at, moved.expires_at) == (reminder, expires), why
    assert moved.closes_at == before.closes_at


@pytest.mark.parametrize(
    ("why", "delivered", "now", "verdict"),
    [
        ("before its expiry, delivered or not: wait", False, T0 + 23 * H, "wait"),
        ("before its expiry, delivered: wait", True, T0 + 23 * H, "wait"),
        ("asked and its time is up: expired (missed if unanswered)", True, T0 + 24 * H, "expire"),
        ("never asked and its time is up: given up, not missed", False, T0 + 24 * H, "give_up"),
    ],
)
def test_what_happens_at_expiry(why: str, delivered: bool, now: datetime, verdict: str) -> None:
    assert at_expiry(delivered, T0 + 24 * H, now) == verdict, why

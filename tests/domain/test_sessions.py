"""The position of a score in the series, at its exact boundaries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot.domain.sessions import SessionPosition, session_position

S1 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
S2 = S1 + timedelta(days=3)
S3 = S2 + timedelta(days=4)
H = timedelta(hours=1)


@pytest.mark.parametrize(
    ("starts", "at", "expected", "why"),
    [
        ((), S1, SessionPosition(0, None), "no session at all: before the series"),
        ((S1, S2), S1 - H, SessionPosition(0, None), "a baseline before the first session"),
        ((S1, S2), S1, SessionPosition(0, None), "made at the session's start: before it"),
        ((S1, S2), S1 + 24 * H, SessionPosition(1, 24.0), "the day after the first session"),
        ((S2, S1, S3), S2 + 40 * H / 60, SessionPosition(2, 0.67), "any order; 40 min, 2 dp"),
        ((S1, S2, S3), S3 - H, SessionPosition(2, 95.0), "a future session does not count"),
        ((S1, S2, S3), S3 + 2 * H, SessionPosition(3, 2.0), "+2 h after the third"),
        ((S1,), S1 + timedelta(seconds=1), SessionPosition(1, 0.0), "a second after it"),
    ],
)
def test_session_position(
    starts: tuple[datetime, ...], at: datetime, expected: SessionPosition, why: str
) -> None:
    """Each row's position is the count of sessions started strictly before the score and
    the hours since the latest of them."""
    assert session_position(starts, at) == expected, why

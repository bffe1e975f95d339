"""Two real `checkin worker` processes on one PostgreSQL database, sending a wave to a
Telegram stand-in that enforces Telegram's limits (30 per sliding second, a token bucket
per chat): together they keep to both, as one process does alone. A correctness test:
what is asserted is what the provider saw, never how fast."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.standins.limited_wave import run_wave

pytestmark = [pytest.mark.postgres, pytest.mark.fault]


def test_two_workers_together_keep_to_the_providers_limits(
    postgres_url: str, tmp_path: Path
) -> None:
    """A burst of one per chat, so each patient's second message must wait for its chat's
    token whichever worker sends it: no 429, never more than 30 in any second, every
    message sent once, and both workers sent some."""
    result = run_wave(postgres_url, tmp_path, workers=2, patients=200, burst=1)
    print(f"\n{result}")
    assert (result.missed, result.duplicates) == (0, 0)
    assert result.refused == 0
    assert result.most_in_a_second <= 30
    assert all(sent > 0 for sent in result.sent_by_worker), result.sent_by_worker

"""Alert digests: the notices one clinician is sent within a short window leave as one
message. Which go together is the shell's (bot/app/alerts/digests.py); the order is here:
the most urgent first (crisis, urgent, routine, info), then the oldest."""

from __future__ import annotations

from collections.abc import Sequence

from bot.domain.events import AlertNotice

_RANK = {"crisis": 0, "urgent": 1, "routine": 2, "info": 3}


def urgency(level: str) -> int:
    """A level's rank, the most urgent lowest (an unknown level last)."""
    return _RANK.get(level, len(_RANK))


def digest_order(notices: Sequence[AlertNotice]) -> tuple[AlertNotice, ...]:
    """`notices` in the order a digest lists them."""
    return tuple(sorted(notices, key=lambda n: (urgency(n.level), n.at, n.code)))

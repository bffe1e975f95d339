"""A check-in's clock runs from delivery, not from when it was queued.

A wave of thousands of check-ins is started in seconds but leaves at the provider's pace
(30 Telegram messages a second: 100,000 first questions take 55 minutes). Counted from the
start, the last patients of such a wave would be reminded, or even closed as "missed",
before their question reached them. So:

* until its first message is accepted by the provider (or the patient answers, which
  proves it reached them), an open check-in is neither reminded nor expired;
* once it is, the first reminder is due ``reminder_after`` after that moment (or later, if
  an answer since moved it), and the expiry is ``expire_after`` after it, never earlier
  than planned and never past ``closes_at`` (a pre-session check-in's session start);
* a check-in whose first message is still not out when its planned expiry comes (its
  session start, for a pre-session one) is given up: cancelled as undelivered, never
  expired as missed against the patient.

Pure: times are arguments, aware UTC.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal


@dataclass(frozen=True)
class Deadlines:
    """What a check-in row holds about its clock."""

    next_reminder_at: datetime | None  # None: no reminder (none left, or none configured)
    expires_at: datetime
    reminder_after: timedelta | None
    expire_after: timedelta | None  # None: a row from before the delivery clock (kept as is)
    closes_at: datetime | None = None  # never moved by delivery


def from_delivery(deadlines: Deadlines, delivered_at: datetime) -> Deadlines:
    """The deadlines once the first message went out at `delivered_at`."""
    reminder = deadlines.next_reminder_at
    if reminder is not None and deadlines.reminder_after is not None:
        reminder = max(reminder, delivered_at + deadlines.reminder_after)
    expires = deadlines.expires_at
    if deadlines.expire_after is not None:
        expires = max(expires, delivered_at + deadlines.expire_after)
    if deadlines.closes_at is not None:
        expires = min(expires, deadlines.closes_at)
    return Deadlines(
        reminder, expires, deadlines.reminder_after, deadlines.expire_after, deadlines.closes_at
    )


Verdict = Literal["wait", "expire", "give_up"]


def at_expiry(delivered: bool, expires_at: datetime, now: datetime) -> Verdict:
    """What to do with an open check-in at `now`: wait; expire it (asked, its time is up);
    or give it up (its time is up and it was never asked: cancelled, not missed).
    `delivered`: the provider accepted its opening, or the patient has answered it."""
    if now < expires_at:
        return "wait"
    return "expire" if delivered else "give_up"

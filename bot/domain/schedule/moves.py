"""What a plan means once some of it was stored before: which occurrences are new, which
are stored already, and which a moved session's earlier score already answers.

Pure: the occurrences :func:`bot.domain.schedule.plan` finds now and the :class:`Stored`
ones (with their check-in's status) in; one :class:`Outlook` per occurrence out. The
planner plans the ``"new"`` ones; ``checkin schedule preview`` shows all of them, so the
preview shows exactly what will be sent.

An occurrence is stored once, under its key (``before_session:2``), whatever happens to
its session later. When a session moves after its pre-session check-in was sent, that
check-in's time no longer matches the plan (its due time differs), and:

* a score completed in the window of the moved session still counts (``"satisfied"``):
  not asked again. The window runs from the rule's offset before the moved check-in's
  due time up to the moved session's start (``-2h`` with a due time of 08:00: from 06:00);
* a check-in still open that came due in that window is the moved session's (``"stored"``),
  and closes by the moved session's start (:func:`to_close`);
* otherwise the moved session gets a new check-in, keyed by the rule, the session number
  and the session's new start in UTC (``before_session:2@20270312T1530Z``), so moving a
  session twice, or back, never plans one time twice.

Only check-ins before a session are matched this way (they are the ones a later session
time makes stale); any other stored occurrence is simply stored, and not sent again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Literal

from bot.domain.schedule.planning import Occurrence

OPEN = ("sent", "in_progress", "paused")

Status = Literal["new", "stored", "satisfied"]


@dataclass(frozen=True)
class Stored:
    """An occurrence planned before, and the status of the check-in it was asked in."""

    key: str
    rule: str
    session: int | None
    due_at: datetime
    status: str  # pending, sent, in_progress, paused, completed, expired, cancelled
    completed_at: datetime | None = None
    checkin_id: int | None = None
    expires_at: datetime | None = None  # the check-in's


@dataclass(frozen=True)
class Outlook:
    """One occurrence of the plan: new (to be planned), stored already, or satisfied by
    `stored`'s score. `moved`: planned again because its session moved."""

    occurrence: Occurrence
    status: Status
    stored: Stored | None = None
    moved: bool = False


def moved_key(occurrence: Occurrence) -> str:
    """The key of a pre-session occurrence planned again for a moved session."""
    assert occurrence.closes_at is not None
    return f"{occurrence.key}@{occurrence.closes_at:%Y%m%dT%H%MZ}"


def reconcile(found: Sequence[Occurrence], stored: Sequence[Stored]) -> list[Outlook]:
    """Each of `found` against the `stored` occurrences of the same patient."""
    by_key = {s.key: s for s in stored}
    outlooks = []
    for occurrence in found:
        same = by_key.get(occurrence.key)
        if occurrence.closes_at is None or same is None:
            outlooks.append(Outlook(occurrence, "stored" if same else "new", same))
            continue
        earlier = [
            s for s in stored
            if s.rule == occurrence.rule and s.session == occurrence.session
            and s.status != "cancelled"
        ]  # fmt: skip
        outlooks.append(_before_session(occurrence, same, earlier, by_key))
    return outlooks


def _before_session(
    occurrence: Occurrence, same: Stored, earlier: Sequence[Stored], by_key: dict[str, Stored]
) -> Outlook:
    again = replace(occurrence, key=moved_key(occurrence))
    if again.key in by_key:
        return Outlook(again, "stored", by_key[again.key], moved=True)
    if same.due_at == occurrence.due_at or same.status == "pending":
        return Outlook(occurrence, "stored", same)  # as planned: its session did not move
    assert occurrence.closes_at is not None
    start, end = window(occurrence)
    done = [
        s for s in earlier
        if s.status == "completed" and s.completed_at is not None
        and start <= s.completed_at < end
    ]  # fmt: skip
    if done:
        return Outlook(occurrence, "satisfied", max(done, key=_completed))
    still_open = [s for s in earlier if s.status in OPEN and start <= s.due_at < end]
    if still_open:
        return Outlook(occurrence, "stored", still_open[-1])
    return Outlook(again, "new", same, moved=True)


def to_close(outlooks: Sequence[Outlook]) -> list[tuple[int, datetime]]:
    """(check-in id, new expiry) for open pre-session check-ins whose session moved to
    before their expiry: they close when it starts, as any pre-session check-in does."""
    found = []
    for outlook in outlooks:
        stored, closes = outlook.stored, outlook.occurrence.closes_at
        if outlook.status != "stored" or stored is None or closes is None:
            continue
        still_open = stored.status in OPEN and stored.checkin_id is not None
        if still_open and stored.expires_at is not None and closes < stored.expires_at:
            assert stored.checkin_id is not None
            found.append((stored.checkin_id, closes))
    return found


def window(occurrence: Occurrence) -> tuple[datetime, datetime]:
    """When a score counts as taken before a (moved) session: from the rule's offset
    before the check-in's due time to the session's start."""
    assert occurrence.closes_at is not None
    offset = occurrence.closes_at - (occurrence.intended_at or occurrence.due_at)
    return occurrence.due_at - offset, occurrence.closes_at


def _completed(stored: Stored) -> datetime:
    assert stored.completed_at is not None
    return stored.completed_at

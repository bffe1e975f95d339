"""The leases this process holds on the messages it is to send.

A lease is what lets another worker take over the messages of one that died (see
:mod:`bot.app.outbox.delivery`). While sends are under way their leases are renewed
(:func:`renew`), so a worker that is alive but slow keeps them; and what a stopping process
leased but never began to send is handed back (:class:`NotBegun`), to go at once from
another worker or the next process instead of after its lease. A message whose send began
is never handed back: the provider may have it (at least once, never a second copy on
purpose).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from bot.storage import outbox
from bot.storage.database import Database
from bot.storage.outbox import Outgoing
from bot.storage.repository import Repository

log = logging.getLogger(__name__)


async def renew(
    db: Database, lines: Iterable[list[Outgoing]], now: datetime, lease: timedelta
) -> None:
    """Extend to `now + lease` the leases of the messages of `lines` (still in flight).

    A worker that is alive but slow (a busy machine, a provider answering late) must not
    lose its messages while a send is under way, or the message goes out twice. Each
    renewal is one UPDATE per claim, and only extends a lease still ours: one that ran out
    and was claimed by another worker stays theirs, and ours is not sent."""
    claims: dict[datetime, list[Outgoing]] = {}
    for line in lines:
        for message in line:
            if message.lease_until is not None and message.id is not None:
                claims.setdefault(message.lease_until, []).append(message)
    renewed = now + lease
    try:
        async with db.transaction() as session:
            repo = Repository(session)
            for held, messages in claims.items():
                ids = [m.id for m in messages if m.id is not None]
                kept = await repo.renew_leases(ids, held, renewed)
                for message in messages:
                    if message.id in kept:
                        message.lease_until = renewed
    except Exception as exc:  # the leases may run out: at least once, as after a crash
        log.warning("could not renew outbox leases (%s)", type(exc).__name__)


async def hand_back_rest(db: Database, rest: list[Outgoing], held_until: datetime) -> None:
    """Queue again the rest of a line behind a message to be retried (they follow it at
    its retry); on a failure they wait out their lease instead: later, still in order."""
    try:
        async with db.transaction() as session:
            await outbox.hand_back(session, {held_until: [m.id for m in rest]})
    except Exception as exc:
        log.warning("could not hand back held messages (%s)", type(exc).__name__)


class NotBegun:
    """The messages leased to this process (claimed, or handed over by a turn) whose send
    has not begun. The renewals above update the very objects held here, so each is known
    by the lease it is held under now."""

    def __init__(self) -> None:
        self._messages: dict[int, Outgoing] = {}

    def hold(self, leased: Sequence[Outgoing]) -> None:
        self._messages.update((message.id, message) for message in leased)

    def begin(self, message: Outgoing) -> None:
        """Its send begins: whatever happens now, it stays leased."""
        self._messages.pop(message.id, None)

    def forget(self, line: Sequence[Outgoing]) -> None:
        """A line is done with (what was not sent follows its own rules: handed back at a
        retry, or waiting out its lease)."""
        for message in line:
            self._messages.pop(message.id, None)

    async def hand_back(self, db: Database) -> int:
        """Queue again, in one statement, every message held (guarded: only those still
        being sent under the lease we hold); how many. Failing only means waiting for the
        leases, so a failure is logged, not raised."""
        messages, self._messages = self._messages, {}
        leases: dict[datetime, list[int]] = {}
        for message in messages.values():
            if message.lease_until is not None:
                leases.setdefault(message.lease_until, []).append(message.id)
        if not leases:
            return 0
        try:
            async with db.transaction() as session:
                return await outbox.hand_back(session, leases)
        except Exception as exc:  # they wait out their leases, as after a crash
            log.warning("could not hand back the unsent messages (%s)", type(exc).__name__)
            return 0

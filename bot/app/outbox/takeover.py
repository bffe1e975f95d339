"""Taking over the sends of a process that died, at start-up.

A message being sent carries a lease (``[scheduler] send_lease_s``); a process killed mid-send
leaves its leases behind, and the messages wait until they run out before anyone sends them
again. On PostgreSQL that wait is what keeps a live worker's sends its own: another worker
may be sending them right now. On SQLite only one process schedules (``run`` and ``worker``
hold ``<database>.scheduler.lock``), so a process that has just taken that lock knows the
holder of every lease is gone, and hands the messages back at once instead of waiting up
to a whole lease. What the dead process had sent but not yet marked goes out again either
way (at least once); releasing only makes it sooner.
"""

from __future__ import annotations

import logging

from bot.app.ports import Clock
from bot.storage import outbox
from bot.storage.database import Database

log = logging.getLogger(__name__)


async def release_dead_leases(db: Database, clock: Clock) -> int:
    """On SQLite, make every message a stopped process was sending due now; how many. Call
    it only while holding the scheduler lock, before delivering. On PostgreSQL nothing is
    released: a lease there may belong to a worker that is alive. Failing to release only
    means waiting for the leases, so a failure is logged, not raised."""
    if db.dialect != "sqlite":
        return 0
    try:
        async with db.transaction() as session:
            released = await outbox.release_leases(session, clock())
    except Exception as exc:  # the leases then run out, as they would have anyway
        log.warning("could not take over unfinished sends (%s)", type(exc).__name__)
        return 0
    if released:
        log.info("took over %d messages a stopped process was sending", released)
    return released

"""Run the `checkin` command line as `python -m tests.fault.launch ...`, with the outbound
pace raised for the stand-ins.

`checkin run` paces Telegram at 30 messages a second and one a second per chat, Telegram's
documented limits. The stand-in has none, and with them the 3,000 messages of 500 short
check-ins keep the fault suite waiting on the pacer for well over a minute (see docs/PERFORMANCE.md).
The fault tests are about losing and doubling nothing, not pacing, so both limits are
lifted here (and not shared through the database on PostgreSQL); order per chat is kept
by the outbox (one message per recipient in flight).
"""

from __future__ import annotations

from collections.abc import Mapping

import bot.bootstrap
from bot.app.outbox.pacing import Pacer, Pacing
from bot.cli import main


def fast_pacers(settings: object = None, underway: object = None) -> dict[str, Pacer]:
    return {"telegram": Pacer(rate_per_s=2000), "sms": Pacer(rate_per_s=2000)}


def unshared(pacers: Mapping[str, Pacer], db: object, hold_s: float) -> dict[str, Pacing]:
    return dict(pacers)


if __name__ == "__main__":
    bot.bootstrap.default_pacers = fast_pacers
    bot.bootstrap.shared_pacers = unshared
    main()

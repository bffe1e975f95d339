"""Long polling: the laptop and single-process mode (one poller per bot token).

One bad update cannot stop it. Updates are fetched as JSON and read one at a time
(`TelegramChannel.fetch_updates`): an update that can never be used (unreadable, nested too
deep, unparseable) is skipped, its id and kind logged and counted, and the offset moves past
it. When a whole answer cannot be read, the updates are fetched one at a time until the bad
one is found and skipped. Network errors are retried with backoff; an update that could not
be *recorded* (the database is away) is fetched again after a pause, and until it is, the
poller makes no progress, which ``/healthz`` reports as a stall. Any other exception is
logged by type and polling goes on; only a second poller on the same token (409 Conflict)
or the stop event ends it, and ``/healthz`` then says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from telegram.error import Conflict, TelegramError

from bot.bootstrap import App
from bot.channels.telegram import UNREADABLE, TelegramChannel
from bot.web.telegram import ALLOWED_UPDATES, Unusable, handle_update, skip

log = logging.getLogger(__name__)
MAX_BACKOFF_S = 60.0


async def poll(
    app: App, channel: TelegramChannel, stop: asyncio.Event, timeout_s: int = 20
) -> None:
    """Poll until `stop` is set (or another process polls this token)."""
    app.telegram_intake.poller_started(app.clock(), timeout_s)
    try:
        await _Poller(app, channel, stop, timeout_s).run()
    finally:
        app.telegram_intake.poller_stopped()


class _Poller:
    def __init__(
        self, app: App, channel: TelegramChannel, stop: asyncio.Event, timeout_s: int
    ) -> None:
        self.app, self.channel, self.stop, self.timeout_s = app, channel, stop, timeout_s
        self.offset: int | None = None
        self.one_at_a_time = False  # after an unreadable answer, until the bad update is found
        self.backoff_s = 1.0
        self.ready = False  # started, and any webhook deleted (getUpdates refuses while one is set)

    async def run(self) -> None:
        while not self.stop.is_set():
            try:
                if not await self._round():
                    return
            except Exception as exc:  # never let one round end the poller; the type only
                log.error("telegram poller: unexpected %s; polling on", type(exc).__name__)
                await self._pause()

    async def _round(self) -> bool:
        """Fetch and handle one batch; False when polling must end (Conflict)."""
        try:
            if not self.ready:
                await self.channel.start()
                await self.channel.bot.delete_webhook()
                self.ready = True
            batch = await self.channel.fetch_updates(
                self.offset, self.timeout_s, 1 if self.one_at_a_time else 100, ALLOWED_UPDATES
            )
        except Conflict:
            log.error("another process is polling this bot token; stopping the poller")
            return False
        except TelegramError as exc:
            log.warning(
                "getUpdates failed (%s); retrying in %.0fs", type(exc).__name__, self.backoff_s
            )
            await self._pause()
            return True
        if await self._handle(batch):
            self.backoff_s = 1.0
            self.app.telegram_intake.polled(self.app.clock())
        return True

    async def _handle(self, batch: list[Any]) -> bool:
        """Handle the updates in order; False if one was not recorded (fetched again)."""
        for data in batch:
            update_id = data.get("update_id") if isinstance(data, dict) else None
            if not isinstance(update_id, int):
                skip(self.app, data, "unparseable")  # no id: nothing to move the offset by
                continue
            if data.get(UNREADABLE):
                if not self.one_at_a_time:
                    self.one_at_a_time = True  # find which update it is
                    return True
                skip(self.app, {"update_id": update_id}, "unreadable")
                self.one_at_a_time = False
            elif not await self._take(data):
                return False
            self.offset = update_id + 1
        return True

    async def _take(self, data: dict[str, Any]) -> bool:
        try:
            await handle_update(self.app, self.channel, data)
        except Unusable as exc:
            skip(self.app, data, exc.reason)
        except Exception as exc:  # the type only: a message could quote what the patient sent
            log.error("update not recorded (%s); it will be fetched again", type(exc).__name__)
            await self._pause()
            return False
        return True

    async def _pause(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop.wait(), timeout=self.backoff_s)
        self.backoff_s = min(self.backoff_s * 2, MAX_BACKOFF_S)

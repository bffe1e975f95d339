"""Places a send holds on its way: one at the gate of provider calls (`Call`, a
deliverer's `concurrency`) and one among the sends not yet settled (`Place`, a sender's
`most_unsettled`). Each is given back once it is no longer needed, not at the end of the
send: see :mod:`bot.app.outbox.delivery` and :mod:`bot.app.outbox.sending`."""

from __future__ import annotations

import asyncio


class Call:
    """A place at `gate` for one provider call, given back once the provider has answered
    (`release`) or the block ends: sends waiting to record their outcome held every place
    before, and crisis messages behind them waited 0.4 s for nothing."""

    def __init__(self, gate: asyncio.Semaphore) -> None:
        self._gate = gate
        self._held = False

    async def __aenter__(self) -> Call:
        await self._gate.acquire()
        self._held = True
        return self

    async def __aexit__(self, *_: object) -> None:
        self.release()

    def release(self) -> None:
        if self._held:
            self._held = False
            self._gate.release()


class Place:
    """One of `Sender.most_unsettled` places, given back at the block's end unless a send
    kept it (then `Sender._settle` gives it back)."""

    def __init__(self, places: asyncio.Semaphore) -> None:
        self._places = places
        self._held = False

    async def __aenter__(self) -> Place:
        await self._places.acquire()
        self._held = True
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._held:
            self._held = False
            self._places.release()

    def keep(self) -> None:
        if not self._held:
            raise RuntimeError("a send's place was given back before it was kept")
        self._held = False

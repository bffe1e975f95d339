"""The small protocols the use cases depend on. Adapters implement them; tests use the
real adapters against local stand-ins, or the hand-written fakes in tests/fakes.py."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Protocol

from bot.rendering.renderer import Rendered
from bot.storage.outbox import Claiming, Outgoing
from bot.storage.spool import Mark, Spooled, SpoolStatus


class Clock(Protocol):
    def __call__(self) -> datetime: ...


class Channel(Protocol):
    """Delivers one rendered message to one address on one channel."""

    name: str

    async def send(self, address: str, message: Rendered, payload: dict[str, object]) -> str | None:
        """Deliver, returning the provider's message id; raise DeliveryFailed if not taken."""
        ...


class HandOff(Protocol):
    """This process's deliverer, to which a turn hands the rows it queued: leased to it in
    the turn's transaction (`claiming`), given to it after the commit (`take`)."""

    def claiming(self) -> Claiming | None:
        """How to lease rows queued from now (None: nothing is handed off here)."""
        ...

    def take(
        self, claimed: Sequence[Outgoing], edits: Mapping[int, str | None], more: bool
    ) -> None:
        """The rows leased, in id order, with the questions their edits edit; `more`:
        rows were queued that a claim must take (wake the deliverer for them)."""
        ...


class InboundSpool(Protocol):
    """Inbound messages made durable before the database has them (a local file), read
    back in the order they were added; the reader says how far it got."""

    def append(self, message: Spooled) -> bool:
        """Durable when this returns True; False when the spool is full (nothing kept)."""
        ...

    def pending(self, limit: int) -> list[tuple[Mark, Spooled | None]]:
        """The oldest `limit` records not consumed yet, each with its position; None for
        a record that cannot be read (torn by a crash while it was written, or sealed
        under a key the ring no longer has), which the spool has logged."""
        ...

    def consume(self, upto: Mark) -> None:
        """Every message up to and including `upto` is in the inbox (a mark of an
        earlier generation of the spool, or behind what is consumed, changes nothing)."""
        ...

    def status(self) -> SpoolStatus: ...

"""The small protocols the use cases depend on. Adapters implement them; tests use the
real adapters against local stand-ins, or the hand-written fakes in tests/fakes.py."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from bot.rendering.renderer import Rendered


class Clock(Protocol):
    def __call__(self) -> datetime: ...


class Channel(Protocol):
    """Delivers one rendered message to one address on one channel."""

    name: str

    async def send(self, address: str, message: Rendered, payload: dict[str, object]) -> str | None:
        """Deliver, returning the provider's message id; raise DeliveryFailed if not taken."""
        ...

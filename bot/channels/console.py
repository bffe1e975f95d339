"""The console channel: the embedded default, no credentials. Messages go to a text stream
(the terminal in `checkin demo` and `checkin chat`); replies come from the keyboard.
Each message names its recipient by kind and id (``bot> [to patient 3] ...``), never by
address: `checkin worker` prints the messages of every console patient."""

from __future__ import annotations

import itertools
import sys
from typing import TextIO

from bot.rendering.renderer import Rendered


class ConsoleChannel:
    name = "console"

    def __init__(self, stream: TextIO | None = None, prefix: str = "bot> ") -> None:
        self.stream = stream
        self.prefix = prefix
        self._ids = itertools.count(1)

    async def send(self, address: str, message: Rendered, payload: dict[str, object]) -> str:
        stream = self.stream or sys.stdout
        lines = message.text.splitlines() or [""]
        whose = payload.get("recipient")  # "patient 3": a worker prints every patient's
        prefix = f"{self.prefix}[to {whose}] " if whose else self.prefix
        indent = " " * len(prefix)
        stream.write(prefix + f"\n{indent}".join(lines) + "\n\n")
        stream.flush()
        return f"console-{next(self._ids)}"

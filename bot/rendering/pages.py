"""The clinicians' web panel's pages: one autoescaped Jinja environment over
``templates/`` (pages in ``panel/``, alert words shared with the messages), built by the
web app at start-up. Code passes data; the templates own every word. Times arrive already
in the viewer's zone; the ``when`` filter writes them the same way everywhere (the time
alone today, the date too otherwise).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import jinja2

from bot.rendering.renderer import TEMPLATES_DIR


def _when(at: datetime | None, now: datetime) -> str:
    if at is None:
        return ""
    if at.date() == now.date():
        return f"{at:%H:%M}"
    return f"{at:%a %d %b %H:%M}"


class Pages:
    def __init__(self, directory: Path = TEMPLATES_DIR) -> None:
        self.environment = jinja2.Environment(
            loader=jinja2.FileSystemLoader(directory),
            undefined=jinja2.StrictUndefined,
            autoescape=True,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.environment.filters["when"] = _when

    def render(self, name: str, **context: Any) -> str:
        return self.environment.get_template(f"panel/{name}.html.j2").render(context)

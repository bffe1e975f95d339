"""The clinicians' web panel's pages: one autoescaped Jinja environment over
``templates/`` (pages in ``panel/``, alert words shared with the messages), built by the
web app at start-up for the clinic's locale (``[panel] locale``). Code passes data; the
templates own every word. Times arrive already in the viewer's zone; the filters write
them, and every number, the way the locale does (:mod:`bot.rendering.local_formats`):

``when(now)`` the time alone today, the weekday, day and month with it otherwise;
``date(style)`` and ``datetime(style)`` a CLDR length or skeleton; ``time``; ``zone``
("BST"); ``number(digits)``; ``percent(signed)`` from a value in percent; ``dose`` a
:class:`~bot.domain.dosing.Dose` as ``0,5 mg/kg``. ``chart(series, title, description)``
draws a series chart with the same dates and doses.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2

from bot.rendering.local_formats import LocalFormats
from bot.rendering.renderer import TEMPLATES_DIR
from bot.rendering.series_svg import ChartFormats, SeriesChart, series_svg

DEFAULT_LOCALE = "en-US"
AXIS_DATE = "medium"  # the chart's first and last date: "May 4, 2026", "4 may 2026"


class Pages:
    def __init__(self, directory: Path = TEMPLATES_DIR, locale: str = DEFAULT_LOCALE) -> None:
        self.environment = jinja2.Environment(
            loader=jinja2.FileSystemLoader(directory),
            undefined=jinja2.StrictUndefined,
            autoescape=True,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.formats = formats = LocalFormats.named(locale)
        self.environment.filters.update(
            when=formats.when, date=formats.date, datetime=formats.date_time,
            time=formats.time, zone=formats.zone, number=formats.number,
            percent=formats.percent, dose=formats.dose,
        )  # fmt: skip
        self.chart_formats = ChartFormats(lambda at: formats.date(at, AXIS_DATE), formats.dose)
        self.environment.globals["chart"] = self.chart

    def chart(self, series: SeriesChart, title: str, description: str) -> str:
        return series_svg(series, title, description, self.chart_formats)

    def render(self, name: str, **context: Any) -> str:
        return self.environment.get_template(f"panel/{name}.html.j2").render(context)

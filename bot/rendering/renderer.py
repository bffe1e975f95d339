"""The one Jinja environment over ``templates/``: intents in, the words a person reads out.

Each intent has a template of the same name, snake-cased, per language and channel:
``Ask`` on Telegram in Spanish is ``templates/es/telegram/ask.j2``. Code passes data, the
templates own every word. ``StrictUndefined`` makes a missing value an error in tests, not a
blank in a patient's message. Telegram templates are HTML and autoescaped; SMS renders are
transliterated to GSM-7 so a message costs the fewest segments.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from bot.config import Clinic
from bot.domain import events as ev
from bot.domain.instruments import Instrument, Item
from bot.domain.languages import LANGUAGES
from bot.instruments import Catalog
from bot.rendering import gsm7

TEMPLATES_DIR = Path(__file__).resolve().parents[2] / "templates"
CHANNELS = ("telegram", "sms", "console", "whatsapp")
BUTTONED = ("telegram", "whatsapp")  # channels that show answers as buttons
OPTIONAL = {"answered"}  # intents a channel may choose not to show
ACK_BUTTON = "ack:"  # callback data of an alert's Acknowledge button: "ack:<code>"
# what `Renderer.render` keeps: the same words for every patient (a question asked again
# with the problem of the reply before is rare, and rendered each time)
_KEPT = (ev.Ask, ev.Answered, ev.Intro, ev.CrisisResources)
KEPT = 2048  # renderings kept (a few hundred per channel and language in practice)


@dataclass(frozen=True)
class Button:
    label: str
    data: str


@dataclass(frozen=True)
class Rendered:
    text: str
    buttons: tuple[Button, ...] = ()
    html: bool = False


def _environment(directory: Path, autoescape: bool) -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(directory),
        undefined=jinja2.StrictUndefined,
        autoescape=autoescape,  # noqa: S701 -- SMS and console are plain text, not HTML
        trim_blocks=True,
        lstrip_blocks=True,
        # read once per process: checking each template's file for changes cost a stat()
        # per template a message (about 1 % of a turn's CPU); a changed template needs a
        # restart, as a new one already did
        auto_reload=False,
    )


def _cheapest(template: jinja2.Template, context: dict[str, Any], first: bool) -> str:
    """The fullest SMS rendering that fits one segment, else the one with fewest segments.
    The first question of an instrument always keeps its option labels."""
    variants = ("full", "short") if first else ("full", "short", "minimal")
    renders = [gsm7.to_gsm7(template.render(context | {"variant": v}).strip()) for v in variants]
    return next((r for r in renders if gsm7.segments(r) == 1), min(renders, key=gsm7.segments))


def template_name(intent: object) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", type(intent).__name__).lower()


class Renderer:
    def __init__(self, catalog: Catalog, clinic: Clinic, directory: Path = TEMPLATES_DIR) -> None:
        self.catalog = catalog
        self.clinic = clinic
        self.html = _environment(directory, autoescape=True)  # Telegram HTML
        self.plain = _environment(directory, autoescape=False)  # SMS and console
        # which templates exist, read once: listing walks the directory tree, and doing
        # it per message was over half the rendering time (a new template needs a restart)
        self._present = frozenset(self.plain.list_templates())
        self._kept = functools.lru_cache(maxsize=KEPT)(self._render)

    def render(
        self, intent: ev.Intent, channel: str, language: str, country: str | None = None
    ) -> Rendered | None:
        """The message for `intent`, or None where the channel does not show that intent.

        `country`: the patient's (``Clinic.country_of``; None: the clinic's own). Every
        template gets ``crisis``, the crisis lines and emergency number for that country
        in that language (:class:`bot.domain.crisis.CrisisContacts`).

        What a turn renders (a question, an answer shown, an introduction, the crisis
        message) is kept, the last two thousand: the same words for every patient, and
        the templates and the catalog are read once per process, so rendering them again
        gave the same text for a tenth of a millisecond of CPU a turn (SMS: each
        variant tried). The rest (scores, alerts, lists) is rendered each time."""
        if isinstance(intent, _KEPT) and not (isinstance(intent, ev.Ask) and intent.problem):
            return self._kept(intent, channel, language, country)
        return self._render(intent, channel, language, country)

    def _render(
        self, intent: ev.Intent, channel: str, language: str, country: str | None
    ) -> Rendered | None:
        language = language if language in LANGUAGES else "en"
        crisis = self.clinic.crisis_for(country, language)
        name = template_name(intent)
        path = f"{language}/{channel}/{name}.j2"
        env = self.html if channel == "telegram" else self.plain
        if name in OPTIONAL and path not in self._present:
            return None
        context = self._context(intent, language) | {
            "clinic": self.clinic,
            "channel": channel,
            "crisis": crisis,
        }
        template = env.get_template(path)
        if channel == "sms":
            text = _cheapest(template, context, first=getattr(intent, "position", 1) == 1)
        else:
            text = template.render(context | {"variant": "full"}).strip()
        buttons = self._buttons(intent, language, channel) if channel in BUTTONED else ()
        return Rendered(text, buttons, html=channel == "telegram")

    def list_button(self, language: str) -> str:
        """The label of a WhatsApp list picker's button (the answers open under it)."""
        language = language if language in LANGUAGES else "en"
        return self.plain.get_template(f"{language}/whatsapp/list_button.j2").render().strip()

    def more_alerts(self, count: int, language: str) -> str:
        """The end of a WhatsApp alert cut to fit its template: `count` alerts not shown,
        and how to see them."""
        language = language if language in LANGUAGES else "en"
        template = self.plain.get_template(f"{language}/whatsapp/alerts_more.j2")
        return template.render(count=count).strip()

    # ---- context per intent ----------------------------------------------------------

    def _context(self, intent: ev.Intent, language: str) -> dict[str, Any]:
        if isinstance(intent, ev.Ask):
            return self._ask(intent, language)
        if isinstance(intent, ev.Intro):
            return self._intro(self.catalog.get(intent.instrument), language)
        if isinstance(intent, ev.Answered):
            item = self._item(intent.item)
            option = item.option(intent.value) if isinstance(intent.value, int) else None
            label = option.label.get(language) if option else str(intent.value)
            return {"item_text": item.text.get(language), "answer": label, "value": intent.value}
        if isinstance(intent, ev.Completed):
            return {
                "scores": [self._score(s, language) for s in intent.scores],
                "show_scores": intent.show_scores,
            }
        if isinstance(intent, ev.CrisisResources):
            return {"kind": intent.flag}
        return {k: getattr(intent, k) for k in getattr(intent, "__dataclass_fields__", {})}

    def _ask(self, ask: ev.Ask, language: str) -> dict[str, Any]:
        item = self._item(ask.item)
        instrument = self.catalog.get(ask.item.split(".", 1)[0])
        options = [{"value": o.value, "label": o.label.get(language)} for o in item.options]
        problem = None
        if ask.problem is not None:
            labels = [self._label(item, v, language) for v in ask.problem.candidates]
            problem = {
                "reason": ask.problem.reason,
                "detail": ask.problem.detail,
                "candidates": labels,
            }
        return {
            "item_text": item.text.get(language),
            "recall": instrument.recall.get(language) if instrument.recall else None,
            "instrument": instrument.name,
            "kind": item.kind,
            "options": options,
            "low": min(item.values, default=0),
            "high": max(item.values, default=0),
            "position": ask.position,
            "of": ask.of,
            "skippable": item.skippable,
            "problem": problem,
            "cannot_skip": ask.cannot_skip,
            "reminder": ask.reminder,
        }

    def _intro(self, instrument: Instrument, language: str) -> dict[str, Any]:
        return {
            "instrument": instrument.name,
            "intro": instrument.intro.get(language) if instrument.intro else None,
            "checklist": instrument.kind == "checklist",
            "count": len([i for i in instrument.items if i.when is None]),
        }

    def _score(self, result: Any, language: str) -> dict[str, Any]:
        instrument = self.catalog.get(result.instrument)
        band = next((b for b in instrument.bands if b.key == result.band), None)
        return {
            "instrument": instrument.name,
            "total": result.total,
            "max_total": result.max_total,
            "band": band.label.get(language) if band else None,
            "checklist": instrument.kind == "checklist",
        }

    def _buttons(self, intent: ev.Intent, language: str, channel: str) -> tuple[Button, ...]:
        if isinstance(intent, ev.AlertNotice) and channel == "telegram":
            label = self.html.get_template(f"{language}/telegram/ack_button.j2").render()
            return (Button(label.strip(), f"{ACK_BUTTON}{intent.code}"),)
        if isinstance(intent, ev.AlertDigest):  # one per alert, each naming its code
            label = self.html.get_template(f"{language}/telegram/ack_button.j2").render()
            return tuple(
                Button(f"{label.strip()} {n.code}", f"{ACK_BUTTON}{n.code}") for n in intent.notices
            )
        if not isinstance(intent, ev.Ask):
            return ()
        item = self._item(intent.item)
        env = self.html if channel == "telegram" else self.plain
        button = env.get_template(f"{language}/{channel}/button.j2")
        return tuple(
            Button(
                button.render(value=o.value, label=o.label.get(language)).strip(),
                f"{item.key}={o.value}",
            )
            for o in item.options
        )

    def _item(self, key: str) -> Item:
        return self.catalog.get(key.split(".", 1)[0]).item(key)

    @staticmethod
    def _label(item: Item, value: int, language: str) -> str:
        option = item.option(value)
        return f"{value} ({option.label.get(language)})" if option else str(value)

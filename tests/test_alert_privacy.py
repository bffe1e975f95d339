"""No alert text carries item wording or what the patient wrote: every clinician template,
every channel, en and es, rendered with a canary planted wherever a careless shell might
pass it; and through the service, an item 9 answered in words reaches the clinician as
numbers only."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bot.domain import events as ev
from bot.rendering.renderer import CHANNELS, LANGUAGES
from bot.storage.database import Database
from bot.storage.tables import Alert
from tests.test_alerting import RENDERER, clinic, to, wired
from tests.test_rendering import clinician_intents
from tests.test_services import CATALOG, T0, rows, said

CANARY = "zebra-canary-4471"  # stands for an answer text; must never reach a clinician
WORDING = sorted(
    {text for i in CATALOG for item in i.items for text in item.text.texts.values()}
    | {text for i in CATALOG for item in i.items for o in item.options for text in o.label.texts.values()},
    key=len,
)  # fmt: skip
# Option labels short enough to occur by chance in clinician words ("No", "Yes") are left out.
DISTINCT_WORDING = [w for w in WORDING if len(w) > 12]


def planted() -> list[ev.Intent]:
    """Every clinician intent, plus notices whose detail carries the canary and wording."""
    detail = {"instrument": "phq9", "item": "phq9.q9", "item_number": 9, "value": 2,
              "total": 14, "change": 6, "session": 3, "raw_text": CANARY,
              "answer": CANARY, "item_text": DISTINCT_WORDING[-1], "endorsed": True,
              "late": True, "in_checkin": True,
              "how": "stop", "reached_instrument": "phq9",
              "reached_item_number": 9, "endorsed_within_days": 14, "open_serious_alert": True}  # fmt: skip
    notices = [
        ev.AlertNotice("ABC234", rule, level, "P-1", detail, escalation, T0)
        for rule in (
            "suicidality",
            "side_effect_red_flag",
            "missed_checkins",
            "worsening",
            "message_unprocessed",
            "risk_language",
            "opted_out",
            "x",
        )
        for level in ("crisis", "routine")
        for escalation in (0, 2)
    ]
    return [*clinician_intents(), *notices]


@pytest.mark.parametrize("channel", CHANNELS)
@pytest.mark.parametrize("language", LANGUAGES)
def test_no_clinician_template_shows_wording_or_answer_text(channel: str, language: str) -> None:
    """The canary and every item's wording and option labels are absent from every render."""
    for intent in planted():
        rendered = RENDERER.render(intent, channel, language)
        assert rendered is not None
        shown = " ".join([rendered.text, *(b.label for b in rendered.buttons)])
        assert CANARY not in shown, (intent, shown)
        assert not [w for w in DISTINCT_WORDING if w in shown], (intent, shown)


async def test_an_answer_in_words_reaches_the_clinician_as_numbers(db: Database) -> None:
    """Item 9 answered by its label: the notice says "item 9 = 2" and no words of it."""
    services, _, clock = wired(db)
    _, _, patient_id = await clinic(db)
    await services.asking.ask(patient_id, ["phq9"])
    await services.starting.start_due()
    for n in range(8):
        await services.inbox.handle_inbound(said("pat", "not at all", n))
    await services.inbox.handle_inbound(
        said("pat", "More than half the days", 8)
    )  # the answer text
    (alert,) = await rows(db, Alert)
    clock.now += timedelta(minutes=16)
    await services.escalation.escalate_due()
    await services.inbox.handle_inbound(said("dr-r", "/alerts", 50, clock.now))
    everything = await to(db, "dr-r") + await to(db, "dr-b")
    assert len(everything) == 3 and "item 9 = 2" in everything[0]
    for text in everything:
        lowered = text.lower()
        assert "more than half" not in lowered and "not at all" not in lowered
        assert not [w for w in DISTINCT_WORDING if w.lower() in lowered]
    assert alert.level == "crisis"

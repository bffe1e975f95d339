"""Trajectory alerts through the service, in the clinician's own words: worsening measured
from the best score says so, and a baseline below the response threshold is named."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bot.app.services import Services
from bot.domain import events as ev
from bot.domain.languages import LANGUAGES
from bot.storage.database import Database
from bot.storage.tables import Alert
from tests.test_alerting import RENDERER, clinic, to, wired
from tests.test_services import T0, SimClock, rows, said


class Patient:
    """Answers whole PHQ-9 check-ins a day apart, each message with its own id."""

    def __init__(self, services: Services, clock: SimClock, patient_id: int) -> None:
        self.services, self.clock, self.patient_id, self.sent = services, clock, patient_id, 0

    async def phq9(self, *values: int) -> None:
        self.clock.now += timedelta(days=1)
        await self.services.asking.ask(self.patient_id, ["phq9"])
        await self.services.starting.start_due()
        replies = [*values, 0] if any(values) else list(values)  # item 10 when any is >= 1
        for value in replies:
            self.sent += 1
            inbound = said("pat", str(value), self.sent, at=self.clock.now)
            await self.services.inbox.handle_inbound(inbound)


async def test_worsening_from_the_best_score_says_so(db: Database) -> None:
    """PHQ-9 20, then 4, then 14: 6 better than baseline but 10 worse than the best; the
    clinician reads "up 10 from best 4", not "change -6 from baseline"."""
    services, _, clock = wired(db)
    _, _, patient_id = await clinic(db)
    patient = Patient(services, clock, patient_id)
    await patient.phq9(3, 3, 3, 3, 3, 3, 2, 0, 0)  # 20
    await patient.phq9(1, 1, 1, 1, 0, 0, 0, 0, 0)  # 4
    await patient.phq9(2, 2, 2, 2, 2, 2, 2, 0, 0)  # 14
    worsening = [a for a in await rows(db, Alert) if a.rule == "worsening"]
    assert [(a.level, a.status) for a in worsening] == [("routine", "open")]
    (notice,) = [body for body in await to(db, "dr-r") if "worsening" in body]
    assert notice.startswith("ROUTINE: P-017, worsening (PHQ9, total 14, up 10 from best 4)")
    assert "from baseline" not in notice


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("channel", ["sms", "telegram", "console"])
def test_trajectory_notices_name_what_they_measure(channel: str, language: str) -> None:
    """Every channel and language: from the best, from the previous score, loss of response,
    and a baseline below the response threshold."""
    base = {"instrument": "qids_sr16", "total": 14, "baseline": 16, "change": -2, "session": 4}
    words = {
        "en": ("up 10 from best 4", "up 5 from previous 9",
               "loss of response (QIDS_SR16, total 14, change -2 from",
               "baseline 9 below threshold", "probable non-response"),
        "es": ("sube 10 desde el mejor valor, 4", "sube 5 desde el anterior, 9",
               "pérdida de respuesta (QIDS_SR16, total 14, cambio de -2 desde",
               "valor inicial 9 bajo el umbral", "probable falta de respuesta"),
    }[language]  # fmt: skip
    cases = [
        ("worsening", {**base, "best": 4, "rise_from_best": 10, "previous": 9,
                       "measured_from": "best"}, words[0]),
        ("worsening", {**base, "best": 8, "rise_from_best": 6, "previous": 9,
                       "measured_from": "previous"}, words[1]),
        ("loss_of_response", base, words[2]),
        ("non_response", {**base, "baseline": 9, "baseline_below_threshold": True}, words[3]),
    ]  # fmt: skip
    for rule, detail, expected in cases:
        notice = ev.AlertNotice("ABC234", rule, "routine", "P-1", detail, 0, T0)
        rendered = RENDERER.render(notice, channel, language)
        assert rendered is not None
        assert expected in rendered.text, rendered.text
        assert words[4] not in rendered.text or rule == "non_response"

"""A digest to a Spanish-speaking clinician is cut into messages by its Spanish words: a
storm of worsening alerts ("sube 8 desde el anterior, 12" is longer than "up 8 from
previous 12") goes in parts that each fit the channel, every code in one of them. Sized
by the English words, as before, the Spanish parts were too long for SMS and for the
WhatsApp alert template, and the channel cut their last alerts off."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from bot.app.alerts.digests import Digests
from bot.domain import events as ev
from bot.rendering import budget
from tests.test_alerting import RENDERER

AT = datetime(2026, 5, 4, 16, tzinfo=UTC)
WORSE = {"instrument": "phq9", "total": 20, "measured_from": "previous", "previous": 12}


@pytest.mark.parametrize("channel", ["sms", "whatsapp"])
def test_a_spanish_digest_is_sized_by_its_spanish_words(channel: str) -> None:
    """Forty worsening alerts: each Spanish part within the channel's limit, all forty
    codes told once, in order."""
    notices = tuple(
        ev.AlertNotice(f"C{n:05d}", "worsening", "urgent", f"PPPP{n}", WORSE, 0, AT)
        for n in range(40)
    )
    parts = Digests(None, RENDERER, lambda: AT)._parts(channel, "es", notices)  # type: ignore[arg-type]
    limit = budget.alert_chars(channel, RENDERER.clinic.name)
    texts = [RENDERER.render(part, channel, "es") for part in parts]
    assert all(t is not None and budget.alert_length(t.text, channel) <= limit for t in texts)
    told = [c for t in texts if t is not None for c in re.findall(r"Responda ACK (\S+)", t.text)]
    assert told == [n.code for n in notices]

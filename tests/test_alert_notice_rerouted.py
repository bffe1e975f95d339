"""What a notice sent at once instead of a clinician whose message failed for good says
(``AlertNotice.rerouted``), in English and Spanish, on every channel: why it comes to the
reader, in place of "reminder N", which they never had; whose message failed (the
patient's own clinician or another) and nothing else of them. A deadline escalation
says "reminder N" as before; a digest says it on the rerouted alert's line only."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from bot.domain import events as ev
from bot.domain.events import Rerouted
from bot.rendering import gsm7
from bot.rendering.renderer import CHANNELS
from tests.test_alerting import RENDERER

T0 = datetime(2026, 5, 4, 12, tzinfo=UTC)
NOTICE = ev.AlertNotice("ABC234", "message_unprocessed", "urgent", "P-1", {}, 1, T0)
HEADERS: list[tuple[str, Rerouted | None, str]] = [
    ("en", "primary", "URGENT (not delivered to the patient's clinician; sent to you): P-1, "),
    ("en", "other", "URGENT (not delivered to another clinician; sent to you): P-1, "),
    ("en", None, "URGENT (reminder 1, not yet acknowledged): P-1, "),
    ("es", "primary", "URGENTE (no se pudo entregar al clínico del paciente; se le envía a usted): P-1, "),
    ("es", "other", "URGENTE (no se pudo entregar a otro clínico; se le envía a usted): P-1, "),
    ("es", None, "URGENTE (aviso 1, sin confirmar): P-1, "),
]  # fmt: skip


def shown(channel: str, header: str) -> str:
    """`header` as the channel shows it (SMS: GSM-7, no accents)."""
    return gsm7.to_gsm7(header) if channel == "sms" else header


@pytest.mark.parametrize("channel", CHANNELS)
@pytest.mark.parametrize(("language", "rerouted", "header"), HEADERS)
def test_a_rerouted_notice_says_why_it_comes_to_the_reader(
    channel: str, language: str, rerouted: Rerouted | None, header: str
) -> None:
    """Rerouted: whose message failed and that it is sent to the reader, no reminder count;
    any other escalation (rerouted None, the deadline's): "reminder 1" as before."""
    rendered = RENDERER.render(replace(NOTICE, rerouted=rerouted), channel, language)
    assert rendered is not None
    assert rendered.text.startswith(shown(channel, header)), rendered.text


@pytest.mark.parametrize("channel", CHANNELS)
@pytest.mark.parametrize("language", ["en", "es"])
def test_a_digest_says_it_on_the_rerouted_alerts_line_only(channel: str, language: str) -> None:
    """A digest mixing a rerouted alert with the reader's own reminder: the rerouted line
    says why, the other keeps its reminder count."""
    (primary,) = [h for lang, why, h in HEADERS if lang == language and why == "primary"]
    (reminder,) = [h for lang, why, h in HEADERS if lang == language and why is None]
    own = replace(NOTICE, code="XYZ789", patient="P-2", escalation=1)
    digest = ev.AlertDigest((replace(NOTICE, rerouted="primary"), own))
    rendered = RENDERER.render(digest, channel, language)
    assert rendered is not None
    lines = rendered.text.splitlines()
    assert lines[1].startswith("1. " + shown(channel, primary)), rendered.text
    (second,) = [line for line in lines if line.startswith("2. ")]
    assert second.startswith("2. " + shown(channel, reminder).replace("P-1", "P-2"))
    assert rendered.text.count(shown(channel, primary)[len("URGENT ") : -len(": P-1, ")]) == 1

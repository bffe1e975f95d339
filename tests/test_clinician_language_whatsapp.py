"""A Spanish-speaking clinician on WhatsApp, end to end through the real twilio client and
the WhatsApp stand-in: their alerts go as the Spanish alert template with Spanish words;
with no Spanish template configured, as the English one, still with Spanish words, never
not at all. Before, a clinician's alerts were English words in the English template."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bot.channels.whatsapp import WhatsAppChannel
from bot.storage.database import Database
from bot.storage.tables import Alert, OutboundMessage
from scheduler.loop import tick
from tests.test_alert_digests import raise_alert
from tests.test_clinician_language_telegram import speaks_spanish
from tests.test_whatsapp import CLINICIAN, Rig, rig, rows  # noqa: F401  (rig: a fixture)
from tests.test_whatsapp_alerts import digesting, patients_of_one_clinician, variable


@pytest.mark.parametrize("configured", [True, False], ids=["es template", "en fallback"])
async def test_a_spanish_clinician_gets_the_spanish_alert_template_or_else_the_english(
    rig: Rig,  # noqa: F811
    db: Database,
    configured: bool,
) -> None:
    """A crisis alert to a Spanish clinician whose window is shut goes as the alert
    template in Spanish when one is configured, else the English one; either way the
    words in {{2}} are Spanish and the message is sent."""
    channel = rig.app.channels["whatsapp"]
    assert isinstance(channel, WhatsAppChannel)
    if not configured:
        templates = dict(channel.settings.templates) | {"alert": {"en": rig.sids["alert_en"]}}
        channel.settings = replace(channel.settings, templates=templates)
    alerting = digesting(rig, rig.app.services.alerting.rules.digest_window)  # type: ignore[union-attr]
    (patient,) = await patients_of_one_clinician(rig, 1)
    await speaks_spanish(db)
    await raise_alert(rig, alerting, patient, crisis=True)
    await tick(rig.app)

    (created,) = rig.created(CLINICIAN)
    assert created["ContentSid"] == rig.sids["alert_es" if configured else "alert_en"]
    (alert,) = await rows(db, Alert)
    text = variable(created)
    assert text.startswith("CRISIS: P-1, ideación suicida referida")
    assert text.endswith(f"Responda ACK {alert.code}")
    (sent,) = await rows(db, OutboundMessage, OutboundMessage.recipient_kind == "clinician")
    assert sent.status == "sent"

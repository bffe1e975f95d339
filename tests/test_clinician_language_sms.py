"""A Spanish-speaking clinician on SMS, end to end through the real twilio client and the
Twilio stand-in: a storm's digests come in Spanish, each sized in Spanish so that Twilio
takes every one (1,600 characters); ALERTS, ACK and a word the desk does not know are
answered in Spanish, the commands the same as in English. Before, all of it was English."""

from __future__ import annotations

from bot.storage.database import Database
from bot.storage.tables import Alert
from scheduler.loop import tick
from tests.standins.twilio import MAX_BODY_CHARS
from tests.test_alert_digests import alerting_of, raise_alert
from tests.test_alerts_sms import (
    SECOND,
    clinician_statuses,
    creates_to_doctor,
    from_doctor,
    patients_of_an_sms_doctor,
    sms_storm,
    to_doctor,
    told_in_order,
)
from tests.test_clinician_language_telegram import speaks_spanish
from tests.test_sms import Rig, rig, table  # noqa: F401  (rig: a fixture)


async def test_a_storm_reaches_a_spanish_sms_clinician_as_spanish_digests_that_fit(
    rig: Rig,  # noqa: F811
    db: Database,
) -> None:
    """An urgent alert, then ten urgent and twenty-five crisis alerts within the window:
    Spanish digests of at most 1,600 characters, all accepted, every code in one of them,
    crisis first."""
    alone, *digests = await sms_storm(rig, lambda: speaks_spanish(db))
    assert alone.startswith("URGENTE: P-01, no se pudo procesar un mensaje del paciente")
    assert creates_to_doctor(rig) == len(digests) + 1  # none refused
    assert all(len(body) <= MAX_BODY_CHARS for body in digests)
    assert len(digests) >= 2 and digests[0].startswith(
        f"35 alertas, las mas urgentes primero (mensaje 1 de {len(digests)}):\n1. CRISIS: "
    )
    told = await told_in_order(db, digests, "Responda")
    assert [level for _, level in told] == ["crisis"] * 25 + ["urgent"] * 10
    assert await clinician_statuses(db) == {"sent"}


async def test_alerts_ack_and_help_are_answered_in_spanish(
    rig: Rig,  # noqa: F811
    db: Database,
) -> None:
    """ALERTS lists in Spanish; "ack CODE" in lower case acknowledges, confirmed in Spanish;
    an unknown code and an unknown word get the Spanish refusal and help."""
    alerting_of(rig, SECOND * 0)
    (patient,) = await patients_of_an_sms_doctor(rig, 1)
    await speaks_spanish(db)
    await raise_alert(rig, rig.app.services.alerting, patient, crisis=True)  # type: ignore[arg-type]
    await tick(rig.app)
    (alert,) = await table(db, Alert)

    await from_doctor(rig, "ALERTS")
    assert to_doctor(rig)[-1] == (
        f"Alertas abiertas (1):\n{alert.code} CRISIS P-01, ideacion suicida referida, "
        f"{alert.created_at:%d/%m %H:%M}\nResponda ACK y un codigo para confirmar."
    )
    await from_doctor(rig, "ack ZZZZZZ")
    assert to_doctor(rig)[-1].startswith("Ninguna alerta abierta tiene el codigo ZZZZZZ.")
    await from_doctor(rig, f"ack {alert.code.lower()}")
    assert to_doctor(rig)[-1] == f"Confirmado {alert.code}. Se detienen los avisos."
    (acked,) = await table(db, Alert)
    assert acked.status == "acknowledged"
    await from_doctor(rig, "hola")
    assert to_doctor(rig)[-1].startswith("Comandos clinicos: responda ACK")

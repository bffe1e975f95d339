"""Item 9 over SMS, end to end through the real twilio client and the Twilio stand-in:
crisis resources to the patient, the alert to the clinician's phone, ALERTS lists it and
ACK CODE acknowledges it."""

from __future__ import annotations

from bot.storage.database import Database
from bot.storage.repository import Repository
from bot.storage.tables import Alert, Clinician
from scheduler.loop import tick
from tests.test_sms import (  # noqa: F401  (rig: a fixture)
    CLINIC_NUMBER,
    PUBLIC,
    Rig,
    invited,
    rig,
    table,
)

DOCTOR = "+15555550177"


async def from_doctor(rig: Rig, body: str) -> None:  # noqa: F811
    request = rig.twilio.inbound_request(f"{PUBLIC}/sms", from_=DOCTOR, to=CLINIC_NUMBER, body=body)
    assert (await rig.post(request)).status_code == 200
    await tick(rig.app)


def to_doctor(rig: Rig) -> list[str]:  # noqa: F811
    return [m["body"] for m in rig.twilio.messages.values() if m["to"] == DOCTOR]


async def test_item_9_reaches_patient_and_clinician_then_alerts_and_ack(
    rig: Rig,  # noqa: F811
    db: Database,
) -> None:
    """YES, a PHQ-9 with item 9 = 2: 988 to the patient, the alert to the clinician by SMS."""
    rig.app.deliverer.pacers = {}  # pacing has its own tests
    patient_id = await invited(rig)
    async with rig.app.db.transaction() as session:
        repo = Repository(session)
        doctor = Clinician(display_name="Dr. S", channel="sms", address=DOCTOR)
        await repo.add(doctor)
        patient = await repo.get_patient(patient_id)
        assert patient is not None
        patient.clinician_id, patient.display_name = doctor.id, "P-S1"
        await repo.add(patient)
    await rig.text("YES")
    await rig.app.services.asking.ask(patient_id, ["phq9"])
    await tick(rig.app)
    for _ in range(8):
        await rig.text("0")
    await rig.text("2")
    assert any("988" in body for body in rig.bodies())
    (alert,) = await table(db, Alert)
    (notice,) = to_doctor(rig)
    assert notice.startswith("CRISIS: P-S1, suicidal thoughts endorsed (PHQ9, item 9 = 2)")
    assert notice.endswith(f"Reply ACK {alert.code}")
    await from_doctor(rig, "ALERTS")
    assert to_doctor(rig)[-1].startswith(f"Open alerts (1):\n{alert.code} CRISIS P-S1")
    await from_doctor(rig, f"ACK {alert.code}")
    (acked,) = await table(db, Alert)
    assert (acked.status, acked.acknowledged_by) == ("acknowledged", doctor.id)
    assert to_doctor(rig)[-1] == f"Acknowledged {alert.code}. Reminders for it stop."

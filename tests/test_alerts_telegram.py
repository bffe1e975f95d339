"""Item 9 over Telegram, end to end through the real python-telegram-bot and the Bot API
stand-in: crisis resources to the patient, the alert to the clinician with an Acknowledge
button that acknowledges it, and /trend answered with a PNG photo."""

from __future__ import annotations

import contextlib
import io

from PIL import Image

from bot.storage.database import Database
from bot.storage.repository import Repository
from bot.storage.tables import Alert, Clinician, Patient
from scheduler.loop import tick
from tests.test_telegram import CHAT, Rig, invited, rig, table  # noqa: F401  (rig: a fixture)

DOCTOR = 9001


async def linked_clinician(rig: Rig, patient_id: int) -> int:  # noqa: F811
    async with rig.app.db.transaction() as session:
        repo = Repository(session)
        doctor = Clinician(display_name="Dr. T", channel="telegram", address=str(DOCTOR))
        await repo.add(doctor)
        patient = await repo.get_patient(patient_id)
        assert patient is not None and doctor.id is not None
        patient.clinician_id, patient.display_name = doctor.id, "P-T1"
        await repo.add(patient)
    return doctor.id


async def item_9_positive(rig: Rig) -> int:  # noqa: F811
    rig.app.deliverer.pacers = {}  # no one-second gap per chat: pacing has its own tests
    patient_id, code = await invited(rig)
    await rig.say(f"/start {code}")
    doctor_id = await linked_clinician(rig, patient_id)
    await rig.app.services.asking.ask(patient_id, ["phq9"])
    await tick(rig.app)
    for _ in range(8):
        await rig.say("0")
    await rig.tap("phq9.q9=2")
    return doctor_id


async def test_item_9_reaches_patient_and_clinician_and_the_button_acks(
    rig: Rig,  # noqa: F811
    db: Database,
) -> None:
    """Crisis text to the patient, a numbers-only notice with a button to the clinician; the
    tap acknowledges and is confirmed."""
    doctor_id = await item_9_positive(rig)
    assert any("988" in text for text in rig.texts(CHAT))
    (notice,) = rig.stand_in.messages(DOCTOR)
    (alert,) = await table(db, Alert)
    assert notice["text"].startswith("CRISIS: P-T1, suicidal thoughts endorsed (PHQ9, item 9 = 2)")
    assert "dead" not in notice["text"]  # no item wording
    (button,) = notice["reply_markup"]["inline_keyboard"][0]
    assert (button["text"], button["callback_data"]) == ("Acknowledge", f"ack:{alert.code}")
    tap = rig.stand_in.callback_update(DOCTOR, notice["message_id"], button["callback_data"])
    assert (await rig.post(tap)).status_code == 200
    await tick(rig.app)
    (acked,) = await table(db, Alert)
    assert (acked.status, acked.acknowledged_by) == ("acknowledged", doctor_id)
    assert rig.texts(DOCTOR)[-1] == f"Acknowledged {alert.code}. Reminders for it stop."


async def test_trend_arrives_as_a_photo(rig: Rig, db: Database) -> None:  # noqa: F811
    """/trend NAME after a completed PHQ-9: sendPhoto with a PNG and the caption."""
    await item_9_positive(rig)
    await rig.say("not difficult")  # the tenth item: the PHQ-9 is scored
    await rig.say("/trend P-T1", chat=DOCTOR)
    (photo_call,) = rig.stand_in.calls_to("sendPhoto")
    assert photo_call.params["chat_id"] == DOCTOR
    (png,) = rig.stand_in.photos.values()
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG" and image.size[0] == 800
    assert rig.texts(DOCTOR)[-1].startswith("P-T1: 1 check-in over time.")
    await rig.say("/patients", chat=DOCTOR)
    (patient,) = await table(db, Patient)
    assert f"{patient.id} P-T1: PHQ9 2, 1 open alert" in rig.texts(DOCTOR)[-1]


async def test_the_crisis_message_and_alert_leave_without_waiting_for_a_tick(
    rig: Rig,  # noqa: F811
    db: Database,
) -> None:
    """As in `checkin run`: the webhook wakes delivery when its transaction commits, so the
    crisis resources and the clinician's alert arrive with no scheduler tick at all."""
    import asyncio

    from bot.app.outbox.delivery import deliver_when_woken

    rig.app.deliverer.pacers = {}
    patient_id, code = await invited(rig)
    await rig.say(f"/start {code}")
    await linked_clinician(rig, patient_id)
    await rig.app.services.asking.ask(patient_id, ["phq9"])
    await tick(rig.app)
    for _ in range(8):
        await rig.say("0")
    stop = asyncio.Event()
    rig.app.wake = asyncio.Event()
    courier = asyncio.create_task(deliver_when_woken(rig.app.deliverer, rig.app.wake, stop))
    try:
        question = rig.last_question()
        update = rig.stand_in.callback_update(CHAT, question["message_id"], "phq9.q9=2")
        assert (await rig.post(update)).status_code == 200  # no tick after this
        for _ in range(100):
            if rig.stand_in.messages(DOCTOR) and any("988" in t for t in rig.texts(CHAT)):
                break
            await asyncio.sleep(0.05)
        assert any("988" in text for text in rig.texts(CHAT))
        (notice,) = rig.stand_in.messages(DOCTOR)
        assert notice["text"].startswith("CRISIS: P-T1")
    finally:
        stop.set()
        courier.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await courier

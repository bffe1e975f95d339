"""A status callback that reaches us before its send is recorded (Twilio called it before
its REST answer reached the sender): the real twilio client against the Twilio stand-in,
whose hook posts the signed callback to our app from inside the create request."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta

from bot.storage.database import Database
from bot.storage.tables import Alert, EarlyReceipt, OutboundMessage, Patient
from scheduler.loop import tick
from tests.standins.twilio import JSON, new_sid, signed_request, status_callback_params
from tests.test_sms import CLINIC_NUMBER, PATIENT, PUBLIC, Rig, invited, rig, table

__all__ = ["rig"]  # the SMS rig fixture


def callback_first(rig: Rig, status: str, error_code: int | None = None) -> list[int]:
    """Answer each created message's status callback before the create request returns;
    the codes our app answered, in order."""
    answered: list[int] = []

    async def post(message: JSON) -> None:
        request = rig.twilio.status_request(message["sid"], status, error_code)
        answered.append((await rig.post(request)).status_code)

    hook: Callable[[JSON], Awaitable[None]] = post
    rig.twilio.on_created = hook
    return answered


async def test_a_carrier_opt_out_before_the_send_is_recorded_is_kept(
    rig: Rig, db: Database
) -> None:
    """Failed with 21610 before the invitation's sid was written: the invitation is failed
    and the patient opted out once the send is recorded."""
    answered = callback_first(rig, "failed", 21610)
    await invited(rig)
    assert answered == [204]
    (invitation,) = await table(db, OutboundMessage)
    (patient,) = await table(db, Patient)
    assert (invitation.status, patient.status) == ("failed", "opted_out")
    assert invitation.last_error == "sms: twilio error 21610 (after sending)"


async def test_delivered_before_the_send_is_recorded_is_kept(rig: Rig, db: Database) -> None:
    """Delivered before the sid was written: delivered, not left at sent."""
    callback_first(rig, "delivered")
    await invited(rig)
    (invitation,) = await table(db, OutboundMessage)
    assert invitation.status == "delivered"


async def test_an_opt_out_before_the_send_is_recorded_tells_the_clinician(
    rig: Rig, db: Database
) -> None:
    """An active patient's question failed with 21610 before its sid was written: opted
    out, and the clinician told, as when the callback comes after."""
    patient_id = await invited(rig)
    await rig.text("YES")
    callback_first(rig, "failed", 21610)
    await rig.app.services.asking.ask(patient_id, ["phq2"])
    await tick(rig.app)
    (patient,) = await table(db, Patient)
    (alert,) = await table(db, Alert)
    assert (patient.status, alert.rule, alert.detail["how"]) == ("opted_out", "opted_out", "stop")


async def test_a_receipt_no_message_ever_carries_is_pruned_by_the_tick(
    rig: Rig, db: Database
) -> None:
    """A callback for a sid we never sent is kept, and gone a day later."""
    params = status_callback_params(
        account_sid=rig.twilio.account_sid, message_sid=new_sid(), status="delivered",
        to=PATIENT, from_=CLINIC_NUMBER,
    )  # fmt: skip
    response = await rig.post(signed_request(f"{PUBLIC}/sms/status", params, rig.twilio.auth_token))
    assert response.status_code == 204
    await tick(rig.app)
    assert len(await table(db, EarlyReceipt)) == 1
    rig.clock.now += timedelta(hours=25)
    await tick(rig.app)
    assert await table(db, EarlyReceipt) == []

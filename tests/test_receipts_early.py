"""A status callback that reaches us before its send is recorded (Twilio called it before
its REST answer reached the sender): the real twilio client against the Twilio stand-in,
whose hook posts the signed callback to our app from inside the create request."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from bot.storage.database import Database
from bot.storage.tables import OutboundMessage, Patient
from tests.standins.twilio import JSON
from tests.test_sms import Rig, invited, rig, table

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

"""Twilio's signed webhooks whose fields are not Twilio's: a re-cut captured request keeps a
valid signature, so each field the service reads is checked and anything else gets 400."""

from __future__ import annotations

import pytest

from bot.channels.twilio_form import inbound_problem, is_address
from bot.storage.database import Database
from bot.storage.tables import Answer, InboundMessage
from scheduler.loop import tick
from tests.standins.twilio import signature, signed_request
from tests.test_sms import CLINIC_NUMBER, PATIENT, PUBLIC, Rig, invited, rig, table

__all__ = ["rig"]  # the SMS rig fixture


async def test_a_replay_with_num_media_moved_into_the_message_sid_is_refused(
    rig: Rig, db: Database
) -> None:
    """The issue's boundary replay: NumMedia0 moved to the end of MessageSid keeps the captured
    signature valid, and the message is refused (400) instead of stored and answered again."""
    patient_id = await invited(rig)
    await rig.text("YES")
    await rig.app.services.asking.ask(patient_id, ["phq9"])
    await tick(rig.app)
    captured = rig.twilio.inbound_request(
        f"{PUBLIC}/sms", from_=PATIENT, to=CLINIC_NUMBER, body="2"
    )
    assert (await rig.post(captured)).status_code == 200
    await tick(rig.app)
    stored, sent = len(await table(db, InboundMessage)), len(rig.bodies())
    recut = dict(captured.form)
    recut["MessageSid"] += "NumMedia" + recut.pop("NumMedia")
    url, token = captured.url, rig.twilio.auth_token
    assert signature(url, recut, token) == signature(url, captured.form, token)
    response = await rig.web.post("/sms", data=recut, headers=captured.headers)
    await tick(rig.app)
    assert response.status_code == 400 and response.text.startswith("MessageSid is not")
    assert len(await table(db, InboundMessage)) == stored and len(rig.bodies()) == sent
    assert [a.value_int for a in await table(db, Answer)] == [2]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("MessageSid", "SM" + "0" * 31),  # one hex digit short
        ("MessageSid", "XX" + "0" * 32),
        ("SmsSid", "SM" + "0" * 32 + "NumMedia0"),
        ("AccountSid", "AC" + "0" * 32),  # another account's message
        ("From", "15555550123"),
        ("From", "+1 555 555 0123"),
        ("To", "whatsapp:5555550100"),
        ("NumMedia", "0NumSegments1"),
        ("NumMedia", None),
        ("MessageSid", None),
    ],
)
async def test_a_signed_form_with_a_field_not_in_twilios_shape_is_refused(
    rig: Rig, db: Database, field: str, value: str | None
) -> None:
    """Each field the service reads, validly signed but not in Twilio's format (or missing),
    is refused with a one-line 400 naming the field, and nothing is recorded."""
    request = rig.twilio.inbound_request(
        f"{PUBLIC}/sms", from_=PATIENT, to=CLINIC_NUMBER, body="hello"
    )
    form = dict(request.form)
    if value is None:
        form.pop(field)
    else:
        form[field] = value
    signed = signed_request(request.url, form, rig.twilio.auth_token)
    response = await rig.web.post("/sms", data=form, headers=signed.headers)
    assert response.status_code == 400
    assert response.text.startswith(field) and "\n" not in response.text
    assert await table(db, InboundMessage) == []


def test_addresses_are_e164_or_whatsapp_and_mms_sids_pass() -> None:
    """E.164 and whatsapp: numbers pass, others do not; an MMS sid (MM...) is a message sid."""
    assert [is_address(a) for a in ("+15555550123", "whatsapp:+447700900123")] == [True, True]
    assert [is_address(a) for a in ("+0123", "+1555x", "whatsapp:", "sip:a@b", "")] == [
        False,
        False,
        False,
        False,
        False,
    ]
    form = {
        "MessageSid": "MM" + "a" * 32,
        "AccountSid": "AC1",
        "From": "whatsapp:+15555550123",
        "To": "+15555550100",
        "NumMedia": "2",
    }
    assert inbound_problem(form, "AC1") is None

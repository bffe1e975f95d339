"""Enrolment links and active patients: a new link revokes the earlier ones, and only a
link issued with --relink moves an active patient to another chat, telling the old chat.
The real python-telegram-bot client, a Bot API stand-in and a real database."""

from __future__ import annotations

from bot.app.operator import patients
from bot.storage.database import Database
from bot.storage.tables import AuditEvent, Patient
from tests.test_telegram import CHAT, Rig, invited, rig, table

__all__ = ["rig"]  # the fixture, shared with the Telegram tests
NEW_CHAT = CHAT + 7
REFUSAL = "That link is not valid or has expired. Please ask your clinic for a new one."
LEFT = "This chat will no longer receive check-in messages."


async def new_code(rig: Rig, patient_id: int, relink: bool = False) -> str:
    invitations = rig.app.invitations()
    if not relink:
        return (await patients.invite(rig.app.db, rig.clock, invitations, patient_id)).code
    invitation = await patients.invite(rig.app.db, rig.clock, invitations, patient_id, relink)
    return invitation.code


async def test_a_new_invite_revokes_the_earlier_link(rig: Rig, db: Database) -> None:
    """After `patient invite`, the link issued before it is refused and the new one works."""
    patient_id, first = await invited(rig)
    second = await new_code(rig, patient_id)
    await rig.say(f"/start {first}")
    assert rig.texts()[-1] == REFUSAL
    await rig.say(f"/start {second}")
    (patient,) = await table(db, Patient)
    assert (patient.status, patient.address) == ("active", str(CHAT))


async def test_a_link_without_relink_cannot_move_an_active_patient(rig: Rig, db: Database) -> None:
    """A plain link opened in another chat leaves an active patient where they are."""
    patient_id, code = await invited(rig)
    await rig.say(f"/start {code}")
    sent_before = len(rig.texts(CHAT))
    await rig.say(f"/start {await new_code(rig, patient_id)}", chat=NEW_CHAT)
    assert rig.texts(NEW_CHAT) == [REFUSAL]
    assert len(rig.texts(CHAT)) == sent_before
    (patient,) = await table(db, Patient)
    assert patient.address == str(CHAT)


async def test_relink_moves_the_patient_tells_the_old_chat_and_is_audited(
    rig: Rig, db: Database
) -> None:
    """A --relink link moves the patient; the old chat gets a notice with no details and
    the move is audited."""
    patient_id, code = await invited(rig)
    await rig.say(f"/start {code}")
    await rig.say(f"/start {await new_code(rig, patient_id, relink=True)}", chat=NEW_CHAT)
    (patient,) = await table(db, Patient)
    assert (patient.status, patient.address) == ("active", str(NEW_CHAT))
    assert rig.texts(CHAT)[-1].startswith(LEFT) and "Lakeside" not in rig.texts(CHAT)[-1]
    assert "Welcome" in rig.texts(NEW_CHAT)[-1]
    actions = [e.action for e in await table(db, AuditEvent)]
    assert actions.count("patient_relinked") == 1

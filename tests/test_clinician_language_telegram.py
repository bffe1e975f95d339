"""A Spanish-speaking clinician on Telegram, end to end through the real python-telegram-bot
and the Bot API stand-in: their alert notice, the digest after it, the reminder and their
/alerts answer come in Spanish, with the codes and buttons as in English, so that what
they type back is understood the same. Before, every message to a clinician was English.
On SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update

from bot.storage.database import Database
from bot.storage.tables import Alert, Clinician
from scheduler.loop import tick
from tests.test_alert_digests import (
    DOCTOR,
    alerting_of,
    last_digest,
    patients_of_one_doctor,
    raise_alert,
)
from tests.test_telegram import CHAT, Rig, link_clinician, rig, table  # noqa: F401  (rig: a fixture)

SECOND = timedelta(seconds=1)


async def speaks_spanish(db: Database) -> None:
    async with db.transaction() as session:
        await session.exec(update(Clinician).values(language="es"))  # type: ignore[call-overload]


async def test_a_spanish_clinician_is_alerted_reminded_and_answered_in_spanish(
    rig: Rig,  # noqa: F811
    db: Database,
) -> None:
    """An urgent alert goes at once in Spanish; two more within the window leave as one
    Spanish digest, crisis first, each with "Responda ACK CODE" and its button; /alerts
    lists all three in Spanish; the button acknowledges, answered in Spanish; a day later
    the reminder of the others is Spanish too."""
    alerting = alerting_of(rig, 2 * SECOND)
    first, second, third = await patients_of_one_doctor(rig, 3)
    await speaks_spanish(db)
    await raise_alert(rig, alerting, first, crisis=False)
    await tick(rig.app)
    (alone,) = [m["text"] for m in rig.stand_in.messages(DOCTOR)]
    codes = {a.patient_id: a.code for a in await table(db, Alert)}
    assert alone.startswith("URGENTE: P-1, no se pudo procesar un mensaje del paciente")
    assert alone.endswith(f"Responda ACK {codes[first.id or 0]}")
    rig.clock.now += SECOND / 2
    await raise_alert(rig, alerting, second, crisis=True)
    await raise_alert(rig, alerting, third, crisis=False)
    rig.clock.now += 2 * SECOND
    await tick(rig.app)

    digest = await last_digest(rig, db)
    codes = digest.codes
    assert digest.lines[0] == "2 alertas, las más urgentes primero:"
    assert digest.lines[1].startswith("1. CRISIS: P-2, ideación suicida referida (PHQ9")
    assert digest.starting("Responda ACK") == [
        f"Responda ACK {codes[second.id or 0]}", f"Responda ACK {codes[third.id or 0]}",
    ]  # fmt: skip
    assert [b["text"] for b in digest.buttons] == [
        f"Confirmar {codes[p.id or 0]}" for p in (second, third)
    ]

    await rig.say("/alerts", chat=DOCTOR)
    listing = rig.stand_in.messages(DOCTOR)[-1]["text"]
    assert listing.startswith("Alertas abiertas (3)")
    assert f"{codes[second.id or 0]} CRISIS P-2, ideación suicida referida" in listing
    assert f"{codes[first.id or 0]} URGENTE P-1" in listing

    tap = digest.tap(rig, 0)
    assert (await rig.post(tap)).status_code == 200
    await tick(rig.app)
    assert rig.stand_in.messages(DOCTOR)[-1]["text"] == (
        f"Confirmado {codes[second.id or 0]}. Se detienen los avisos."
    )
    sent = len(rig.stand_in.messages(DOCTOR))
    rig.clock.now += timedelta(days=1)  # past every acknowledgement deadline
    await tick(rig.app)
    rig.clock.now += 2 * SECOND
    await tick(rig.app)
    reminders = "\n".join(m["text"] for m in rig.stand_in.messages(DOCTOR)[sent:])
    assert "sin confirmar" in reminders and "Responda ACK" in reminders
    assert "Reply ACK" not in reminders and codes[second.id or 0] not in reminders


async def test_a_spanish_clinician_linking_telegram_is_told_in_spanish(
    rig: Rig,  # noqa: F811
    db: Database,
) -> None:
    """The confirmation a clinician gets on linking their chat is in their language (a
    stranger's replies stay English: nobody knows theirs yet)."""
    await link_clinician(rig, "Dra. Ruiz", language="es")
    (linked,) = await table(db, Clinician)
    assert linked.address == str(CHAT)
    (told,) = rig.texts()
    assert told == (
        "Está conectado a los cuestionarios de Lakeside como profesional clínico. "
        "Las alertas de pacientes llegarán aquí."
    )

"""Encryption at rest over Telegram, shown on the bytes: a canary chat id, the patient's name,
free text and a home blood-pressure reading (held in the open check-in's state) are nowhere
in the SQLite file or its WAL, nor in any PostgreSQL table's data."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import make_url

from bot.storage.database import Database
from bot.storage.tables import Answer, Checkin, InboundMessage, Patient
from scheduler.loop import tick
from tests.test_encryption import _copy_every_table
from tests.test_telegram import Rig, invited, rig, table

__all__ = ["rig"]  # the Telegram rig fixture

CHAT = 7390042218815  # 13 digits: no chance of turning up in base64 or hex by accident
WORDS = "quuxcanary lantern otter 5829"
READING = "187/119"
CANARIES = [str(CHAT).encode(), b"Zebediah", b"Quux", WORDS.encode(), READING.encode()]


def leaks(data: bytes) -> list[bytes]:
    return [c for c in CANARIES if c in data]


async def telegram_check_in(rig: Rig) -> int:
    """The canary patient links the chat, then answers side effects up to the blood-pressure
    question with free text between, and gives a reading that raises the alarm; the
    check-in stays open, its state holding the reading."""
    patient_id, code = await invited(rig)
    user = {"first_name": "Zebediah Quux", "username": "zebediahquux"}
    await rig.post(rig.stand_in.text_update(CHAT, f"/start {code}", **user))
    await tick(rig.app)
    await rig.app.services.asking.ask(patient_id, ["side_effects"])
    await tick(rig.app)
    await rig.say(WORDS, chat=CHAT)
    for _ in range(20):
        if "blood pressure" in rig.texts(CHAT)[-1]:
            break
        await rig.say("no", chat=CHAT)
    assert "blood pressure" in rig.texts(CHAT)[-1]
    await rig.say(READING, chat=CHAT)
    return patient_id


async def test_chat_id_name_words_and_reading_are_nowhere_in_the_stored_bytes(
    rig: Rig,
    db: Database,
    dialect: str,
) -> None:
    """A Telegram check-in left open after a high blood-pressure reading; then every byte the
    database holds is searched for the canaries.

    SQLite: the file and its WAL while the service's connections are open, and again after
    closing. PostgreSQL: every table through COPY ... TO STDOUT (what ``pg_dump`` reads);
    the server's own files and WAL are out of a test's reach and are not searched.
    """
    await telegram_check_in(rig)
    (patient,) = await table(db, Patient)
    assert patient.address == str(CHAT)
    (checkin,) = await table(db, Checkin)
    assert checkin.state["answers"]["side_effects.blood_pressure"] == READING  # readable
    assert READING in [a.value_text for a in await table(db, Answer)]
    assert WORDS in [m.text for m in await table(db, InboundMessage)]
    if dialect == "sqlite":
        path = Path(str(make_url(db.url).database))
        wal = path.with_name(path.name + "-wal")
        assert wal.stat().st_size > 0
        assert leaks(path.read_bytes()) == [] and leaks(wal.read_bytes()) == []
        await rig.app.db.dispose()
        await db.dispose()
        data = path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")
        assert leaks(data) == []
    else:
        dump = await _copy_every_table(db)
        assert b"enc1:" in dump and leaks(dump) == []

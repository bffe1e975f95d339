"""Strangers (chats linked to nobody) are answered sparingly and never queue in front of
patients, clinicians or each other; on a real SQLite file and a real PostgreSQL server."""

from __future__ import annotations

from datetime import timedelta

from bot.app.conversations.inbox import Inbound
from bot.app.outbox.delivery import Deliverer
from bot.rendering.renderer import Rendered
from bot.storage.database import Database
from bot.storage.repository import Repository
from bot.storage.tables import OutboundMessage, Patient
from tests.test_services import SimClock, rows, started, wire

PATIENT, FLOODER, OTHER = "7001", "7002", "7003"


class Recorder:
    """A Telegram channel that records each send's address and text, in order."""

    name = "telegram"

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    async def send(self, address: str, message: Rendered, payload: dict[str, object]) -> str:
        self.sent.append((address, message.text))
        return str(len(self.sent))


def typed(chat: str, text: str, n: int, clock: SimClock) -> Inbound:
    return Inbound("telegram", f"m{chat}:{n}", chat, text, clock())


async def telegram_patient(db: Database) -> int:
    async with db.transaction() as session:
        patient = Patient(
            display_name="Pat", timezone="UTC", channel="telegram", address=PATIENT,
            status="active",
        )  # fmt: skip
        await Repository(session).add(patient)
    assert patient.id is not None
    return patient.id


async def test_a_flooding_stranger_delays_no_one(db: Database) -> None:
    """One stranger sending 100 messages gets one reply; another stranger's reply and a
    patient's go out in the same delivery pass, the patient's first message first."""
    w = wire(db)
    patient_id = await telegram_patient(db)
    await started(w, patient_id, ["phq2"])
    channel = Recorder()
    deliverer = Deliverer(db, {"telegram": channel}, w.clock)
    await deliverer.drain()
    channel.sent.clear()
    for n in range(100):
        await w.services.inbox.handle_inbound(typed(FLOODER, f"hello {n}", n, w.clock))
    await w.services.inbox.handle_inbound(typed(OTHER, "hi", 1, w.clock))
    await w.services.inbox.handle_inbound(typed(PATIENT, "1", 1000, w.clock))
    await deliverer.run_once()
    sent = [address for address, _ in channel.sent]
    # the patient's reply first (the edit and the next question leave as one line, so the
    # question may follow the strangers'); each stranger one reply; all in this one pass
    assert sent[0] == PATIENT and set(sent) == {PATIENT, FLOODER, OTHER}
    assert (sent.count(FLOODER), sent.count(OTHER)) == (1, 1)
    to_flooder = [m for m in await rows(db, OutboundMessage) if m.address == FLOODER]
    assert len(to_flooder) == 1


async def test_a_stranger_is_answered_again_after_an_hour(db: Database) -> None:
    """Within an hour of the generic reply a stranger's messages get none; after it, one."""
    w = wire(db)
    start = w.clock.now
    for n, minutes in enumerate((0, 30, 59, 61)):
        w.clock.now = start + timedelta(minutes=minutes)
        await w.services.inbox.handle_inbound(typed(FLOODER, "hello", n, w.clock))
    replies = [m for m in await rows(db, OutboundMessage) if m.address == FLOODER]
    assert len(replies) == 2

"""The storage-backed conversation: inbox first, one transaction per step, the outbox, on a
real SQLite file and a real PostgreSQL server."""

from __future__ import annotations

import asyncio
import io
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlmodel import col, select

from bot.app.conversations.inbox import INBOUND_ATTEMPTS, RECOVERY_GRACE, Inbound
from bot.app.conversations.starting import HELD_BEHIND
from bot.app.outbox.delivery import Deliverer
from bot.app.outbox.pacing import Pacer
from bot.app.outbox.shared_pacing import SharedPacer
from bot.app.services import Services
from bot.bootstrap import build
from bot.channels.console import ConsoleChannel
from bot.config import Clinic, Settings, Telegram
from bot.instruments import load_catalog
from bot.rendering.renderer import Renderer
from bot.storage.database import Database
from bot.storage.repository import Repository
from bot.storage.tables import Answer, Checkin, InboundMessage, OutboundMessage, Patient, Score
from tests.conftest import TEST_RING
from tests.statements import statements

CATALOG = load_catalog()
CLINIC = Clinic(name="Lakeside", contact="555-0100", show_scores=True)
T0 = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)


@dataclass
class SimClock:
    now: datetime = T0

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Wired:
    services: Services
    deliverer: Deliverer
    console: io.StringIO
    clock: SimClock


def wire(db: Database, clock: SimClock | None = None) -> Wired:
    clock = clock or SimClock()
    console = io.StringIO()
    services = Services.create(db, CATALOG, Renderer(CATALOG, CLINIC), CLINIC, clock)
    deliverer = Deliverer(db, {"console": ConsoleChannel(console)}, clock)
    return Wired(services, deliverer, console, clock)


@pytest.fixture
def wired(db: Database) -> Wired:
    return wire(db)


async def add_patient(db: Database, address: str = "pat-1", language: str = "en") -> int:
    async with db.transaction() as session:
        patient = Patient(
            display_name="Pat", timezone="UTC", language=language, channel="console",
            address=address, status="active",
        )  # fmt: skip
        await Repository(session).add(patient)
    assert patient.id is not None
    return patient.id


def said(address: str, text: str, n: int, at: datetime = T0) -> Inbound:
    return Inbound("console", f"{address}-{n}", address, text, at)


async def rows(db: Database, table: type, *where: object) -> list:  # type: ignore[type-arg]
    async with db.transaction() as session:
        statement = select(table).where(*where).order_by(col(table.id))
        return list((await session.exec(statement)).all())


async def started(w: Wired, patient_id: int, instruments: list[str]) -> Checkin:
    checkin = await w.services.asking.ask(patient_id, instruments)
    assert await w.services.starting.start_due() == 1
    return checkin


async def test_a_complete_check_in_is_stored_and_answered_in_order(
    db: Database, wired: Wired
) -> None:
    """Nine answers: each stored once with its raw text, one score row, replies sent in order."""
    patient_id = await add_patient(db)
    checkin = await started(wired, patient_id, ["phq9"])
    replies = ["1", "2", "0", "1", "0", "1", "0", "0", "0", "not difficult"]
    for n, text in enumerate(replies):
        assert await wired.services.inbox.handle_inbound(said("pat-1", text, n))
    report = await wired.deliverer.drain()
    answers = await rows(db, Answer, Answer.checkin_id == checkin.id)
    assert [(a.item_key, a.value_int, a.raw_text) for a in answers][:2] == [
        ("phq9.q1", 1, "1"),
        ("phq9.q2", 2, "2"),
    ]
    assert [a.value_int for a in answers] == [1, 2, 0, 1, 0, 1, 0, 0, 0, 0]
    scores = await rows(db, Score, Score.checkin_id == checkin.id)
    assert [(s.total, s.band, s.valid) for s in scores] == [(5, "mild", True)]
    out = wired.console.getvalue()
    positions = [out.index(f"{n}/10") for n in range(2, 11)]
    assert positions == sorted(positions) and "PHQ-9: 5 of 27 (Mild)" in out
    assert report.sent == len(await rows(db, OutboundMessage)) and report.dead == 0
    (stored,) = await rows(db, Checkin, Checkin.id == checkin.id)
    assert stored.status == "completed" and stored.completed_at is not None


async def test_the_same_message_ten_times_stores_one_answer_and_one_reply(
    db: Database, wired: Wired
) -> None:
    """A provider redelivering one message ten times (concurrently) changes things once."""
    patient_id = await add_patient(db)
    checkin = await started(wired, patient_id, ["phq9"])
    outcomes = await asyncio.gather(
        *(wired.services.inbox.handle_inbound(said("pat-1", "2", 0)) for _ in range(10))
    )
    assert sorted(outcomes) == [False] * 9 + [True]
    answers = await rows(db, Answer, Answer.checkin_id == checkin.id)
    assert [(a.item_key, a.value_int) for a in answers] == [("phq9.q1", 2)]
    assert len(await rows(db, InboundMessage)) == 1
    replies = await rows(db, OutboundMessage, col(OutboundMessage.idempotency_key).startswith("in"))
    assert [r.payload["intent"] for r in replies] == ["Ask"]


async def test_inbound_is_recorded_before_processing_and_recovered_after_a_crash(
    db: Database, wired: Wired
) -> None:
    """A message recorded but never processed (a crash in between) is processed on recovery."""
    patient_id = await add_patient(db)
    checkin = await started(wired, patient_id, ["phq2"])
    assert await wired.services.inbox.receive(said("pat-1", "3", 0)) is not None
    assert await rows(db, Answer) == []
    assert await wired.services.inbox.process_pending() == 0  # maybe still in its webhook's hands
    wired.clock.now += RECOVERY_GRACE
    assert await wired.services.inbox.process_pending() == 1
    answers = await rows(db, Answer, Answer.checkin_id == checkin.id)
    assert [(a.item_key, a.value_int) for a in answers] == [("phq2.q1", 3)]
    assert await wired.services.inbox.process_pending() == 0


async def test_back_keeps_the_earlier_answer_superseded(db: Database, wired: Wired) -> None:
    """BACK and a new answer add a row; the first stays, superseded by the new one."""
    patient_id = await add_patient(db)
    checkin = await started(wired, patient_id, ["phq9"])
    for n, text in enumerate(["3", "back", "1"]):
        await wired.services.inbox.handle_inbound(said("pat-1", text, n))
    answers = await rows(db, Answer, Answer.checkin_id == checkin.id)
    assert [(a.item_key, a.value_int, a.raw_text) for a in answers] == [
        ("phq9.q1", 3, "3"),
        ("phq9.q1", 1, "1"),
    ]
    assert (answers[0].superseded_by, answers[1].superseded_by) == (answers[1].id, None)
    assert answers[0].superseded_at == answers[1].answered_at


async def test_one_open_check_in_per_patient(db: Database, wired: Wired) -> None:
    """A second due check-in waits until the first closes, then starts."""
    patient_id = await add_patient(db)
    first = await started(wired, patient_id, ["phq2"])
    second = await wired.services.asking.ask(patient_id, ["gad7"])
    assert await wired.services.starting.start_due() == 0
    for n, text in enumerate(["0", "0"]):
        await wired.services.inbox.handle_inbound(said("pat-1", text, n))
    assert await wired.services.starting.start_due() == 1
    statuses = {c.id: c.status for c in await rows(db, Checkin)}
    assert statuses == {first.id: "completed", second.id: "sent"}


async def test_a_check_in_held_behind_another_starts_once_that_one_closes(
    db: Database, wired: Wired
) -> None:
    """Two check-ins due together: the second is held while the first is open, and starts
    at the first tick after the patient finishes the first, not when its hold runs out."""
    patient_id = await add_patient(db)
    first = await wired.services.asking.ask(patient_id, ["phq2"])
    second = await wired.services.asking.ask(patient_id, ["gad7"])
    assert await wired.services.starting.start_due() == 1
    (held,) = await rows(db, Checkin, Checkin.id == second.id)
    assert held.status == "pending" and held.lease_until == T0 + HELD_BEHIND
    wired.clock.now = T0 + timedelta(seconds=30)
    for n, text in enumerate(["0", "0"]):
        await wired.services.inbox.handle_inbound(said("pat-1", text, n, wired.clock.now))
    wired.clock.now += timedelta(seconds=5)  # the next tick, well inside the hold
    assert await wired.services.starting.start_due() == 1
    statuses = {c.id: c.status for c in await rows(db, Checkin)}
    assert statuses == {first.id: "completed", second.id: "sent"}


async def test_expiry_keeps_partial_answers(db: Database, wired: Wired) -> None:
    """A check-in past its expiry is closed as partial, its answers kept and scored."""
    patient_id = await add_patient(db)
    checkin = await started(wired, patient_id, ["phq9"])
    for n in range(8):
        await wired.services.inbox.handle_inbound(said("pat-1", "1", n))
    wired.clock.now = T0 + timedelta(days=2)
    assert await wired.services.reminders.expire_due() == 1
    (stored,) = await rows(db, Checkin, Checkin.id == checkin.id)
    assert (stored.status, stored.partial) == ("expired", True)
    assert len(await rows(db, Answer, Answer.checkin_id == checkin.id)) == 8
    (score,) = await rows(db, Score, Score.checkin_id == checkin.id)
    assert (score.total, score.valid, score.flags) == (None, False, ["safety_item_missing"])


async def test_a_never_answered_check_in_expires_as_missed(db: Database, wired: Wired) -> None:
    """A check-in nobody answered expires without answers, not partial."""
    patient_id = await add_patient(db)
    checkin = await started(wired, patient_id, ["phq9"])
    await wired.deliverer.drain()  # the question went out: the patient was asked
    wired.clock.now = T0 + timedelta(days=2)
    await wired.services.reminders.expire_due()
    (stored,) = await rows(db, Checkin, Checkin.id == checkin.id)
    assert (stored.status, stored.partial) == ("expired", False)


async def test_stop_opts_out_and_cancels_what_is_planned(db: Database, wired: Wired) -> None:
    """STOP cancels the open check-in and the planned ones; START makes the patient active."""
    patient_id = await add_patient(db)
    await started(wired, patient_id, ["phq9"])
    planned = await wired.services.asking.ask(patient_id, ["gad7"], due_at=T0 + timedelta(days=7))
    await wired.services.inbox.handle_inbound(said("pat-1", "STOP", 0))
    (patient,) = await rows(db, Patient)
    assert patient.status == "opted_out"
    statuses = [c.status for c in await rows(db, Checkin)]
    assert statuses == ["cancelled", "cancelled"] and planned.id is not None
    await wired.services.inbox.handle_inbound(said("pat-1", "START", 1))
    (patient,) = await rows(db, Patient)
    assert patient.status == "active"


async def test_unknown_sender_learns_nothing(db: Database, wired: Wired) -> None:
    """A message from an address no patient has is recorded, answered with nothing."""
    await add_patient(db)
    await wired.services.inbox.handle_inbound(said("stranger", "hello", 0))
    assert await rows(db, OutboundMessage) == []
    (message,) = await rows(db, InboundMessage)
    assert message.error == "unknown sender" and message.processed_at is not None


@pytest.mark.postgres
async def test_two_workers_keep_one_patients_order(pg_db: Database) -> None:
    """Two workers on PostgreSQL taking one patient's rapid replies: in order, none twice."""
    first, second = (
        wire(pg_db),
        wire(Database(str(pg_db.url.render_as_string(hide_password=False)))),
    )
    try:
        patient_id = await add_patient(pg_db)
        checkin = await started(first, patient_id, ["phq9"])
        values = [3, 0, 2, 1, 3, 0, 2, 1, 0, 2]
        ids = [
            await first.services.inbox.receive(said("pat-1", str(v), n))
            for n, v in enumerate(values)
        ]
        workers = [first.services if n % 2 else second.services for n in range(len(ids))]
        await asyncio.gather(
            *(w.inbox.process(i) for w, i in zip(workers, ids, strict=True) if i is not None)
        )
        # ...and again, as a redelivery or a recovery pass would: nothing changes.
        await asyncio.gather(
            *(w.inbox.process(i) for w, i in zip(workers, ids, strict=True) if i is not None)
        )
    finally:
        await second.services.context.db.dispose()
    answers = await rows(pg_db, Answer, Answer.checkin_id == checkin.id)
    assert [(a.item_key, a.value_int) for a in answers] == [
        (f"phq9.q{n}", v) for n, v in enumerate(values, 1)
    ]
    replies = await rows(
        pg_db, OutboundMessage, col(OutboundMessage.idempotency_key).startswith("in")
    )
    asks = [r.body.split(" ")[0] for r in replies if r.payload["intent"] == "Ask"]
    assert asks == [f"{n}/10" for n in range(2, 11)]


async def test_quiet_hours_hold_scheduled_check_ins_but_never_replies(db: Database) -> None:
    """At 22:00 local a due check-in waits until 08:00; --now sends it; replies are immediate."""
    w = wire(db, SimClock(datetime(2026, 5, 4, 2, 0, tzinfo=UTC)))  # 22:00 in New York
    async with db.transaction() as session:
        patient = Patient(
            display_name="Pat",
            timezone="America/New_York",
            channel="console",
            address="ny",
            status="active",
        )
        await Repository(session).add(patient)
    assert patient.id is not None
    await w.services.asking.ask(patient.id, ["phq2"])
    assert await w.services.starting.start_due() == 0
    w.clock.now = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)  # 08:00 in New York
    assert await w.services.starting.start_due() == 1
    w.clock.now = datetime(2026, 5, 5, 3, 0, tzinfo=UTC)  # 23:00: the patient answers late
    await w.services.inbox.handle_inbound(said("ny", "1", 0, w.clock.now))
    replies = await rows(db, OutboundMessage, col(OutboundMessage.idempotency_key).startswith("in"))
    assert [r.payload["intent"] for r in replies] == ["Ask"]
    urgent = await w.services.asking.ask(patient.id, ["gad7"], ignore_quiet_hours=True)
    await w.services.inbox.handle_inbound(said("ny", "1", 1, w.clock.now))  # finishes the PHQ-2
    assert await w.services.starting.start_due() == 1
    (started,) = await rows(db, Checkin, Checkin.id == urgent.id)
    assert started.status == "sent"


def licensed_services(db: Database, tmp_path: object, clock: SimClock) -> Services:
    """Services whose catalog holds the QIDS-SR16 with (fixture) licensed wording; the
    catalog `wire` builds does not, so a check-in started here cannot be answered there."""
    from bot.instruments import load_catalog as catalog_from
    from tests.domain.conftest import fixture_wording

    licensed = Path(str(tmp_path)) / "licensed"
    licensed.mkdir()
    (licensed / "qids_sr16.wording.toml").write_text(fixture_wording("qids_sr16"))
    full = catalog_from([licensed])
    return Services.create(db, full, Renderer(full, CLINIC), CLINIC, clock)


async def unanswerable_check_in(
    db: Database, tmp_path: object, clock: SimClock, patient_id: int
) -> Services:
    """Start a QIDS-SR16 check-in for the patient with services that have its (fixture)
    licensed wording, and return them: services without it (`wire`) fail to process the
    patient's answers, as after an operator removed the wording with check-ins open."""
    with_wording = licensed_services(db, tmp_path, clock)
    await with_wording.asking.ask(patient_id, ["qids_sr16"])
    await with_wording.starting.start_due()
    return with_wording


async def test_one_failing_message_holds_up_no_one_else(db: Database, tmp_path: object) -> None:
    """A message that cannot be processed is left for later; other patients' work goes on."""
    clock = SimClock()
    a, b = await add_patient(db, "a"), await add_patient(db, "b")
    await unanswerable_check_in(db, tmp_path, clock, a)
    w = wire(db, clock)  # the wording directory is gone: qids_sr16 is unavailable now
    await w.services.inbox.receive(said("a", "1", 0))
    await w.services.asking.ask(b, ["phq2"])
    clock.now += RECOVERY_GRACE
    assert await w.services.inbox.process_pending() == 1  # tried, failed, logged, left
    assert await w.services.starting.start_due() == 1  # patient b is not held up
    (left,) = [m for m in await rows(db, InboundMessage) if m.sender == "a"]
    assert left.processed_at is None


async def test_a_webhook_message_that_cannot_be_processed_is_still_recorded(
    db: Database, tmp_path: object, caplog: pytest.LogCaptureFixture
) -> None:
    """Recording and processing share a transaction; when processing fails, the message is
    recorded anyway (the webhook can acknowledge it), the failure is logged without what
    the patient said, and the recovery pass takes it up later."""
    clock = SimClock()
    with_wording = await unanswerable_check_in(db, tmp_path, clock, await add_patient(db, "a"))
    w = wire(db, clock)  # the wording is gone: answering the check-in fails
    with caplog.at_level("ERROR"):
        assert await w.services.inbox.handle_inbound(said("a", "canary-7731", 0)) is True
    (left,) = [m for m in await rows(db, InboundMessage) if m.sender == "a"]
    assert left.text == "canary-7731" and left.processed_at is None
    assert await rows(db, Answer) == []
    assert f"inbound {left.id} left for recovery" in caplog.text
    assert "canary-7731" not in caplog.text
    assert await w.services.inbox.handle_inbound(said("a", "canary-7731", 0)) is False  # redelivery
    clock.now += RECOVERY_GRACE
    assert await with_wording.inbox.process_pending() == 1  # the wording is back: recovered
    (done,) = [m for m in await rows(db, InboundMessage) if m.sender == "a"]
    assert done.processed_at is not None


async def test_a_message_that_keeps_failing_is_set_aside_and_its_sender_goes_on(
    db: Database, tmp_path: object, caplog: pytest.LogCaptureFixture
) -> None:
    """A failure is counted against the sender's oldest waiting message (processing a
    message processes those before it first), once a pass. After INBOUND_ATTEMPTS passes
    that message is set aside, logged by id without what it said, and recovery is empty
    again; once the cause is fixed, the sender's later messages are processed in order."""
    clock = SimClock()
    with_wording = await unanswerable_check_in(db, tmp_path, clock, await add_patient(db, "a"))
    w = wire(db, clock)  # the wording is gone: answering the check-in fails
    await w.services.inbox.receive(said("a", "canary-5150", 0))
    await w.services.inbox.receive(said("a", "2", 1))
    first, second = sorted(m.id for m in await rows(db, InboundMessage) if m.sender == "a")

    async def attempts() -> list[tuple[int, bool]]:
        found = {m.id: m for m in await rows(db, InboundMessage)}
        return [(found[i].attempts, found[i].processed_at is not None) for i in (first, second)]

    with caplog.at_level("ERROR"):
        for n in range(1, INBOUND_ATTEMPTS):
            clock.now += RECOVERY_GRACE
            assert await w.services.inbox.process_pending() == 2
            assert await attempts() == [(n, False), (0, False)]
        clock.now += RECOVERY_GRACE
        assert await w.services.inbox.process_pending() == 2
    # the first set aside; the second, processed alone now, failed on its own
    assert await attempts() == [(INBOUND_ATTEMPTS, True), (1, False)]
    (aside,) = await rows(db, InboundMessage, InboundMessage.id == first)
    assert aside.error == "set_aside:KeyError" and aside.text == "canary-5150"
    assert f"inbound {first} set aside after {INBOUND_ATTEMPTS} failed attempts" in caplog.text
    assert "canary-5150" not in caplog.text
    assert await with_wording.inbox.handle_inbound(said("a", "3", 2, clock.now))  # the cause fixed
    answers = await rows(db, Answer)
    assert [(a.raw_text, a.inbound_message_id) for a in answers] == [
        ("2", second),
        ("3", second + 1),
    ]


async def test_one_patients_simultaneous_messages_are_taken_in_the_order_numbered(
    db: Database, wired: Wired
) -> None:
    """Nine answers from each of three patients, all arriving together: whatever order
    they are recorded in, each patient's are processed in the order of their numbers
    (the patient is locked before a message is numbered), so a patient's n-th message
    recorded answers the n-th item."""
    addresses = ("pat-1", "pat-2", "pat-3")
    checkins = {}
    for address in addresses:
        patient_id = await add_patient(db, address)
        checkins[address] = (await wired.services.asking.ask(patient_id, ["phq9"])).id
    assert await wired.services.starting.start_due() == len(addresses)
    await asyncio.gather(*(
        wired.services.inbox.handle_inbound(said(address, str(n % 4), n))
        for n in range(9) for address in addresses
    ))  # fmt: skip
    for address in addresses:
        inbound = await rows(
            db, InboundMessage, InboundMessage.sender_hash == TEST_RING.lookup_hash(address)
        )
        answers = await rows(db, Answer, Answer.checkin_id == checkins[address])
        assert len(answers) == 9 and all(m.processed_at is not None for m in inbound)
        by_item = sorted(answers, key=lambda a: int(a.item_key.removeprefix("phq9.q")))
        assert [a.inbound_message_id for a in by_item] == [m.id for m in inbound]


async def test_a_message_with_nothing_waiting_is_stored_processed_in_one_statement(
    db: Database, wired: Wired
) -> None:
    """A patient's answer with none of theirs waiting: the INSERT stores it processed, and
    the turn neither reads waiting messages nor marks it after. With one recorded but not
    processed before it (a crash), that one is answered first, then this one, in order."""
    patient_id = await add_patient(db)
    checkin = await started(wired, patient_id, ["phq9"])
    with statements(db) as seen:
        assert await wired.services.inbox.handle_inbound(said("pat-1", "1", 0))
    touching = [s.split()[0] for s in seen if re.search(r"(INTO|UPDATE|FROM) inbound_message ", s)]
    assert touching == ["INSERT"]  # (the INSERT's own look for waiting ones is a subquery)
    (first,) = await rows(db, InboundMessage)
    assert first.processed_at == T0
    waiting = await wired.services.inbox.receive(said("pat-1", "2", 1))
    assert await wired.services.inbox.handle_inbound(said("pat-1", "3", 2))
    inbound = await rows(db, InboundMessage)
    assert [m.processed_at for m in inbound] == [T0] * 3
    answers = await rows(db, Answer, Answer.checkin_id == checkin.id)
    assert [(a.raw_text, a.inbound_message_id) for a in answers] == [
        ("1", first.id),
        ("2", waiting),
        ("3", inbound[2].id),
    ]


async def test_a_turn_reads_its_patient_and_open_check_in_in_one_statement(
    db: Database, wired: Wired
) -> None:
    """The turn's first statement finds the patient and the check-in open, and no
    statement reads the check-in on its own. On PostgreSQL it locks both rows, so one
    that waited for them (the simultaneous-messages test above) steps the check-in as it
    is after the wait, never a stale copy. Either way the answer is stepped and stored,
    and a console patient's turn never scans their sent messages for the question an edit
    would change (only Telegram's answers edit one)."""
    patient_id = await add_patient(db)
    checkin = await started(wired, patient_id, ["phq9"])
    with statements(db) as seen:
        assert await wired.services.inbox.handle_inbound(said("pat-1", "2", 0))
    selects = [s for s in seen if s.lstrip().upper().startswith("SELECT")]
    reading_checkin = [s for s in selects if re.search(r"\bFROM checkin\b", s)]
    assert "FROM patient" in selects[0] and reading_checkin == []
    if db.dialect == "sqlite":
        assert "LEFT OUTER JOIN checkin" in selects[0]
    else:
        assert "JOIN checkin" in selects[0] and "LEFT OUTER JOIN checkin" not in selects[0]
        assert "FOR UPDATE OF patient, checkin" in selects[0]
    assert not [s for s in selects if "outbound_message" in s]
    (answer,) = await rows(db, Answer, Answer.checkin_id == checkin.id)
    assert answer.raw_text == "2" and answer.value_int == 2


async def test_a_message_with_no_check_in_open_still_finds_and_locks_its_patient(
    db: Database, wired: Wired
) -> None:
    """With no check-in open (a message between check-ins), the first statement finds no
    row on PostgreSQL; the patient is then locked on their own, and the message gets the
    reply for a patient with nothing to answer, as on SQLite."""
    patient_id = await add_patient(db)
    with statements(db) as seen:
        assert await wired.services.inbox.handle_inbound(said("pat-1", "2", 0))
    finding = [s for s in seen if "FROM patient" in s]
    if db.dialect == "postgresql":  # the join finds no row, then the patient alone
        assert len(finding) == 2 and all("FOR UPDATE" in s for s in finding)
    else:
        assert len(finding) == 1
    (patient,) = await rows(db, Patient, Patient.id == patient_id)
    assert patient.status == "active"
    assert await rows(db, Answer) == []
    assert await rows(db, OutboundMessage, OutboundMessage.recipient_id == patient_id)


async def test_control_characters_are_stripped_before_storing(db: Database, wired: Wired) -> None:
    """A NUL byte (which PostgreSQL refuses) cannot make an answer impossible to record."""
    patient_id = await add_patient(db)
    await started(wired, patient_id, ["phq2"])
    assert await wired.services.inbox.handle_inbound(said("pat-1", "2\x00\x07", 0))
    (answer,) = await rows(db, Answer)
    assert (answer.value_int, answer.raw_text) == (2, "2")


async def test_the_same_instrument_twice_is_refused(db: Database, wired: Wired) -> None:
    """Asking for PHQ-2 twice in one check-in is an operator error, caught up front."""
    from bot.domain.errors import ConfigError

    patient_id = await add_patient(db)
    with pytest.raises(ConfigError, match="listed twice"):
        await wired.services.asking.ask(patient_id, ["phq2", "phq2"])


async def test_a_given_key_plans_a_check_in_once(db: Database, wired: Wired) -> None:
    """Asking twice with one idempotency key plans one check-in; two asks without keys, two."""
    patient_id = await add_patient(db)
    await wired.services.asking.ask(patient_id, ["phq2"], key="weekly:2026-05-04")
    with pytest.raises(ValueError, match="already exists"):
        await wired.services.asking.ask(patient_id, ["phq2"], key="weekly:2026-05-04")
    await wired.services.asking.ask(patient_id, ["phq2"])
    await wired.services.asking.ask(patient_id, ["phq2"])
    assert len(await rows(db, Checkin)) == 3


async def test_turns_under_way_are_counted_for_the_pacer(db: Database, tmp_path: Path) -> None:
    """Each inbound message being handled counts as a turn under way until it ends, ended
    by an error or not; `checkin run` hands that count to Telegram's pacer, which takes
    turns under way for crisis messages that may follow (a storm forming)."""
    w = wire(db)
    seen: list[int] = []
    underway = w.services.context.underway

    def clock() -> datetime:
        seen.append(underway.count)
        return w.clock.now

    w.services.context.clock = clock
    await asyncio.gather(
        *(w.services.inbox.handle_inbound(said("pat-2", "hi", n)) for n in range(3))
    )
    assert max(seen) == 3 and underway.count == 0
    w.services.context.db = Database("sqlite+aiosqlite:///" + str(tmp_path / "missing" / "x.db"))
    with pytest.raises(Exception):  # noqa: B017 -- the database is away: the webhook 5xx
        await w.services.inbox.handle_inbound(said("pat-2", "hi", 9))
    assert underway.count == 0
    app = build(Settings(database_url=db.url.render_as_string(hide_password=False),
                         telegram=Telegram(token="1:x")))  # fmt: skip
    try:
        pacer = app.deliverer.pacers["telegram"]
        local = pacer.local if isinstance(pacer, SharedPacer) else pacer
        assert isinstance(local, Pacer) and local.coming() == 0
        app.services.context.underway.count = 4
        assert local.coming() == 4
    finally:
        await app.close()

"""Alert digests over Telegram, end to end through the real python-telegram-bot and the
Bot API stand-in: a clinician's first alert leaves at once; those raised within the window
after it leave together as one message, crisis first, each with its code and button,
woken by their own timer with no tick; acknowledging one acknowledges it alone;
escalation still goes per alert; a digest or an /alerts answer longer than Telegram's
4,096 characters goes as several messages. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bot.app.alerts.alerting import Alerting
from bot.app.alerts.notices import digest_until
from bot.app.outbox.delivery import deliver_when_woken
from bot.app.outbox.pacing import URGENT_FORMING
from bot.domain import events as ev
from bot.storage.database import Database
from bot.storage.repository import Repository
from bot.storage.tables import Alert, Clinician, OutboundMessage, Patient
from scheduler.loop import tick
from tests.standins.telegram import MAX_TEXT_CHARS
from tests.test_telegram import Rig, rig, table  # noqa: F401  (rig: a fixture)

DOCTOR = 9002
SECOND = timedelta(seconds=1)
LONG_NAME = "P-{n} " + "of the long name " * 6  # a display name of some 100 characters


def alerting_of(rig: Rig, window: timedelta) -> Alerting:  # noqa: F811
    """The app's alerting with a digest window (the rig's clock stands still otherwise)."""
    rig.app.deliverer.pacers = {}  # pacing has its own tests
    alerting = rig.app.services.alerting
    assert alerting is not None
    alerting.rules = replace(alerting.rules, digest_window=window)
    return alerting


@dataclass
class Digest:
    """The last message to the doctor, read as a digest (:func:`last_digest`)."""

    message: dict[str, Any]
    lines: list[str]
    buttons: list[dict[str, Any]]  # each alert's button, in the order listed
    codes: dict[int | None, str]  # every alert's code, by its patient's id

    def starting(self, prefix: str) -> list[str]:
        return [line for line in self.lines if line.startswith(prefix)]

    def tap(self, rig: Rig, n: int) -> dict[str, Any]:  # noqa: F811
        """The update of the doctor tapping the `n`-th button."""
        data = self.buttons[n]["callback_data"]
        return rig.stand_in.callback_update(DOCTOR, self.message["message_id"], data)


async def last_digest(rig: Rig, db: Database) -> Digest:  # noqa: F811
    message = rig.stand_in.messages(DOCTOR)[-1]
    buttons = [b for row in message["reply_markup"]["inline_keyboard"] for b in row]
    codes = {a.patient_id: a.code for a in await table(db, Alert)}
    return Digest(message, message["text"].split("\n"), buttons, codes)


async def patients_of_one_doctor(rig: Rig, count: int, name: str = "P-{n}") -> list[Patient]:  # noqa: F811
    async with rig.app.db.transaction() as session:
        repo = Repository(session)
        doctor = Clinician(display_name="Dr. D", channel="telegram", address=str(DOCTOR))
        await repo.add(doctor)
        patients = [
            Patient(display_name=name.format(n=n), timezone="UTC", channel="telegram",
                    address=str(7000 + n), status="active", clinician_id=doctor.id)
            for n in range(1, count + 1)
        ]  # fmt: skip
        for patient in patients:
            await repo.add(patient)
    return patients


async def raise_alert(rig: Rig, alerting: Alerting, patient: Patient, crisis: bool) -> None:  # noqa: F811
    """A crisis alert (item 9 endorsed in words) or an urgent one (a message set aside), raised now."""
    async with rig.app.db.transaction() as session:
        repo = Repository(session)
        now = rig.clock()
        if crisis:
            await alerting.on_events(
                repo, patient, [ev.SafetyEndorsed("phq9.q9", "phq9", now)], now
            )
        else:
            await alerting.message_set_aside(repo, patient, now)


async def test_the_first_alert_goes_at_once_and_the_next_ones_in_its_window_as_one_message(
    rig: Rig,  # noqa: F811
    db: Database,
) -> None:
    """Urgent, crisis, urgent within 2 s: the first goes at once, alone; the other two wait
    until the window after it closes, then leave as one message listing both codes with
    the crisis first and a button each; the button of one acknowledges that alert only,
    and the other two escalate on their own."""
    alerting = alerting_of(rig, 2 * SECOND)
    first, second, third = await patients_of_one_doctor(rig, 3)
    await raise_alert(rig, alerting, first, crisis=False)
    await tick(rig.app)
    (alone,) = rig.stand_in.messages(DOCTOR)
    assert alone["text"].startswith("URGENT: P-1")
    rig.clock.now += SECOND / 2
    await raise_alert(rig, alerting, second, crisis=True)
    rig.clock.now += SECOND / 2
    await raise_alert(rig, alerting, third, crisis=False)
    rig.clock.now += SECOND / 2
    await tick(rig.app)
    assert len(rig.stand_in.messages(DOCTOR)) == 1  # 1.5 s after the first: still waiting
    rig.clock.now += SECOND / 2  # 2 s after the first alert
    await tick(rig.app)
    digest = await last_digest(rig, db)
    codes = digest.codes
    assert digest.lines[0] == "2 alerts, most urgent first:"
    assert digest.lines[1].startswith("1. CRISIS: P-2")
    assert digest.starting("Reply ACK") == [
        f"Reply ACK {codes[second.id or 0]}", f"Reply ACK {codes[third.id or 0]}",
    ]  # fmt: skip
    assert [b["callback_data"] for b in digest.buttons] == [
        f"ack:{codes[p.id or 0]}" for p in (second, third)
    ]
    tap = digest.tap(rig, 1)
    assert (await rig.post(tap)).status_code == 200
    await tick(rig.app)
    status = {a.patient_id: a.status for a in await table(db, Alert)}
    assert status == {first.id: "open", second.id: "open", third.id: "acknowledged"}
    sent = len(rig.stand_in.messages(DOCTOR))
    rig.clock.now += timedelta(days=1)  # past every acknowledgement deadline
    await tick(rig.app)
    rig.clock.now += 2 * SECOND
    await tick(rig.app)
    reminders = "\n".join(m["text"] for m in rig.stand_in.messages(DOCTOR)[sent:])
    assert codes[first.id or 0] in reminders and codes[second.id or 0] in reminders
    assert codes[third.id or 0] not in reminders


async def test_after_a_quiet_window_an_alert_goes_at_once_again(
    rig: Rig,  # noqa: F811
) -> None:
    alerting = alerting_of(rig, 2 * SECOND)
    first, second = await patients_of_one_doctor(rig, 2)
    await raise_alert(rig, alerting, first, crisis=True)
    rig.clock.now += 3 * SECOND
    await raise_alert(rig, alerting, second, crisis=True)
    await tick(rig.app)
    texts = [m["text"] for m in rig.stand_in.messages(DOCTOR)]
    assert [t.startswith(("CRISIS: P-1,", "CRISIS: P-2,")) for t in texts] == [True, True]
    assert "P-1" in texts[0] and "P-2" in texts[1]


@pytest.mark.parametrize("under_way", [URGENT_FORMING - 1, URGENT_FORMING])
async def test_in_a_storm_forming_the_first_alert_waits_for_the_digest_too(
    rig: Rig,  # noqa: F811
    under_way: int,
) -> None:
    """With as many turns under way as make Telegram's pacer see a storm forming, a
    clinician's first alert is held with the rest: one message when the window closes,
    crisis first, instead of a first alert and a digest a second later (fifty crises on
    Telegram need every place of two windows, and the five extra first alerts pushed a
    late alert into the third). One turn fewer under way: the first alert goes at once.
    Once the turns are over, an alert after a quiet window goes at once again."""
    alerting = alerting_of(rig, SECOND)
    first, second, third, fourth = await patients_of_one_doctor(rig, 4)
    storm = under_way >= URGENT_FORMING
    with contextlib.ExitStack() as turns:
        for _ in range(under_way):
            turns.enter_context(rig.app.services.context.underway.one())
        await raise_alert(rig, alerting, first, crisis=False)
        await tick(rig.app)
        assert len(rig.stand_in.messages(DOCTOR)) == (0 if storm else 1)
        rig.clock.now += SECOND / 2
        await raise_alert(rig, alerting, second, crisis=True)
        await raise_alert(rig, alerting, third, crisis=True)
        await tick(rig.app)
        assert len(rig.stand_in.messages(DOCTOR)) == (0 if storm else 1)
        rig.clock.now += SECOND / 2  # the window after the first alert has closed
        await tick(rig.app)
    texts = [m["text"] for m in rig.stand_in.messages(DOCTOR)]
    if storm:
        (digest,) = texts
        lines = digest.split("\n")
        assert lines[0] == "3 alerts, most urgent first:"
        assert lines[1].startswith("1. CRISIS: P-")
        assert [n for n in (1, 2, 3) if f"P-{n}" in digest] == [1, 2, 3]
        assert digest.index("URGENT: P-1") > digest.index("CRISIS: P-3")
    else:
        alone, digest = texts
        assert alone.startswith("URGENT: P-1")
        assert digest.startswith("2 alerts, most urgent first:") and "P-1" not in digest
    rig.clock.now += 2 * SECOND
    await raise_alert(rig, alerting, fourth, crisis=True)
    await tick(rig.app)
    assert rig.stand_in.messages(DOCTOR)[-1]["text"].startswith("CRISIS: P-4")


async def test_a_lone_crisis_alert_goes_at_once_and_the_next_when_its_window_closes(
    rig: Rig,  # noqa: F811
) -> None:
    """As in `checkin run`, with no tick: the first crisis alert leaves as soon as its
    transaction commits; a second within the window is held, and its own timer wakes the
    courier when the window closes, and it goes alone, as an ordinary notice."""
    alerting = alerting_of(rig, SECOND / 4)
    first, second = await patients_of_one_doctor(rig, 2)
    stop = asyncio.Event()
    rig.app.wake = asyncio.Event()
    courier = asyncio.create_task(deliver_when_woken(rig.app.deliverer, rig.app.wake, stop))
    try:
        await raise_alert(rig, alerting, first, crisis=True)
        rig.app.kick()  # as the webhook does once its transaction commits
        await until(lambda: len(rig.stand_in.messages(DOCTOR)) == 1)
        assert rig.stand_in.messages(DOCTOR)[0]["text"].startswith("CRISIS: P-1")
        await raise_alert(rig, alerting, second, crisis=True)
        rig.app.kick()
        await asyncio.sleep(0.1)
        assert len(rig.stand_in.messages(DOCTOR)) == 1  # held for its window
        rig.clock.now += SECOND / 4  # the rig's clock moves only when told
        await until(lambda: len(rig.stand_in.messages(DOCTOR)) == 2)
        assert rig.stand_in.messages(DOCTOR)[1]["text"].startswith("CRISIS: P-2")
    finally:
        stop.set()
        courier.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await courier


async def until(condition: Callable[[], bool]) -> None:
    """Wait up to three seconds for `condition` (the courier runs in the background)."""
    for _ in range(60):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("timed out")


@pytest.mark.parametrize(
    "dialect", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
)
async def test_turns_deciding_at_once_for_one_clinician_send_one_alert_at_once(
    db: Database,
) -> None:
    """Two transactions deciding at the same moment for one clinician (PostgreSQL runs
    turns side by side): the first sends its alert at once, the second waits the window
    for the digest. Before, neither saw the other's uncommitted alert and both went at
    once (fifty crisis turns sent a clinician three or four, the last held by Telegram's
    per-chat limit past 2 s). Once the first is over, the next decides alone again."""
    async with db.transaction() as session:
        doctor = Clinician(display_name="Dr. D", channel="telegram", address=str(DOCTOR))
        await Repository(session).add(doctor)
    assert doctor.id is not None
    now = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)
    async with db.transaction() as first:
        assert await digest_until(Repository(first), doctor.id, now, SECOND) is None
        async with db.transaction() as second:
            held_until = await digest_until(Repository(second), doctor.id, now, SECOND)
    assert held_until == now + SECOND
    async with db.transaction() as later:
        assert await digest_until(Repository(later), doctor.id, now, SECOND) is None


async def test_a_digest_longer_than_a_telegram_message_goes_as_several(
    rig: Rig,  # noqa: F811
    db: Database,
) -> None:
    """An urgent alert, then five urgent and twenty crisis alerts within the window, for
    patients with long display names: twenty-five notices of some 300 characters. They
    leave as digests of at most 4,096 characters, each with a button per alert it lists,
    every alert in one of them, the crisis alerts first. Before, the first twenty went in
    one message of some 6,000 characters, which Telegram refuses for good."""
    alerting = alerting_of(rig, 2 * SECOND)
    first, *others = await patients_of_one_doctor(rig, 26, name=LONG_NAME)
    await raise_alert(rig, alerting, first, crisis=False)
    await tick(rig.app)
    rig.clock.now += SECOND / 2
    for n, patient in enumerate(others):
        await raise_alert(rig, alerting, patient, crisis=n >= 5)
    rig.clock.now += 2 * SECOND
    await tick(rig.app)

    _, *digests = rig.stand_in.messages(DOCTOR)
    assert len(digests) >= 2 and all(len(d["text"]) <= MAX_TEXT_CHARS for d in digests)
    assert digests[0]["text"].startswith("25 alerts, most urgent first (message 1 of ")
    told = []
    for digest in digests:
        codes = [line.removeprefix("Reply ACK ") for line in digest["text"].split("\n")
                 if line.startswith("Reply ACK ")]  # fmt: skip
        buttons = [b["callback_data"] for row in digest["reply_markup"]["inline_keyboard"]
                   for b in row]  # fmt: skip
        assert buttons == [f"ack:{c}" for c in codes] and len(codes) <= 20
        told += codes
    levels = {a.code: a.level for a in await table(db, Alert) if a.patient_id != first.id}
    assert sorted(told) == sorted(levels)
    assert [levels[c] for c in told] == ["crisis"] * 20 + ["urgent"] * 5
    sent = await table(db, OutboundMessage, OutboundMessage.recipient_kind == "clinician")
    assert {m.status for m in sent} == {"sent"}


async def test_an_alerts_list_longer_than_a_telegram_message_goes_as_several(
    rig: Rig,  # noqa: F811
    db: Database,
) -> None:
    """Thirty open alerts of patients with long names, then /alerts: some 5,000
    characters, sent as messages of at most 4,096 that list every code once, in order.
    Before, the one long message was refused and the clinician got nothing."""
    alerting = alerting_of(rig, timedelta(0))
    for patient in await patients_of_one_doctor(rig, 30, name=LONG_NAME):
        await raise_alert(rig, alerting, patient, crisis=True)
    await tick(rig.app)
    before = len(rig.stand_in.messages(DOCTOR))

    await rig.say("/alerts", chat=DOCTOR)

    replies = [m["text"] for m in rig.stand_in.messages(DOCTOR)[before:]]
    assert len(replies) >= 2 and all(len(r) <= MAX_TEXT_CHARS for r in replies)
    assert replies[0].startswith(f"Open alerts (30; message 1 of {len(replies)})")
    listed = [line.split()[0] for r in replies for line in r.split("\n") if " CRISIS " in line]
    assert sorted(listed) == sorted(a.code for a in await table(db, Alert))

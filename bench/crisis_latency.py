"""Crisis path latency: N patients answer PHQ-9 item 9 positively at the same moment.

For each patient: the time from posting the Telegram webhook (the Starlette app of
bot/web.py, through httpx's ASGI transport) to the Bot API stand-in receiving BOTH the
crisis message to the patient and the alert to the clinician. The real
python-telegram-bot client sends; the real scheduler tick (APScheduler, ``--tick-s``)
delivers the outbox; the database is a fresh SQLite file (or ``--database-url``).

The stand-in (tests/standins/telegram_served.py) runs in a process of its own by default,
as Telegram's servers do, so its work does not count against the app's latency;
``--standin thread`` serves it from a thread of the bench instead, as before. Either way
it enforces no limits of its own here (the app paces itself) and stamps each arrival with
its wall clock, which the bench compares with its own.

    .venv/bin/python -m bench.crisis_latency [--patients 50] [--clinicians 5]
        [--tick-s 1] [--pacing on|off|both] [--backlog 0] [--spread-s 0 25]
        [--standin process|thread] [--database-url URL] [--no-doc]

Items 1 to 8 are answered first and their messages delivered; only item 9 is timed.
Pacing is on by default, as deployed: one message a second per Telegram chat, 30 a second
overall, so a clinician with many simultaneous alerts receives them a second apart.
"""

from __future__ import annotations

import argparse
import asyncio
import html
import itertools
import os
import platform
import re
import shlex
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import httpx

from bench.keys import ensure_key
from bot.app.outbox.delivery import deliver_when_woken
from bot.bootstrap import App, build
from bot.config import Clinic, Scheduler, Settings, Telegram
from bot.domain.alerts import DEFAULT_RULES, AlertRules
from bot.storage import outbox
from bot.storage.migrate import upgrade
from bot.storage.repository import Repository
from bot.storage.tables import Clinician, OutboundMessage, Patient
from bot.web.app import SECRET_HEADER, create_app
from scheduler.loop import start_scheduler
from tests.standins.telegram import build_text_update
from tests.standins.telegram_served import Options, Seen, in_process, in_thread

SECRET = "bench-secret"  # noqa: S105 -- the webhook secret of a throwaway stand-in
PATIENT_CHAT0 = 100_000
CLINICIAN_CHAT0 = 900_000
BACKLOG0 = 500_000  # chats (and recipient ids) of the routine backlog
DOC = Path(__file__).resolve().parent.parent / "docs" / "perf" / "crisis_latency.md"
SECTION = "## Crisis path latency"
WHERE = {"process": "in its own process", "thread": "in a thread of the bench"}


class StandIn(Protocol):
    """The Bot API stand-in, wherever it runs: its URL, its token, what it received."""

    url: str
    token: str

    async def seen(self) -> Sequence[Seen]: ...


class Updates:
    """Patient messages as Telegram delivers them to the webhook, each with fresh ids."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)

    def text(self, chat: int, text: str) -> dict[str, Any]:
        n = next(self._ids)
        return build_text_update(
            update_id=n, chat_id=chat, message_id=n, text=text, date=datetime.now(UTC)
        )


# where the stand-in runs: a process of its own (as Telegram), or a thread of the bench
STANDINS: dict[str, Callable[[Options], AbstractAsyncContextManager[StandIn]]] = {
    "process": in_process,
    "thread": in_thread,
}


@dataclass(frozen=True)
class Result:
    patients: int
    clinicians: int
    tick_s: float
    pacing: bool
    both_s: list[float]
    crisis_s: list[float]
    alert_s: list[float]
    wall_s: float
    backlog: int = 0
    spread_s: float = 0.0
    standin: str = "process"


async def prepare(app: App, patients: int, clinicians: int) -> list[tuple[int, str]]:
    """Clinicians and active Telegram patients with a PHQ-9 queued; (chat, name) each."""
    people = []
    async with app.db.transaction() as session:
        repo = Repository(session)
        doctors = [
            Clinician(display_name=f"Dr {n}", channel="telegram", address=str(CLINICIAN_CHAT0 + n))
            for n in range(clinicians)
        ]
        await repo.add(*doctors)
        for n in range(patients):
            name, chat = f"B-{n:04d}", PATIENT_CHAT0 + n
            patient = Patient(display_name=name, timezone="UTC", channel="telegram",
                              address=str(chat), status="active",
                              clinician_id=doctors[n % clinicians].id)  # fmt: skip
            await repo.add(patient)
            people.append((patient.id, chat, name))
    for patient_id, _, _ in people:
        assert patient_id is not None
        await app.services.asking.ask(patient_id, ["phq9"], ignore_quiet_hours=True)
    return [(chat, name) for _, chat, name in people]


async def post(web: httpx.AsyncClient, updates: Updates, chat: int, text: str) -> None:
    update = updates.text(chat, text)
    response = await web.post("/telegram", json=update, headers={SECRET_HEADER: SECRET})
    response.raise_for_status()


async def drained(app: App, timeout_s: float = 600) -> None:
    """Wait until the outbox has nothing queued (everything so far delivered)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        async with app.db.transaction() as session:
            statement = OutboundMessage.__table__.select().where(  # type: ignore[attr-defined]
                OutboundMessage.status.in_(("queued", "sending"))  # type: ignore[attr-defined]
            )
            if not (await session.exec(statement)).first():
                return
        await asyncio.sleep(0.1)
    raise TimeoutError("the outbox did not drain")


async def asked(stand_in: StandIn, chats: list[int], prefix: str) -> None:
    """Wait until every chat has received the question starting with `prefix`."""
    deadline = time.monotonic() + 600
    while not await _all_asked(stand_in, chats, prefix):
        if time.monotonic() > deadline:
            raise TimeoutError(f"question {prefix} never reached every patient")
        await asyncio.sleep(0.05)


async def _all_asked(stand_in: StandIn, chats: list[int], prefix: str) -> bool:
    calls = await stand_in.seen()
    return all(arrival(calls, chat, prefix, start=True) is not None for chat in chats)


def arrival(calls: Sequence[Seen], chat: int, needle: str, start: bool = False) -> datetime | None:
    """When the stand-in received the first message to `chat` containing `needle` (with
    `start`: a line of it starting with `needle`)."""
    for call in calls:
        if call.method.lower() == "sendmessage" and call.chat_id == chat:
            text = html.unescape(re.sub(r"<[^>]+>", "", call.text))
            lines = text.splitlines()  # a check-in's first question is below its intro
            if any(line.startswith(needle) for line in lines) if start else needle in text:
                return call.at
    return None


async def measure(args: argparse.Namespace, database_url: str) -> Result:
    async with STANDINS[args.standin](Options()) as stand_in:
        settings = Settings(
            database_url=database_url,
            clinic=Clinic(name="Bench"),
            alerts=_digest_window(args.digest_window_s),
            scheduler=Scheduler(tick_s=args.tick_s),
            telegram=Telegram(token=stand_in.token, mode="webhook", webhook_secret=SECRET,
                              api_base_url=f"{stand_in.url}/bot", bot_username="bench_bot"),
        )  # fmt: skip
        app = build(settings)
        if not args.pacing:
            app.deliverer.pacers = {}
        scheduler = start_scheduler(app)
        stop = asyncio.Event()
        app.wake = asyncio.Event()  # as `checkin run` does: replies leave once committed
        courier = asyncio.create_task(deliver_when_woken(app.deliverer, app.wake, stop))
        transport = httpx.ASGITransport(app=create_app(app))
        updates = Updates()
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://bench") as web:
                people = await prepare(app, args.patients, args.clinicians)
                for n in range(1, 9):  # items 1-8, all patients, untimed
                    await asked(stand_in, [chat for chat, _ in people], f"{n}/9")
                    await asyncio.gather(*(post(web, updates, chat, "0") for chat, _ in people))
                await asked(stand_in, [chat for chat, _ in people], "9/9")
                await drained(app)
                # nobody reads and answers a question within a second of getting it: the
                # crisis message is not held by Telegram's one-a-second gap after question 9
                await asyncio.sleep(1.0)
                await backlog(app, args.backlog)
                return await timed(app, web, stand_in, updates, people, args)
        finally:
            stop.set()
            courier.cancel()
            scheduler.shutdown(wait=False)
            await settled()  # let a tick in flight finish before the database closes
            await app.close()


def _digest_window(seconds: float | None) -> AlertRules:
    if seconds is None:
        return DEFAULT_RULES
    return replace(DEFAULT_RULES, digest_window=timedelta(seconds=seconds))


async def backlog(app: App, count: int) -> None:
    """`count` routine messages to other chats, queued just before the crisis answers (as
    if a scheduled wave were being sent): they must not hold the crisis messages up."""
    if not count:
        return
    now = app.clock()
    rows = [
        OutboundMessage(channel="telegram", recipient_kind="patient", recipient_id=BACKLOG0 + n,
                        address=str(BACKLOG0 + n), body=f"Routine message {n}",
                        idempotency_key=f"backlog:{n}", next_attempt_at=now,
                        priority=outbox.ROUTINE)
        for n in range(count)
    ]  # fmt: skip
    async with app.db.transaction() as session:
        await Repository(session).enqueue(rows)
    app.kick()


async def settled(timeout_s: float = 30) -> None:
    others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    if others:
        await asyncio.wait(others, timeout=timeout_s)


async def timed(
    app: App,
    web: httpx.AsyncClient,
    stand_in: StandIn,
    updates: Updates,
    people: list[tuple[int, str]],
    args: argparse.Namespace,
) -> Result:
    posted: dict[int, datetime] = {}

    async def answer(n: int, chat: int) -> None:
        await asyncio.sleep(n * args.spread_s / len(people))  # 0: all at the same moment
        posted[chat] = datetime.now(UTC)
        await post(web, updates, chat, "2")

    started = time.monotonic()
    await asyncio.gather(*(answer(n, chat) for n, (chat, _) in enumerate(people)))
    await drained(app)
    wall = time.monotonic() - started
    calls = await stand_in.seen()  # fetched after the timing: it adds nothing to it
    if args.timeline:
        print("\n".join(timeline(calls, min(posted.values()))))
    crisis, alert, both = [], [], []
    for n, (chat, name) in enumerate(people):
        doctor = CLINICIAN_CHAT0 + n % args.clinicians
        to_patient = arrival(calls, chat, "988")
        to_doctor = arrival(calls, doctor, f"CRISIS: {name},")
        if to_patient is None or to_doctor is None:
            raise RuntimeError(f"patient {n}: a crisis message or alert never arrived")
        crisis.append((to_patient - posted[chat]).total_seconds())
        alert.append((to_doctor - posted[chat]).total_seconds())
        both.append(max(crisis[-1], alert[-1]))
    return Result(
        args.patients,
        args.clinicians,
        args.tick_s,
        args.pacing,
        both,
        crisis,
        alert,
        wall,
        args.backlog,
        args.spread_s,
        args.standin,
    )


def timeline(calls: Sequence[Seen], start: datetime, step_s: float = 0.25) -> list[str]:
    """What the stand-in received after `start`, by kind, per `step_s` (--timeline)."""
    kinds = ("crisis", "alert", "edit", "other")
    counts: dict[int, dict[str, int]] = {}
    for call in calls:
        offset = (call.at - start).total_seconds()
        if offset < 0:
            continue
        if "988" in call.text:
            kind = "crisis"
        elif call.text.startswith("CRISIS:") or "alerts, most urgent first" in call.text:
            kind = "alert"  # alone, or a digest
        elif call.method.startswith("edit"):
            kind = "edit"
        else:
            kind = "other"
        bucket = counts.setdefault(int(offset / step_s), dict.fromkeys(kinds, 0))
        bucket[kind] += 1
    lines = [f"{'from s':>7} " + " ".join(f"{kind:>6}" for kind in kinds)]
    for n in sorted(counts):
        lines.append(f"{n * step_s:7.2f} " + " ".join(f"{counts[n][k]:6d}" for k in kinds))
    return lines


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def summary(result: Result) -> list[str]:
    def row(label: str, values: list[float]) -> str:
        return (f"| {label} | {percentile(values, 50):.2f} | {percentile(values, 99):.2f} | "
                f"{max(values):.2f} |")  # fmt: skip

    when = (
        f"answering one by one over {result.spread_s:g} s"
        if result.spread_s
        else "all answering at the same moment"
    )
    return [
        f"{result.patients} patients ({when}), {result.clinicians} clinicians, "
        f"tick_s={result.tick_s:g}, "
        f"pacing {'on (as deployed)' if result.pacing else 'off'}"
        f"{f', {result.backlog} routine messages queued ahead' if result.backlog else ''}"
        f", stand-in {WHERE[result.standin]}; all delivered in "
        f"{result.wall_s:.1f} s.",
        "",
        "| seconds from webhook to ... | p50 | p99 | max |",
        "| --- | --- | --- | --- |",
        row("crisis message at the patient", result.crisis_s),
        row("alert at the clinician", result.alert_s),
        row("**both**", result.both_s),
    ]


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} CPUs (`nproc`), {cpu}, Python {platform.python_version()}"


def write_doc(lines: list[str], command: str, note: str) -> None:
    section = [
        SECTION,
        "",
        "Time from posting a patient's item-9 answer to the Telegram webhook until the Bot API",
        "stand-in has received both the crisis message for the patient and the alert for the",
        "clinician (`bench/crisis_latency.py`; SQLite; the real python-telegram-bot client; the",
        "outbox delivered as `checkin run` does: woken as soon as the webhook's transaction",
        "commits, with the scheduler tick behind it; the stand-in in a process of its own, as",
        "Telegram is, unless a run says otherwise).",
        "",
        f"Machine: {machine()}. {note}".rstrip(),
        "",
        f"Command: `{command}`",
        "",
        *lines,
        "Reading it: the answer, the alert and the crisis message are committed before the",
        "webhook returns, and delivery starts at once. Every patient has a check-in open at",
        "item 9 (50 concurrent chats); the answers come either all at the same moment (the",
        "worst case: fifty turns queue behind each other, and each clinician is sent ten",
        "alerts at once) or one by one, evenly spread. With pacing on, Telegram's limits",
        "dominate the first: one message a second per chat, so a clinician's tenth",
        "simultaneous alert arrives about ten seconds after the first, and 30 a second",
        "overall. Pacing off shows the pipeline's own cost. With 50 answers, p99 is the",
        "slowest of them.",
        "",
    ]
    DOC.parent.mkdir(exist_ok=True)
    DOC.write_text("\n".join(section).rstrip("\n") + "\n")  # bench.run_all stitches it in


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, default=50)
    parser.add_argument("--clinicians", type=int, default=5)
    parser.add_argument("--tick-s", type=float, default=1.0, help="scheduler tick (default 1)")
    parser.add_argument("--pacing", choices=("on", "off", "both"), default="both",
                        help="Telegram rate limits as deployed (on), none: the pipeline's own "
                             "cost (off), or one run of each (default)")  # fmt: skip
    parser.add_argument("--backlog", type=int, default=0,
                        help="routine messages to other chats queued just before the answers "
                             "(a scheduled wave in progress); default 0")  # fmt: skip
    parser.add_argument("--spread-s", type=float, nargs="+", default=[0.0, 25.0],
                        help="seconds over which the item-9 answers arrive, evenly spaced: 0 "
                             "is all at once (the worst case), 25 is two a second among the "
                             "chats (a run for each value given; default 0 25)")  # fmt: skip
    parser.add_argument(
        "--digest-window-s",
        type=float,
        default=None,
        help="[alerts] digest_window_s (default: the configured default)",
    )
    parser.add_argument("--standin", choices=tuple(STANDINS), default="process",
                        help="where the Bot API stand-in runs: a process of its own, as "
                             "Telegram does (default), or a thread of the bench, sharing "
                             "its GIL (the old way)")  # fmt: skip
    parser.add_argument("--database-url", default=None, help="default: a fresh SQLite file")
    parser.add_argument("--no-doc", dest="doc", action="store_false",
                        help="print only; do not update docs/PERFORMANCE.md")  # fmt: skip
    parser.add_argument("--timeline", action="store_true",
                        help="print what the stand-in received, by kind, every 0.25 s")  # fmt: skip
    parser.add_argument("--note", default="", help="said in the doc, e.g. the machine was shared")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    ensure_key()  # names and messages are encrypted at rest, as deployed
    os.environ.setdefault("PTB_TIMEDELTA", "true")
    args = parse(argv)
    lines: list[str] = []
    pacings = (True, False) if args.pacing == "both" else (args.pacing == "on",)
    for spread_s in args.spread_s:
        for pacing in pacings:
            with tempfile.TemporaryDirectory() as tmp:
                url = args.database_url or f"sqlite+aiosqlite:///{tmp}/bench.db"
                upgrade(url)
                run = argparse.Namespace(**vars(args) | {"pacing": pacing, "spread_s": spread_s})
                result = asyncio.run(measure(run, url))
            lines += [*summary(result), ""]
            print("\n".join(summary(result)) + "\n", flush=True)
    if args.doc:
        given = sys.argv[1:] if argv is None else argv
        command = shlex.join([".venv/bin/python", "-m", "bench.crisis_latency", *given])
        write_doc(lines, command, args.note)


if __name__ == "__main__":
    main()

"""``checkin demo``: try the whole path in a terminal with nothing to configure.

A temporary clinic (a SQLite file in a fresh temporary directory), a demo clinician and
patient on the console channel, and a real check-in through the same services, outbox and
templates a Telegram or SMS patient gets. ``--auto`` plays a scripted patient through a
six-session ketamine series on an accelerated clock and prints the score trajectory.
"""

from __future__ import annotations

import asyncio
import io
import sys
import tempfile
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer

from bot.app.conversations.inbox import Inbound
from bot.app.operator import database as database_admin
from bot.app.operator import demo_clinic
from bot.bootstrap import App, build
from bot.commands.common import state
from bot.config import Clinic, Security, Settings
from bot.domain.outcomes import Observation, assess
from scheduler.loop import tick

# The scripted series: a PHQ-9 total after each session (0 = baseline), spread over items.
SERIES_TOTALS = (21, 19, 16, 13, 10, 7, 4)
SESSION_DAYS = (1, 3, 5, 8, 10, 12)  # three a week over two weeks (Murrough 2013 style)
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # a Monday; the accelerated clock starts here


@dataclass
class SimClock:
    now: datetime

    def __call__(self) -> datetime:
        return self.now


def demo(
    ctx: typer.Context,
    auto: Annotated[
        bool, typer.Option("--auto", help="Play a scripted patient through a six-session series.")
    ] = False,
) -> None:
    """Try mbc-checkin in the terminal: no configuration, no credentials, nothing installed."""
    base = state(ctx).settings()
    directory = Path(tempfile.mkdtemp(prefix="checkin-demo-"))
    settings = replace(
        base,
        database_url=f"sqlite:///{directory / 'demo.db'}",
        security=Security(),
        clinic=Clinic(
            name="Demo Clinic", contact="555-0100", urgent_line="555-0199", show_scores=True
        ),
    )
    asyncio.run(database_admin.upgrade(settings))  # and a key file beside demo.db
    runner = _auto if auto else _interactive
    asyncio.run(runner(settings))
    typer.echo(f"\nEverything above is stored in {directory / 'demo.db'} (SQLite). Look inside:")
    typer.echo(f"  CHECKIN_DATABASE_URL=sqlite:///{directory / 'demo.db'} checkin patient show 1")
    sign_in = asyncio.run(_panel_sign_in(settings))
    typer.echo("\nOr see it in the web panel: start the service on this clinic,")
    typer.echo(f"  CHECKIN_DATABASE_URL=sqlite:///{directory / 'demo.db'} checkin run")
    typer.echo("open http://127.0.0.1:8080/login and sign in (one-time, this demo clinic only):")
    typer.echo(f"  e-mail {sign_in.email}   password {sign_in.password}")
    typer.echo(f"  code: add this to an authenticator app first: {sign_in.uri}")


async def _panel_sign_in(settings: Settings) -> demo_clinic.DemoSignIn:
    app = build(settings, console=io.StringIO())
    try:
        return await demo_clinic.admin_sign_in(app.db, app.clock, settings.clinic.name)
    finally:
        await app.close()


async def _interactive(settings: Settings) -> None:
    app = build(settings, console=sys.stdout)
    try:
        patient_id = await demo_clinic.set_up(app.db)
        typer.echo("Demo Clinic: you are the patient. Answer each question by typing a number or")
        typer.echo("the words; try BACK, SKIP, LATER, HELP or STOP too. Ctrl-D ends the demo.\n")
        checkin = await app.services.asking.ask(
            patient_id, ["phq9", "side_effects"], ignore_quiet_hours=True
        )
        await tick(app)
        while await demo_clinic.is_open(app.db, checkin.id):
            line = await asyncio.to_thread(_prompt)
            if line is None:
                break
            await app.services.inbox.handle_inbound(
                Inbound("console", uuid.uuid4().hex, "demo", line, app.clock())
            )
            await tick(app)
        await _summary(app, patient_id)
    finally:
        await app.close()


def _prompt() -> str | None:
    print("you> ", end="", flush=True)
    line = sys.stdin.readline()
    return line.rstrip("\n") if line else None


async def _summary(app: App, patient_id: int) -> None:
    scores, alerts = await demo_clinic.clinic_view(app.db, patient_id)
    typer.echo("\n--- What the clinic sees ---")
    for s in scores:
        total = f"{s.total}" if s.total is not None else "no total"
        flags = f"; flags: {', '.join(s.flags)}" if s.flags else ""
        typer.echo(f"{s.instrument}: {total}{f' ({s.band})' if s.band else ''}{flags}")
    for a in alerts:
        typer.echo(
            f"alert {a.code}: {a.level} {a.rule.replace('_', ' ')} ({a.status}), sent to Dr. Demo"
        )
    if not scores and not alerts:
        typer.echo("nothing recorded yet")


async def _auto(settings: Settings) -> None:
    clock = SimClock(START)
    quiet = io.StringIO()
    app = build(settings, clock=clock, console=quiet)
    try:
        patient_id = await demo_clinic.set_up(app.db)
        typer.echo(
            "Scripted patient, IV ketamine series of six sessions; PHQ-9 the day after each.\n"
        )
        observations: list[Observation] = []
        for index, total in enumerate(SERIES_TOTALS):
            if index:
                session_at = START.replace(hour=10) + timedelta(days=SESSION_DAYS[index - 1])
                await demo_clinic.record_session(app.db, patient_id, index, session_at)
                clock.now = session_at + timedelta(hours=23)
            answers = _spread(total, item9=1 if index == 0 else 0)
            instruments = ["phq9", "side_effects"] if index == 1 else ["phq9"]
            score = await _play(app, patient_id, instruments, answers, clock)
            observations.append(Observation(clock.now, score, index))
            _print_point(observations, index, clock.now)
        _print_outcome(observations)
    finally:
        await app.close()


def _spread(total: int, item9: int) -> list[str]:
    """Nine PHQ-9 answers adding to `total` (item 9 fixed), then the difficulty item."""
    values = [0] * 8
    remaining = total - item9
    for i in range(8):
        values[i] = min(3, remaining)
        remaining -= values[i]
    return [str(v) for v in (*values, item9)] + (["1"] if total else [])


async def _play(
    app: App, patient_id: int, instruments: list[str], answers: list[str], clock: SimClock
) -> int:
    checkin = await app.services.asking.ask(patient_id, instruments, ignore_quiet_hours=True)
    await tick(app)
    replies = answers + (["no"] * 8 + ["skip"] if "side_effects" in instruments else [])
    for reply in replies:
        clock.now += timedelta(seconds=40)
        await app.services.inbox.handle_inbound(
            Inbound("console", uuid.uuid4().hex, "demo", reply, clock.now)
        )
    await tick(app)
    scores = await demo_clinic.scores(app.db, patient_id, "phq9")
    latest = [s for s in scores if s.checkin_id == checkin.id]
    assert latest and latest[0].total is not None, "the scripted check-in did not complete"
    return latest[0].total


def _print_point(observations: list[Observation], index: int, at: datetime) -> None:
    from bot.instruments import load_catalog

    rules = load_catalog().get("phq9").outcomes
    result = assess(observations, rules)
    label = "baseline" if index == 0 else f"after session {index}"
    change = "" if index == 0 else f"{-(result.improvement_pct or 0):+.0f}%"
    statuses = ", ".join(s.replace("_", " ") for s in result.statuses) if index else ""
    band = _band(result.latest or 0)
    typer.echo(
        f"{at:%a %d %b}  {label:<16} PHQ-9 {result.latest:>2} {band:<18} {change:>5}  {statuses}"
    )


def _band(total: int) -> str:
    from bot.instruments import load_catalog

    band = load_catalog().get("phq9").band_for(total)
    return band.label.get("en") if band else ""


def _print_outcome(observations: list[Observation]) -> None:
    from bot.instruments import load_catalog

    result = assess(observations, load_catalog().get("phq9").outcomes)
    typer.echo(
        f"\nBaseline {result.baseline}, now {result.latest} "
        f"({result.improvement_pct:.0f}% better): response {'yes' if result.response else 'no'}, "
        f"remission {'yes' if result.remission else 'no'}."
    )

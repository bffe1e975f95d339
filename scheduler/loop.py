"""One tick, and the APScheduler wiring that runs it every ``[scheduler] tick_s``.

Per-patient plans are database rows, never APScheduler jobs: the scheduler holds exactly
one job (the tick), coalesced, one instance at a time, so a slow tick is never overlapped
and missed runs collapse into one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from bot.app.conversations.intake import drain_when_woken
from bot.app.operator.retention import purge_due
from bot.app.outbox.delivery import deliver_when_woken
from bot.app.outbox.receipts import prune_early
from bot.app.outbox.sending import Report
from bot.bootstrap import App

log = logging.getLogger(__name__)
T = TypeVar("T")
PURGE_EVERY = timedelta(hours=1)  # how often a worker looks for patients past retention
# PostgreSQL's statistics are refreshed after a worker planned and started 5,000 check-ins,
# then 10,000 more, 20,000, ... (`App.analyze_after`; see Database.refresh_statistics): a
# wave grows the tables faster than autovacuum looks at them, and an ANALYZE of them
# costs about half a second of the database's time at 100,000 patients.
GROWN = ("patient", "planned_occurrence", "checkin", "outbound_message")


@dataclass(frozen=True)
class TickReport:
    recovered: int
    started: int
    expired: int
    delivery: Report
    planned: int = 0
    reminded: int = 0


async def tick(app: App) -> TickReport:
    """Everything time-driven, once: recover, plan, expire, start due check-ins, remind,
    escalate, deliver (or, in a process with a courier, wake it).

    Each stage runs even if an earlier one failed (a database hiccup, a bug in one
    patient's data): delivery in particular must never wait on anything else."""
    services = app.services
    batch = app.settings.scheduler.batch
    if services.intake is not None:  # spooled SMS reach the inbox before recovery looks
        await _stage("spool", services.intake.drain(), 0)
    recovered = await _stage("recovery", services.inbox.process_pending(), 0)
    started_before = app.planner.started
    planned = await _stage("planning", app.planner.plan_due(), 0)
    started = app.planner.started - started_before  # a wave's, as it was planned
    expired = await _stage("expiry", services.reminders.expire_due(batch), 0)
    started += await _stage("start", services.starting.start_due(batch), 0)
    app.grown_since_analyze += planned + started
    if app.grown_since_analyze >= app.analyze_after:
        app.grown_since_analyze = 0
        app.analyze_after *= 2
        await _stage("statistics", app.db.refresh_statistics(GROWN), None)
    reminded = await _stage("reminders", services.reminders.remind_due(batch), 0)
    await _stage("escalation", services.escalation.escalate_due(), 0)
    if app.digests is not None:  # notices held for a digest here or by another process
        await _stage("digests", app.digests.fold_due(), 0)
    if app.stopping:  # the process is stopping: what is due waits for the next one
        delivery = Report()
    elif app.wake is None:
        delivery = await _stage("delivery", app.deliverer.drain(), Report())
    else:  # a courier delivers (see `courier`): the tick only wakes it, never waits for it
        app.kick()
        delivery = Report()
    await _stage("checkpoint", app.db.checkpoint_if_grown(), False)  # SQLite's log
    now = app.clock()
    if not app.last_purge_at or now - app.last_purge_at[0] >= PURGE_EVERY:
        app.last_purge_at[:] = [now]  # erasing discharged patients is a daily matter
        await _stage("retention", purge_due(app.db, app.settings.retention, app.clock), None)
        await _stage("receipts", prune_early(app.db, app.clock), 0)  # receipts kept a day
    app.last_tick_at[:] = [app.clock()]
    return TickReport(recovered, started, expired, delivery, planned, reminded)


async def _stage(name: str, work: Awaitable[T], failed: T) -> T:
    try:
        return await work
    except Exception as exc:
        log.error("tick stage %s failed (%s); the next tick tries again", name, type(exc).__name__)
        return failed


async def _safe_tick(app: App) -> None:
    try:
        report = await tick(app)
    except Exception as exc:  # the loop must survive a bad tick (database briefly away, ...)
        log.error("scheduler tick failed (%s); retrying next tick", type(exc).__name__)
        return
    counts = (report.planned, report.started, report.reminded, report.expired, report.recovered)
    if any(counts) or report.delivery.sent:
        log.info(
            "tick: planned=%d started=%d reminded=%d expired=%d recovered=%d "
            "sent=%d retried=%d dead=%d",
            *counts, report.delivery.sent, report.delivery.retried, report.delivery.dead,
        )  # fmt: skip


def _not_overlap_notice(record: logging.LogRecord) -> bool:
    """APScheduler warns each time a tick is due while the last one still runs; with one
    instance at a time by design, that is expected under load, not a problem."""
    return "maximum number of running instances reached" not in record.getMessage()


@contextlib.asynccontextmanager
async def courier(app: App) -> AsyncIterator[None]:
    """Deliver the outbox in a task of its own while the block runs, woken by every commit
    that queues messages (`App.kick`) and by every tick.

    Sending is paced by the provider's limits, and a wave of thousands takes minutes to
    send: were the tick to deliver, planning and starting the next check-ins would wait
    for it (measured: a 10,000-patient wave reached the outbox in 67 s with the tick
    draining, 20 s with it sending one claim).

    Leaving the block stops it gracefully (see `_stop_courier`)."""
    stop = asyncio.Event()
    app.wake = asyncio.Event()
    task = asyncio.create_task(deliver_when_woken(app.deliverer, app.wake, stop))
    try:
        yield
    finally:
        await _stop_courier(app, task, stop)
        app.wake = None


async def _stop_courier(app: App, task: asyncio.Task[None], stop: asyncio.Event) -> None:
    """Claim nothing more; let the sends the provider already has finish and their outcomes
    commit, for `[scheduler] stop_grace_s` at most (or until a second SIGTERM or Ctrl-C,
    `App.hurry`); then cancel what is left, and hand back what this process leased but
    never began to send.

    A send cut off after the provider took it but before it was recorded goes again after
    its lease: before this, every restart could send a patient a question twice (and a
    clinician an alert). A provider answers in a fraction of a second, so the usual stop
    takes that long; the grace only bounds a provider that does not answer. What was
    claimed and not begun would wait out its lease too (30 s; on PostgreSQL nobody may
    take it sooner): handed back, it goes at once from another worker or the next
    process."""
    in_flight = app.deliverer.in_flight
    stop.set()
    hurried = asyncio.ensure_future(app.hurry.wait())
    try:
        await asyncio.wait(
            {task, hurried},
            timeout=app.settings.scheduler.stop_grace_s,
            return_when=asyncio.FIRST_COMPLETED,
        )
    finally:
        hurried.cancel()
    left = app.deliverer.in_flight
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    handed_back = await app.deliverer.hand_back_unsent()
    log.info(
        "delivery stopped: %d sends in flight finished, %d left to their lease, "
        "%d not begun handed back",
        max(0, in_flight - left), left, handed_back,
    )  # fmt: skip


def on_stop_signal(app: App, stop: Callable[[], None]) -> Callable[[], None]:
    """The handler for SIGTERM and Ctrl-C: each calls `stop`; a second one also cuts the
    delivery grace short (`App.hurry`, see `_stop_courier`): an operator who asks twice
    does not wait out `[scheduler] stop_grace_s` for a provider that does not answer. The
    sends it cancels go again after their lease, as after a crash."""
    signals = 0

    def handler() -> None:
        nonlocal signals
        signals += 1
        if signals == 2:
            log.warning(
                "second stop signal: cutting the delivery grace short; sends in flight "
                "are cancelled and left to their lease"
            )
            app.hurry.set()
        stop()

    return handler


@contextlib.asynccontextmanager
async def spool_drainer(app: App) -> AsyncIterator[None]:
    """Drain the SMS spool in a task of its own while the block runs, woken by every
    message the webhook spools (`App.spool_woken`): the webhook answers without waiting
    for the database, and the message is processed a moment later, not at the next tick."""
    intake = app.services.intake
    if intake is None:
        yield
        return
    stop = asyncio.Event()
    app.spooled = asyncio.Event()
    app.spooled.set()  # whatever a stopped process left in the spool, at once
    task = asyncio.create_task(drain_when_woken(intake, app.spooled, stop, app.kick))
    try:
        yield
    finally:
        stop.set()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        app.spooled = None


def stop_scheduler(app: App, scheduler: AsyncIOScheduler) -> None:
    """No more ticks; and a tick still running (APScheduler does not wait for it, nor
    cancel it) skips its delivery: the process would cut its sends off half way, and a
    send the provider took but that was not recorded goes again after its lease."""
    app.stopping = True
    scheduler.shutdown(wait=False)


def start_scheduler(app: App) -> AsyncIOScheduler:
    """Start ticking on the running event loop; the caller shuts it down."""
    logging.getLogger("apscheduler.scheduler").addFilter(_not_overlap_notice)
    scheduler = AsyncIOScheduler(timezone="UTC")
    scheduler.add_job(
        _safe_tick,
        "interval",
        args=[app],
        seconds=app.settings.scheduler.tick_s,
        id="tick",
        coalesce=True,
        max_instances=1,
        misfire_grace_time=None,
        next_run_time=app.clock(),
    )
    scheduler.start()
    return scheduler

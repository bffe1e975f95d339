"""The one composition root: settings in, a wired application out. Called by the entry
points (CLI, web server, scheduler) at start-up, never at import."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TextIO

from telegram.error import TelegramError

from bot.app.alerts.alerting import Alerting
from bot.app.alerts.digests import Digests
from bot.app.operator.invitations import Invitations
from bot.app.operator.refusals import Refused
from bot.app.outbox.delivery import Deliverer
from bot.app.outbox.pacing import REPLY_RESERVE_SHARE, URGENT_FORMING, Pacer, Pacing
from bot.app.outbox.roll import BEAT_S, VALID_S, Roll
from bot.app.outbox.shared_pacing import SharedPacer
from bot.app.planning.planner import Planner
from bot.app.planning.protocols import check_protocols
from bot.app.ports import Channel, Clock
from bot.app.services import Services
from bot.app.telegram_intake import TelegramIntake
from bot.channels.console import ConsoleChannel
from bot.channels.telegram import TelegramChannel
from bot.config import Settings
from bot.domain.alerts import check_references
from bot.instruments import Catalog, load_catalog
from bot.logs import withhold_library_data
from bot.rendering.renderer import Renderer
from bot.storage import outbox
from bot.storage.database import Database
from bot.storage.keys import install_keys
from bot.storage.send_allowance import SendAllowance
from bot.storage.send_roll import SendRoll
from bot.storage.spool import FileSpool, spool_path


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class App:
    settings: Settings
    db: Database
    catalog: Catalog
    renderer: Renderer
    services: Services
    deliverer: Deliverer
    channels: Mapping[str, Channel]
    clock: Clock
    planner: Planner
    last_tick_at: list[datetime] = field(default_factory=list)
    last_purge_at: list[datetime] = field(default_factory=list)
    telegram_intake: TelegramIntake = field(default_factory=TelegramIntake)  # poller, skips
    grown_since_analyze: int = 0  # check-ins planned and started since statistics refreshed
    analyze_after: int = 5_000  # ... before they are refreshed again (doubles each time)
    # Set by a process that serves webhooks: replies (a crisis message above all) go out
    # as soon as they are committed instead of at the next tick (see deliver_when_woken).
    wake: asyncio.Event | None = None
    # Set by a process that serves /sms: a spooled message is drained into the inbox at
    # once instead of at the next tick (see intake.drain_when_woken).
    spooled: asyncio.Event | None = None
    digests: Digests | None = None  # alert notices held for a digest, folded before sending
    # Set when the process begins to stop: a tick still running then sends nothing (its
    # sends could be cut off half way and go again after their lease; see stop_scheduler).
    stopping: bool = False
    # Set by a second SIGTERM or Ctrl-C: the stop's grace for the sends in flight ends at
    # once (see scheduler.loop.on_stop_signal).
    hurry: asyncio.Event = field(default_factory=asyncio.Event)

    def kick(self) -> None:
        """New messages are in the outbox: deliver now, if this process delivers on wake."""
        if self.wake is not None:
            self.wake.set()

    def spool_woken(self) -> None:
        """A message was spooled: drain now, if this process drains on wake."""
        if self.spooled is not None:
            self.spooled.set()

    def invitations(self) -> Invitations:
        """Single-use Telegram enrolment links, valid [telegram] enroll_ttl_min minutes."""
        ttl = timedelta(minutes=self.settings.telegram.enroll_ttl_min)
        return Invitations(self.clock, ttl, self.telegram_username)

    async def telegram_username(self) -> str:
        """The bot's @username for enrolment links: [telegram] bot_username, else asked of
        the Bot API. Raises ``Refused`` when Telegram is not configured or not reachable."""
        telegram = self.settings.telegram
        channel = self.channels.get("telegram")
        if not telegram.enabled or not isinstance(channel, TelegramChannel):
            raise Refused(
                "telegram is not configured: set [telegram] token (or CHECKIN_TELEGRAM_TOKEN)"
            )
        if telegram.bot_username:
            return telegram.bot_username
        try:
            await channel.start()
        except TelegramError as exc:
            problem = type(exc).__name__
            raise Refused(
                f"telegram: cannot reach the Bot API ({problem}); set [telegram] bot_username"
            ) from exc
        return channel.bot.username

    async def close(self) -> None:
        telegram = self.channels.get("telegram")
        if isinstance(telegram, TelegramChannel):
            await telegram.close()
        for name in ("sms", "whatsapp"):
            twilio = self.channels.get(name)
            close = getattr(twilio, "close", None)  # twilio's clients: SMS and WhatsApp
            if close is not None:
                close()
        rolls = set[Roll]()
        for pacer in self.deliverer.pacers.values():
            if isinstance(pacer, SharedPacer):
                await pacer.close()  # places still held are given back
                if pacer.roll is not None:
                    rolls.add(pacer.roll)
        for roll in rolls:
            await roll.close()  # off the roll of senders: another worker need not wait
        intake = self.services.intake
        if intake is not None and isinstance(intake.spool, FileSpool):
            intake.spool.close()
        await self.db.dispose()


def default_pacers(settings: Settings, underway: Callable[[], int] = lambda: 0) -> dict[str, Pacer]:
    """Provider send limits (``rate_per_s`` of [telegram] and [sms]). Telegram: about 30
    messages a second overall and about one a second per chat on average (Bot FAQ;
    python-telegram-bot FloodLimit), a chat taking `per_chat_burst` at once. SMS: one a
    second, the usual rate of a US long code. How a send is counted against the limit,
    and why, is in `Pacer`; `underway`, the turns this process is handling, tells
    Telegram's pacer a storm of crisis messages may be starting."""
    telegram, sms = settings.telegram, settings.sms.rate_per_s
    return {
        "telegram": Pacer(
            rate_per_s=telegram.rate_per_s,
            per_chat_rate_per_s=telegram.per_chat_rate_per_s,
            per_chat_burst=telegram.per_chat_burst,
            unspaced_from=outbox.REPLY,  # Telegram counts a second: replies need no spacing
            urgent_from=outbox.URGENT,  # crisis messages and alerts first, even over time
            reply_reserve_share=REPLY_RESERVE_SHARE,  # room kept for replies while they flow
            coming=underway,
        ),
        "sms": Pacer(rate_per_s=sms, window_s=max(1.0, 1 / sms)),
        "whatsapp": Pacer(rate_per_s=settings.whatsapp.rate_per_s, per_chat_rate_per_s=1.0),
    }


def shared_pacers(pacers: Mapping[str, Pacer], db: Database, hold_s: float) -> dict[str, Pacing]:
    """On PostgreSQL, every worker's pacers share the limits through the database
    (`SharedPacer`); a place held by a worker that died frees after `hold_s`. A worker
    alone on the database paces itself (one `Roll` for all its channels)."""
    if db.dialect != "postgresql":
        return dict(pacers)
    settle_s = max(_settle_s(pacer) for pacer in pacers.values())
    roll = Roll(SendRoll(db, valid_s=VALID_S, settle_s=settle_s, beat_s=BEAT_S))
    return {channel: _shared(channel, pacer, db, hold_s, roll) for channel, pacer in pacers.items()}


def _settle_s(pacer: Pacer) -> float:
    """How long a send is remembered by `pacer`: its window, and the time a chat's spent
    burst takes to fill again."""
    per_chat = pacer.per_chat_rate_per_s
    return max(pacer.window_s, pacer.per_chat_burst / per_chat if per_chat else 0.0)


SHARED_WINDOW_MAX = 1000  # places a second: above it, a rate is no limit worth sharing


def _shared(channel: str, pacer: Pacer, db: Database, hold_s: float, roll: Roll) -> SharedPacer:
    per_chat = pacer.per_chat_rate_per_s
    # (no provider allows 1,000 a second; tests set rates far above it to lift the limit,
    # and a window row per place would cost a scan of them all per send)
    per_window = pacer.per_window if pacer.per_window <= SHARED_WINDOW_MAX else 0
    allowance = SendAllowance(
        db,
        channel,
        per_window=per_window,
        window_s=pacer.window_s,
        hold_s=hold_s,
        interval_s=1.0 / per_chat if per_chat else None,
        burst=pacer.per_chat_burst,
    )
    return SharedPacer(pacer, allowance, roll=roll)


def build(
    settings: Settings,
    *,
    clock: Clock = utc_now,
    channels: Mapping[str, Channel] | None = None,
    console: TextIO | None = None,
) -> App:
    # python-telegram-bot 22 warns unless told to use timedelta for durations (RetryAfter).
    os.environ.setdefault("PTB_TIMEDELTA", "true")
    withhold_library_data()  # no message text or names in the libraries' log records
    install_keys(settings)  # the process-wide key ring (None until a key exists)
    catalog = load_catalog(settings.instruments_dirs)
    renderer = Renderer(catalog, settings.clinic)
    db = Database(settings.database_url)
    wired: dict[str, Channel] = {"console": ConsoleChannel(console)}
    if settings.telegram.enabled:
        wired["telegram"] = TelegramChannel(
            settings.telegram.token, settings.telegram.api_base_url, settings.telegram.timeout_s
        )
    if settings.sms.enabled:
        wired["sms"] = _sms_channel(settings)
    if settings.whatsapp.enabled:
        wired["whatsapp"] = _whatsapp_channel(settings, db, renderer, clock)
    wired.update(channels or {})
    check_references(settings.alerts, catalog.instruments, catalog.unavailable, settings.source)
    check_protocols(settings.protocols, catalog, settings.source)
    lease = timedelta(seconds=settings.scheduler.lease_s)
    twilio = "sms" in wired or "whatsapp" in wired  # inbound Twilio messages are spooled
    spool = FileSpool(spool_path(settings), settings.sms.spool_max) if twilio else None
    digests = Digests(db, renderer, clock)
    alerting = Alerting(catalog, settings.alerts, renderer, digests=digests)
    services = Services.create(
        db,
        catalog,
        renderer,
        settings.clinic,
        clock,
        expire_after=timedelta(hours=settings.scheduler.expire_after_h),
        alerting=alerting,
        start_lease=lease,
        spool=spool,
    )
    send_lease = timedelta(seconds=settings.scheduler.send_lease_s)
    underway = services.context.underway
    digests.crowded = lambda: underway.count >= URGENT_FORMING  # as Telegram's pacer sees a storm
    pacers = shared_pacers(
        default_pacers(settings, lambda: underway.count), db, settings.scheduler.send_lease_s
    )
    deliverer = Deliverer(db, wired, clock, lease=send_lease, pacers=pacers, alerting=alerting)
    deliverer.before_claim = digests.fold_if_due
    services.context.handoff = deliverer  # while its courier runs, turns hand it their rows
    planner = Planner(
        db,
        catalog,
        settings.protocols,
        settings.clinic,
        clock,
        plan_ahead=timedelta(days=settings.scheduler.plan_ahead_days),
        bundle_window=timedelta(minutes=settings.scheduler.bundle_window_min),
        batch=settings.scheduler.batch,
        lease=lease,
        start_planned=services.starting.start_planned,  # a wave starts as it is planned
    )
    app = App(settings, db, catalog, renderer, services, deliverer, wired, clock, planner)
    app.digests, digests.kick = digests, app.kick
    return app


def _sms_channel(settings: Settings) -> Channel:
    """The SMS channel: twilio (a large import) is loaded only when [sms] is configured."""
    from bot.channels.sms import SmsChannel

    callback = settings.server.public_url.rstrip("/") + "/sms/status"
    return SmsChannel(settings.sms, status_callback=callback)


def _whatsapp_channel(
    settings: Settings, db: Database, renderer: Renderer, clock: Clock
) -> Channel:
    """The WhatsApp channel (twilio, loaded only when [whatsapp] is configured); it reads
    each patient's 24-hour window from the inbox."""
    from bot.app.conversations.whatsapp_window import last_inbound_at
    from bot.channels.whatsapp import WhatsAppChannel

    async def last_inbound(address: str) -> datetime | None:
        async with db.reading() as session:
            return await last_inbound_at(session, address)

    callback = settings.server.public_url.rstrip("/") + "/whatsapp/status"
    return WhatsAppChannel(
        settings.whatsapp, settings.clinic, last_inbound, clock, renderer.list_button,
        renderer.more_alerts, callback,
    )  # fmt: skip

"""The use cases, built once and handed to the entrypoints (the webhooks, the scheduler
tick, the CLI): a typed bundle, not a class that does the work. Each member is one use
case over one shared :class:`~bot.app.context.Context`:

* ``inbox``: record and process inbound messages, recovery (``bot.app.conversations.inbox``);
* ``intake``: spool inbound SMS, then drain them into the inbox (``bot.app.conversations.intake``;
  None when nothing is spooled);
* ``asking`` / ``starting``: queue a check-in; start due ones (``bot.app.conversations.asking``,
  ``bot.app.conversations.starting``);
* ``reminders``: remind and expire (``bot.app.conversations.reminders``);
* ``escalation``: escalate unacknowledged alerts (``bot.app.alerts.escalation``);
* ``consent``: invite an SMS patient (``bot.app.conversations.consent``);
* ``alerting``: raise, acknowledge and resolve alerts (``bot.app.alerts.alerting``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from bot.app.alerts.alerting import Alerting
from bot.app.alerts.escalation import Escalation
from bot.app.context import Context
from bot.app.conversations.asking import EXPIRE_AFTER, Asking
from bot.app.conversations.consent import Consent
from bot.app.conversations.inbox import RECOVERY_GRACE, Inbox
from bot.app.conversations.intake import Intake
from bot.app.conversations.reminders import Reminders
from bot.app.conversations.starting import START_LEASE, Starting
from bot.app.planning.planner import CATCH_UP_S
from bot.app.ports import Clock, InboundSpool
from bot.config import Clinic
from bot.instruments import Catalog
from bot.rendering.renderer import Renderer
from bot.storage.database import Database


@dataclass(frozen=True)
class Services:
    context: Context
    inbox: Inbox
    asking: Asking
    starting: Starting
    reminders: Reminders
    escalation: Escalation
    consent: Consent
    intake: Intake | None = None

    @property
    def alerting(self) -> Alerting | None:
        return self.context.alerting

    @classmethod
    def create(
        cls,
        db: Database,
        catalog: Catalog,
        renderer: Renderer,
        clinic: Clinic,
        clock: Clock,
        *,
        expire_after: timedelta = EXPIRE_AFTER,
        alerting: Alerting | None = None,
        start_lease: timedelta = START_LEASE,
        recovery_grace: timedelta = RECOVERY_GRACE,
        catch_up_s: float = CATCH_UP_S,
        spool: InboundSpool | None = None,
    ) -> Services:
        """Every use case over one context; the timings are the scheduler's settings."""
        ctx = Context(db, catalog, renderer, clinic, clock, alerting)
        inbox = Inbox(ctx, recovery_grace)
        return cls(
            context=ctx,
            inbox=inbox,
            asking=Asking(ctx, expire_after),
            starting=Starting(ctx, start_lease, catch_up_s),
            reminders=Reminders(ctx),
            escalation=Escalation(ctx),
            consent=Consent(ctx),
            intake=Intake(inbox, spool) if spool is not None else None,
        )

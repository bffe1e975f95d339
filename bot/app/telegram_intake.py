"""How Telegram updates are coming in: the poller's liveness and the updates skipped as
unusable, for ``/healthz`` and ``/metrics``.

Kept in this process's memory (like the scheduler's last tick): the poller runs in the
process that serves ``/healthz``, and a restart that resets the skipped count is what a
Prometheus counter expects. An update is skipped only when it can never be used (it cannot
be read or parsed); its id and kind are logged, nothing of its content.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from bot.app.metrics import Metric

KINDS = ("message", "callback_query", "my_chat_member", "other")
REASONS = ("unreadable", "too_deep", "unparseable")


def update_kind(data: object) -> str:
    """The update's kind (the field beside ``update_id``), from a closed set."""
    if isinstance(data, dict):
        for kind in KINDS[:-1]:
            if kind in data:
                return kind
    return "other"


@dataclass
class TelegramIntake:
    polling: bool = False  # a poller runs in this process
    stopped: bool = False  # ... and has stopped (conflict, crash, shutdown)
    last_poll_at: datetime | None = None  # the last getUpdates whose batch was all handled
    stall_after: timedelta = timedelta(seconds=60)
    skipped: Counter[tuple[str, str]] = field(default_factory=Counter)

    def poller_started(self, now: datetime, timeout_s: float) -> None:
        self.polling, self.stopped, self.last_poll_at = True, False, now
        self.stall_after = timedelta(seconds=max(60.0, 3 * timeout_s))

    def poller_stopped(self) -> None:
        self.stopped = True

    def polled(self, now: datetime) -> None:
        self.last_poll_at = now

    def skip(self, kind: str, reason: str) -> None:
        self.skipped[(kind, reason)] += 1

    def problem(self, now: datetime) -> str | None:
        """Why the poller is unhealthy (stopped, or no progress for too long), else None."""
        if not self.polling:
            return None
        if self.stopped:
            return "telegram poller stopped"
        age = self.poll_age_s(now)
        if age > self.stall_after.total_seconds():
            limit = self.stall_after.total_seconds()
            return f"telegram poller stalled ({age:.0f}s since its last poll, limit {limit:.0f}s)"
        return None

    def poll_age_s(self, now: datetime) -> float:
        if self.last_poll_at is None:
            return float("inf")
        return max(0.0, (now - self.last_poll_at).total_seconds())

    def metrics(self, now: datetime) -> list[Metric]:
        skipped = [
            ({"kind": kind, "reason": reason}, float(self.skipped[(kind, reason)]))
            for kind in KINDS
            for reason in REASONS
        ]
        found = [
            Metric(
                "checkin_telegram_updates_skipped_total",
                "counter",
                "Telegram updates skipped as unusable (unreadable, nested too deep, "
                "unparseable) since this process started; their ids are in the log.",
                skipped,
            )
        ]
        if self.polling:
            found.append(
                Metric(
                    "checkin_telegram_poll_age_seconds",
                    "gauge",
                    "Seconds since the Telegram poller last fetched and handled updates.",
                    [({}, self.poll_age_s(now))],
                )
            )
            up = 0.0 if self.stopped else 1.0
            found.append(
                Metric(
                    "checkin_telegram_poller_up", "gauge", "1 while the poller runs.", [({}, up)]
                )
            )
        return found

"""``GET /metrics``: the service's state in the Prometheus text format (version 0.0.4).

Every number but the tick age is counted in the database at scrape time, so it is right
however many worker processes share the database, and survives restarts. Written by hand
rather than with prometheus_client: the values are a handful of COUNT queries per scrape,
with no in-process counters to register, and the format is a few lines of text. Labels
are closed sets (statuses, alert levels): no patient, clinician or message data.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func
from sqlmodel import col, select

from bot.app.health import spool_age_s
from bot.app.histogram import Histogram
from bot.domain.alerts import LEVELS
from bot.storage.database import Database
from bot.storage.repository import SET_ASIDE
from bot.storage.spool import SpoolStatus
from bot.storage.tables import (
    CHECKIN_STATUSES,
    OUTBOX_STATUSES,
    Alert,
    Answer,
    Checkin,
    InboundMessage,
)
from bot.storage.tables import OutboundMessage as Outbox

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
WAITING = ("queued", "sending")  # the outbox depth
FAILED = ("failed", "dead")


@dataclass(frozen=True)
class Metric:
    name: str
    kind: str  # "gauge", "counter" or "histogram"
    help: str
    samples: Sequence[tuple[dict[str, str], float]]
    suffixes: Sequence[str] = ()  # each sample's after the name (a histogram's "_bucket"...)


async def collect(db: Database, now: datetime, last_tick_at: datetime | None) -> list[Metric]:
    async with db.reading() as session:
        checkins = await _grouped(session, Checkin.status)
        outbox = await _grouped(session, Outbox.status)
        open_alerts = await _grouped(session, Alert.level, Alert.status == "open")
        answers = (await session.exec(select(func.count(col(Answer.id))))).one()
        due = col(Outbox.status).in_(WAITING), col(Outbox.next_attempt_at) <= now
        oldest = (await session.exec(select(func.min(Outbox.next_attempt_at)).where(*due))).one()
        inbound = func.count(col(InboundMessage.id))
        set_aside = col(InboundMessage.error).startswith(SET_ASIDE)
        aside = (await session.exec(select(inbound).where(set_aside))).one()
        unprocessed = col(InboundMessage.processed_at).is_(None)
        waiting = (await session.exec(select(inbound).where(unprocessed))).one()
    tick_age = (now - last_tick_at).total_seconds() if last_tick_at else math.inf
    return [
        Metric("checkin_checkins", "gauge", "Check-ins by status.",
               _by("status", CHECKIN_STATUSES, checkins)),
        Metric("checkin_answers_total", "counter", "Answers stored.", [({}, answers)]),
        Metric("checkin_alerts_open", "gauge", "Open (unacknowledged) alerts by level.",
               _by("level", LEVELS, open_alerts)),
        Metric("checkin_outbox_messages", "gauge", "Outbound messages by status.",
               _by("status", OUTBOX_STATUSES, outbox)),
        Metric("checkin_outbox_depth", "gauge", "Messages waiting to be sent (queued, sending).",
               [({}, sum(outbox.get(s, 0) for s in WAITING))]),
        Metric("checkin_outbox_oldest_due_seconds", "gauge",
               "How long the longest-waiting message has been due to send (0: none is late).",
               [({}, _age(now, oldest))]),
        Metric("checkin_delivery_failures", "gauge",
               "Messages the provider could not deliver (failed) or given up on (dead).",
               [({}, sum(outbox.get(s, 0) for s in FAILED))]),
        Metric("checkin_inbound_waiting", "gauge",
               "Inbound messages recorded and not processed yet (a few in flight is normal).",
               [({}, waiting)]),
        Metric("checkin_inbound_set_aside", "gauge",
               "Inbound messages given up on after failing every recovery attempt "
               "(`checkin inbound list`).",
               [({}, aside)]),
        Metric("checkin_scheduler_tick_age_seconds", "gauge",
               "Seconds since this process's scheduler last ticked (+Inf: not yet).",
               [({}, tick_age)]),
    ]  # fmt: skip


def spool_metrics(status: SpoolStatus, now: datetime) -> list[Metric]:
    """The SMS spool, read from its file (so also right while the database is away)."""
    return [
        Metric("checkin_spool_depth", "gauge",
               "Inbound SMS spooled and not yet recorded in the database.",
               [({}, status.depth)]),
        Metric("checkin_spool_oldest_age_seconds", "gauge",
               "How long the oldest spooled SMS has waited for the database (0: none).",
               [({}, spool_age_s(status, now))]),
    ]  # fmt: skip


def histogram(name: str, help: str, values: Histogram) -> Metric:
    """`values` as a Prometheus histogram: cumulative ``_bucket`` samples by ``le``, then
    ``_sum`` and ``_count``."""
    buckets = [({"le": _number(bound)}, float(n)) for bound, n in values.cumulative()]
    samples = [*buckets, ({}, values.total), ({}, float(values.count))]
    suffixes = ["_bucket"] * len(buckets) + ["_sum", "_count"]
    return Metric(name, "histogram", help, samples, suffixes)


def turn_metrics(took: Histogram) -> list[Metric]:
    """How long this process took over each inbound message (`Underway.took`)."""
    return [
        histogram(
            "checkin_turn_seconds",
            "Seconds this process took to handle an inbound message (record, process, "
            "commit), since it started.",
            took,
        )
    ]


async def _grouped(session: Any, column: Any, *where: Any) -> dict[str, int]:
    statement = select(column, func.count()).where(*where).group_by(column)
    return {str(key): int(n) for key, n in (await session.exec(statement)).all()}


def _by(
    label: str, keys: Iterable[str], counts: dict[str, int]
) -> list[tuple[dict[str, str], float]]:
    """One sample per known key (zero included), so a series never disappears."""
    return [({label: key}, counts.get(key, 0)) for key in keys]


def _age(now: datetime, since: datetime | None) -> float:
    return max(0.0, (now - since).total_seconds()) if since is not None else 0.0


def render(metrics: Iterable[Metric]) -> str:
    lines: list[str] = []
    for metric in metrics:
        lines += [f"# HELP {metric.name} {metric.help}", f"# TYPE {metric.name} {metric.kind}"]
        suffixes = metric.suffixes or [""] * len(metric.samples)
        for (labels, value), suffix in zip(metric.samples, suffixes, strict=True):
            inner = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
            braced = "{" + inner + "}" if inner else ""
            lines.append(f"{metric.name}{suffix}{braced} {_number(value)}")
    return "\n".join(lines) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return str(int(value)) if float(value).is_integer() else repr(float(value))

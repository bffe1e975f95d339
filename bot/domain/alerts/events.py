"""What happened to an alert, as audit-ready facts (past tense), and who did it.

The shell stores each event in the audit trail in the same transaction as the alert's new
state (actor: :func:`actor_of`; action: the class name). Events name the alert by its
acknowledgement code and rule; the shell adds the patient and the row id.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from bot.domain.alerts.rules import DetailValue, Level

ActorKind = Literal["clinician", "system", "patient", "operator"]


@dataclass(frozen=True)
class Actor:
    kind: ActorKind
    id: int | None = None  # the clinician's id

    def __str__(self) -> str:
        return f"{self.kind}:{self.id}" if self.id is not None else self.kind


SYSTEM = Actor("system")
PATIENT = Actor("patient")
OPERATOR = Actor("operator")  # someone at the command line


def clinician(clinician_id: int) -> Actor:
    return Actor("clinician", clinician_id)


@dataclass(frozen=True)
class AlertRaised:
    code: str
    rule: str
    level: Level
    at: datetime
    ack_deadline: datetime | None
    detail: Mapping[str, DetailValue]
    notified: tuple[int, ...]


@dataclass(frozen=True)
class AlertUpdated:
    """The rule fired again; `previous_level` differs when it upgraded the alert."""

    code: str
    rule: str
    level: Level
    previous_level: Level
    at: datetime
    occurrences: int
    reopened: bool
    notified: tuple[int, ...]


@dataclass(frozen=True)
class AlertEscalated:
    code: str
    rule: str
    level: Level
    at: datetime
    escalation: int  # 1 for the first, to the backup
    notified: tuple[int, ...]


@dataclass(frozen=True)
class AlertAcknowledged:
    code: str
    rule: str
    level: Level
    at: datetime
    by: int


@dataclass(frozen=True)
class AlertResolved:
    code: str
    rule: str
    level: Level
    at: datetime
    by: Actor


@dataclass(frozen=True)
class AlertResolutionRefused:
    code: str
    rule: str
    level: Level
    at: datetime
    by: Actor
    reason: Literal["clinician_only"] = "clinician_only"


AlertEvent = (
    AlertRaised
    | AlertUpdated
    | AlertEscalated
    | AlertAcknowledged
    | AlertResolved
    | AlertResolutionRefused
)


def actor_of(event: AlertEvent) -> Actor:
    """Who did it: the clinician who acknowledged or resolved, else the system."""
    if isinstance(event, AlertAcknowledged):
        return clinician(event.by)
    if isinstance(event, AlertResolved | AlertResolutionRefused):
        return event.by
    return SYSTEM

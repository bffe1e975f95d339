"""The state of a check-in conversation, its setting and a step's result, as frozen values,
and their JSON form (what the database keeps between messages). The steps themselves are in
:mod:`bot.domain.conversation`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from bot.domain import events as ev
from bot.domain.instruments import AnswerValue, BloodPressure, Instrument

Status = Literal["pending", "asking", "paused", "completed", "expired", "cancelled"]
OPEN: tuple[Status, ...] = ("pending", "asking", "paused")


@dataclass(frozen=True)
class Conversation:
    instruments: tuple[str, ...]
    status: Status = "pending"
    current: str | None = None
    answers: Mapping[str, AnswerValue] = field(default_factory=dict)
    skipped: tuple[str, ...] = ()
    invalid_streak: int = 0
    crisis_sent: tuple[str, ...] = ()
    # safety items whose endorsed answer was lowered after BACK: scored with the latest
    # answer, flagged ``safety_item_changed`` (the stored rows keep every answer given)
    lowered: tuple[str, ...] = ()
    last_asked: str | None = None  # set on expiry: the item being asked then

    @property
    def is_open(self) -> bool:
        return self.status in OPEN


@dataclass(frozen=True)
class Setting:
    """What the conversation needs to know about the clinic and the patient."""

    instruments: Mapping[str, Instrument]
    language: str = "en"
    show_scores: bool = False


@dataclass(frozen=True)
class Transition:
    state: Conversation
    intents: tuple[ev.Intent, ...] = ()
    events: tuple[ev.Event, ...] = ()


def to_json(conv: Conversation) -> dict[str, Any]:
    return {
        "instruments": list(conv.instruments),
        "status": conv.status,
        "current": conv.current,
        "answers": {k: _value_json(v) for k, v in conv.answers.items()},
        "skipped": list(conv.skipped),
        "invalid_streak": conv.invalid_streak,
        "crisis_sent": list(conv.crisis_sent),
        "lowered": list(conv.lowered),
        "last_asked": conv.last_asked,
    }


def from_json(data: Mapping[str, Any]) -> Conversation:
    return Conversation(
        instruments=tuple(data["instruments"]),
        status=data["status"],
        current=data.get("current"),
        answers={k: _value_from_json(v) for k, v in data.get("answers", {}).items()},
        skipped=tuple(data.get("skipped", ())),
        invalid_streak=int(data.get("invalid_streak", 0)),
        crisis_sent=tuple(data.get("crisis_sent", ())),
        lowered=tuple(data.get("lowered", ())),
        last_asked=data.get("last_asked"),
    )


def _value_json(value: AnswerValue) -> int | str:
    return str(value) if isinstance(value, BloodPressure) else value


def _value_from_json(value: int | str) -> AnswerValue:
    if isinstance(value, str):
        systolic, diastolic = value.split("/")
        return BloodPressure(int(systolic), int(diastolic))
    return value

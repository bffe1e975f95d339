"""What the conversation asks the shell to do (intents) and what happened (events).

Intents become outbound messages: each has a template of the same name under
``templates/<lang>/<channel>/`` (``Ask`` -> ``ask.j2``). Events are past-tense facts the
shell stores in the same transaction (answers, scores, flags) and alert rules react to.
Nothing here sends or stores anything.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from bot.domain.instruments import AnswerValue
from bot.domain.parsing import Invalid
from bot.domain.scoring import ScoreResult

# ---- intents: messages to send, in order -------------------------------------------------


@dataclass(frozen=True)
class Intro:
    instrument: str


@dataclass(frozen=True)
class Ask:
    item: str
    position: int  # 1-based among the items that apply so far
    of: int
    problem: Invalid | None = None  # set when re-asking after a reply that did not fit
    cannot_skip: bool = False  # set when SKIP was refused on this item
    reminder: bool = False  # set when a scheduled reminder re-asks


@dataclass(frozen=True)
class Answered:
    """The reply was taken as this option: Telegram edits the question to show it."""

    item: str
    value: AnswerValue


@dataclass(frozen=True)
class CrisisResources:
    """Sent at once, before anything else, when a safety answer raises a flag, a safety
    item is endorsed in words, or a message holds risk language (`item` "": no item)."""

    flag: str
    item: str


@dataclass(frozen=True)
class Paused:
    pass


@dataclass(frozen=True)
class Help:
    reason: Literal["asked", "repeated_invalid"] = "asked"
    in_checkin: bool = True


@dataclass(frozen=True)
class Completed:
    scores: tuple[ScoreResult, ...]
    show_scores: bool


@dataclass(frozen=True)
class OptOutConfirmed:
    pass


@dataclass(frozen=True)
class OptInConfirmed:
    already: bool = False


@dataclass(frozen=True)
class NothingOpen:
    """A message arrived with no check-in open; says so and how to get help."""


@dataclass(frozen=True)
class Enrolled:
    """A chat or number was linked by an enrolment code."""

    role: Literal["patient", "clinician"] = "patient"


@dataclass(frozen=True)
class Invitation:
    """SMS: asks the patient to reply YES before anything else is sent."""


@dataclass(frozen=True)
class EnrollRefused:
    """A wrong, used or expired code: a plain refusal that says nothing about anyone."""


@dataclass(frozen=True)
class Relinked:
    """To the chat a patient left when the operator moved them to another one: this chat
    gets no more check-ins. No name, no clinic detail, nothing about the new chat."""


@dataclass(frozen=True)
class Stranger:
    """A message from a chat or number nobody enrolled: says what the service is, nothing more."""


# Why a notice goes to a clinician instead of another: a message about the alert failed for
# good in its failure round, to the patient's own clinician ("primary") or only to others
Rerouted = Literal["primary", "other"]


@dataclass(frozen=True)
class AlertNotice:
    """To a clinician: an alert raised, upgraded or escalated. Numbers only, no wording.
    `rerouted`: sent at once instead of a clinician whose message failed for good (None:
    any other notice, a deadline escalation included)."""

    code: str
    rule: str
    level: str
    patient: str
    detail: Mapping[str, object]
    escalation: int
    at: datetime
    rerouted: Rerouted | None = None


@dataclass(frozen=True)
class AlertDigest:
    """To a clinician: several alert notices in one message, most urgent first. A digest
    too long for one message goes as several `parts`, each listing `total` alerts' worth
    from the number `first` on (bot/app/alerts/digests.py)."""

    notices: tuple[AlertNotice, ...]
    total: int = 0  # alerts in the whole digest (0: those listed)
    first: int = 1  # the number of the first listed
    part: int = 1
    parts: int = 1


@dataclass(frozen=True)
class AckConfirmed:
    code: str


@dataclass(frozen=True)
class AckUnknown:
    code: str


@dataclass(frozen=True)
class ClinicianHelp:
    """A clinician wrote something that is not a command, or asked for help."""


@dataclass(frozen=True)
class PatientLine:
    """One of a clinician's patients: the latest score and the one before (numbers only)."""

    id: int
    name: str
    instrument: str | None  # the instrument of `last`, e.g. "phq9"; None: no score yet
    last: int | None
    previous: int | None
    open_alerts: int


@dataclass(frozen=True)
class ClinicianPatients:
    """A clinician's patients; a list too long for one message goes as several `parts`,
    and `more` (on the last) counts the patients left for the web panel."""

    patients: tuple[PatientLine, ...]
    total: int = 0  # patients in the whole list (0: those listed)
    part: int = 1
    parts: int = 1
    more: int = 0


@dataclass(frozen=True)
class AlertLine:
    code: str
    level: str
    rule: str
    patient: str
    status: str
    at: datetime


@dataclass(frozen=True)
class ClinicianAlerts:
    """The alerts a clinician may act on (their patients', or ones they were told about);
    in `parts` and with `more` left for the web panel, as :class:`ClinicianPatients`."""

    alerts: tuple[AlertLine, ...]
    total: int = 0  # alerts in the whole list (0: those listed)
    part: int = 1
    parts: int = 1
    more: int = 0


@dataclass(frozen=True)
class TrendChart:
    """The caption of a trend chart sent as a photo."""

    patient: str
    checkins: int  # administrations charted


@dataclass(frozen=True)
class TrendUnavailable:
    reason: Literal["usage", "unknown", "no_scores"]


Intent = (
    Intro
    | Ask
    | Answered
    | CrisisResources
    | Paused
    | Help
    | Completed
    | OptOutConfirmed
    | OptInConfirmed
    | NothingOpen
    | Enrolled
    | Invitation
    | EnrollRefused
    | Relinked
    | Stranger
    | AlertNotice
    | AlertDigest
    | AckConfirmed
    | AckUnknown
    | ClinicianHelp
    | ClinicianPatients
    | ClinicianAlerts
    | TrendChart
    | TrendUnavailable
)

# ---- events: facts to store ----------------------------------------------------------------


@dataclass(frozen=True)
class AnswerRecorded:
    item: str
    instrument: str
    value: AnswerValue
    raw_text: str
    at: datetime
    replaced: bool = False  # the patient went BACK and changed an earlier answer
    previous: AnswerValue | None = None  # the answer this one replaces (when `replaced`)


@dataclass(frozen=True)
class ItemSkipped:
    item: str
    at: datetime


@dataclass(frozen=True)
class FlagRaised:
    flag: str
    item: str
    instrument: str
    value: AnswerValue
    safety: bool
    at: datetime


@dataclass(frozen=True)
class RiskLanguage:
    """A message spoke of suicide, self-harm or a wish to die (:mod:`bot.domain.risk`).
    When, and the item being asked if any; never the words."""

    at: datetime
    item: str | None = None


@dataclass(frozen=True)
class SafetyEndorsed:
    """A typed reply to a suicidality safety item was not one of its values but said yes
    ("yes", "sometimes", "todos los días") or spoke of risk; the item is asked again."""

    item: str
    instrument: str
    at: datetime


@dataclass(frozen=True)
class LateAnswer:
    """A reply that raises a flag on the safety item an expired check-in was asking when it
    closed. Not stored as an answer (the check-in is closed and scored); rules read it."""

    item: str
    instrument: str
    value: AnswerValue
    at: datetime


@dataclass(frozen=True)
class ScoreRecorded:
    result: ScoreResult
    partial: bool
    at: datetime


@dataclass(frozen=True)
class CheckinStarted:
    at: datetime


@dataclass(frozen=True)
class CheckinPaused:
    at: datetime


@dataclass(frozen=True)
class CheckinResumed:
    at: datetime


@dataclass(frozen=True)
class CheckinCompleted:
    at: datetime


@dataclass(frozen=True)
class CheckinExpired:
    at: datetime
    partial: bool


@dataclass(frozen=True)
class CheckinCancelled:
    at: datetime


@dataclass(frozen=True)
class OptedOut:
    at: datetime
    in_checkin: bool = False  # STOP during an open check-in (which it cancelled)
    safety_item: str | None = None  # that check-in had reached this safety item (asked it)


@dataclass(frozen=True)
class OptedIn:
    at: datetime


Event = (
    AnswerRecorded
    | ItemSkipped
    | FlagRaised
    | RiskLanguage
    | SafetyEndorsed
    | LateAnswer
    | ScoreRecorded
    | CheckinStarted
    | CheckinPaused
    | CheckinResumed
    | CheckinCompleted
    | CheckinExpired
    | CheckinCancelled
    | OptedOut
    | OptedIn
)

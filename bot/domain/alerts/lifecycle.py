"""An alert's life as a pure state machine: raised, updated, escalated, acknowledged,
resolved. Every step takes the time and returns the new state, the audit event (past
tense) and the clinicians to message now; nothing here stores or sends anything.

* One rule has at most one *open* (unacknowledged) alert per patient: a trigger for it
  updates that alert, whatever the time, so repeats never page anyone twice. An
  acknowledged alert absorbs repeats within the rule's cool-down (from its creation);
  after that a repeat raises a new alert. A higher level upgrades the alert, re-opens
  it if acknowledged, pulls its deadline in to the new level's, and notifies again.
* ``info`` alerts expect no acknowledgement: no deadline, no notification, no escalation.
* Unacknowledged past the deadline: the backup clinician is notified (the primary again
  when there is none); then primary and backup every ``repeat_every`` until someone
  acknowledges. Nothing is ever dropped silently.
* An update keeps what earlier triggers established: when crisis resources were sent,
  and every red-flag symptom named (``symptoms``). A symptom the alert did not name yet
  is news, not a repeat: the clinicians told about the alert are told again, which one.
* A notice the provider refused for good (blocked bot, bad number, ...) goes at once to
  the next clinician in line (:func:`undelivered`): once per clinician per failure round,
  a round lasting until the next deadline escalation, so notices failing in turn never
  bounce. The round is kept in the detail (``round_failed``, ``round_told``).
* Crisis alerts, and the rules in ``CLINICIAN_CLOSES``, are resolved only by a clinician;
  anyone else's attempt is refused and recorded.

The patient is not in here: the shell keys alerts by patient and passes that patient's
unresolved alerts.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Literal

from bot.domain.alerts.events import (
    Actor,
    AlertAcknowledged,
    AlertEscalated,
    AlertEvent,
    AlertRaised,
    AlertResolutionRefused,
    AlertResolved,
    AlertUpdated,
)
from bot.domain.alerts.rules import (
    CLINICIAN_CLOSES,
    CRISIS_SENT_AT,
    SYMPTOMS,
    AlertRules,
    DetailValue,
    Level,
    Trigger,
    rank,
)
from bot.domain.alerts.wording import PER_INSTRUMENT
from bot.domain.events import Rerouted

Status = Literal["open", "acknowledged", "resolved"]

# Acknowledgement codes: 6 characters with no 0/O, 1/I/L to misread (31**6 ~ 8.9e8).
CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
CODE_LENGTH = 6
_CODE_TRIES = 100
# the failure round (in the detail): clinicians whose notice failed for good in it, and
# those told in it (by the escalation or upgrade that opened it, or instead of another)
ROUND_FAILED, ROUND_TOLD = "round_failed", "round_told"


@dataclass(frozen=True)
class AlertState:
    code: str
    rule: str
    level: Level
    created_at: datetime
    ack_deadline: datetime | None  # None: info, no acknowledgement expected
    detail: Mapping[str, DetailValue] = field(default_factory=dict)
    status: Status = "open"
    escalation_count: int = 0
    last_notified_at: datetime | None = None
    recipients: tuple[int, ...] = ()  # clinicians notified so far, first time order
    occurrences: int = 1
    last_triggered_at: datetime | None = None
    acknowledged_by: int | None = None
    acknowledged_at: datetime | None = None
    resolved_by: Actor | None = None
    resolved_at: datetime | None = None


@dataclass(frozen=True)
class Change:
    """The new state, what happened (None: nothing did) and whom to message now."""

    alert: AlertState
    event: AlertEvent | None = None
    notify: tuple[int, ...] = ()

    @property
    def raised(self) -> bool:
        return isinstance(self.event, AlertRaised)


# ---- transitions ---------------------------------------------------------------------------


def raise_or_update(
    open_alerts: Sequence[AlertState],
    trigger: Trigger,
    now: datetime,
    rules: AlertRules,
    primary: int,
    code: str,
) -> Change:
    """A new alert for `trigger`, or an update of the patient's alert for the same rule.

    `open_alerts`: the patient's unresolved alerts; `primary`: the responsible clinician;
    `code`: a fresh acknowledgement code, used only when a new alert is raised."""
    current = _same_rule(open_alerts, trigger)
    cooldown = rules.cooldown_for(trigger.rule)
    if current is None or (
        current.status == "acknowledged" and now - current.created_at >= cooldown
    ):
        return _raise(trigger, now, rules, primary, code)
    return _update(current, trigger, now, rules, primary)


def _same_rule(alerts: Sequence[AlertState], trigger: Trigger) -> AlertState | None:
    same = [a for a in alerts if a.rule == trigger.rule and a.status != "resolved"]
    if trigger.rule in PER_INSTRUMENT:  # one alert per instrument, not per rule
        same = [a for a in same if a.detail.get("instrument") == trigger.detail.get("instrument")]
    same.sort(key=lambda a: (a.status == "open", a.created_at))
    return same[-1] if same else None


def _raise(trigger: Trigger, now: datetime, rules: AlertRules, primary: int, code: str) -> Change:
    window = rules.levels[trigger.level].ack_within
    deadline = None if window is None else now + window
    notify = () if deadline is None else (primary,)
    alert = AlertState(
        code,
        trigger.rule,
        trigger.level,
        created_at=now,
        ack_deadline=deadline,
        detail=dict(trigger.detail),
        last_notified_at=now if notify else None,
        recipients=notify,
        last_triggered_at=now,
    )
    event = AlertRaised(code, trigger.rule, trigger.level, now, deadline, alert.detail, notify)
    return Change(alert, event, notify)


def _update(
    alert: AlertState, trigger: Trigger, now: datetime, rules: AlertRules, primary: int
) -> Change:
    upgrade = rank(trigger.level) > rank(alert.level)
    latest = dict(trigger.detail) if rank(trigger.level) >= rank(alert.level) else alert.detail
    detail = _carried(alert.detail, trigger.detail, latest)
    updated = replace(
        alert, occurrences=alert.occurrences + 1, last_triggered_at=now, detail=detail
    )
    notify: tuple[int, ...] = ()
    if upgrade:
        updated, notify = _upgrade(updated, trigger.level, now, rules, primary)
    elif detail.get(SYMPTOMS) != alert.detail.get(SYMPTOMS) and (
        rules.levels[alert.level].ack_within is not None
    ):  # a red flag named after the alert was sent: its clinicians are told which
        notify = _unique([*alert.recipients] or [primary])
        updated = replace(
            updated, last_notified_at=now, recipients=_unique([*alert.recipients, *notify])
        )
    event = AlertUpdated(
        alert.code,
        alert.rule,
        updated.level,
        alert.level,
        now,
        updated.occurrences,
        reopened=alert.status != updated.status,
        notified=notify,
    )
    return Change(updated, event, notify)


def _carried(
    before: Mapping[str, DetailValue],
    trigger: Mapping[str, DetailValue],
    latest: Mapping[str, DetailValue],
) -> dict[str, DetailValue]:
    """The updated alert's detail: the latest, keeping when crisis resources were sent and
    every symptom named so far (``symptoms``, in the order they were reported)."""
    detail = dict(latest)
    if CRISIS_SENT_AT in before and CRISIS_SENT_AT not in detail:
        detail[CRISIS_SENT_AT] = before[CRISIS_SENT_AT]
    named = [str(v) for v in (before.get(SYMPTOMS), trigger.get(SYMPTOMS)) if v]
    symptoms = list(dict.fromkeys(",".join(named).split(","))) if named else []
    if symptoms:
        detail[SYMPTOMS] = ",".join(symptoms)
    for key in (ROUND_FAILED, ROUND_TOLD):  # the failure round goes on
        if key in before:
            detail[key] = before[key]
    return detail


def _upgrade(
    alert: AlertState, level: Level, now: datetime, rules: AlertRules, primary: int
) -> tuple[AlertState, tuple[int, ...]]:
    window = rules.levels[level].ack_within
    deadline = alert.ack_deadline if alert.status == "open" else None
    if window is not None:
        deadline = min([d for d in (deadline, now + window) if d is not None])
    notify = _unique([primary, *alert.recipients]) if deadline is not None else ()
    upgraded = replace(
        alert,
        detail=_new_round(alert.detail, notify),
        level=level,
        status="open",
        ack_deadline=deadline,
        escalation_count=0,
        acknowledged_by=None,
        acknowledged_at=None,
        last_notified_at=now if notify else alert.last_notified_at,
        recipients=_unique([*alert.recipients, *notify]),
    )
    return upgraded, notify


def escalate(
    alert: AlertState, now: datetime, primary: int, backup: int | None, rules: AlertRules
) -> Change | None:
    """Notify again if `alert` is unacknowledged past its deadline (None: not due)."""
    if alert.status != "open" or alert.ack_deadline is None or now < alert.ack_deadline:
        return None
    notify: tuple[int, ...]
    if alert.escalation_count == 0:
        notify = (backup if backup is not None else primary,)
    else:
        policy = rules.levels[alert.level]
        every = policy.repeat_every or policy.ack_within
        last = alert.last_notified_at
        if every is None or (last is not None and now < last + every):
            return None
        notify = _unique([primary, *([backup] if backup is not None else [])])
    escalated = replace(
        alert,
        detail=_new_round(alert.detail, notify),
        escalation_count=alert.escalation_count + 1,
        last_notified_at=now,
        recipients=_unique([*alert.recipients, *notify]),
    )
    event = AlertEscalated(
        alert.code, alert.rule, alert.level, now, escalated.escalation_count, notify
    )
    return Change(escalated, event, notify)


def undelivered(
    alert: AlertState, failed: int, now: datetime, candidates: Sequence[int]
) -> Change | None:
    """A notice of `alert` to clinician `failed` will never arrive: the first of
    `candidates` (in routing order) not yet in this failure round is told at once, as an
    escalation (its deadline stays). Nobody left: only the failure is kept, and the
    deadline escalation goes on as usual. None: nothing changes (the alert is no longer
    open, expects no acknowledgement, or `failed` failed already this round)."""
    if alert.status != "open" or alert.ack_deadline is None:
        return None
    failed_before, told = _ids(alert.detail, ROUND_FAILED), _ids(alert.detail, ROUND_TOLD)
    if failed in failed_before:
        return None
    tried = (*failed_before, failed)
    detail = {**alert.detail, ROUND_FAILED: _joined(tried)}
    ahead = [c for c in candidates if c not in tried and c not in told]
    if not ahead:
        return Change(replace(alert, detail=detail))
    notify = (ahead[0],)
    detail[ROUND_TOLD] = _joined((*told, *notify))
    escalated = replace(
        alert,
        detail=detail,
        escalation_count=alert.escalation_count + 1,
        last_notified_at=now,
        recipients=_unique([*alert.recipients, *notify]),
    )
    event = AlertEscalated(
        alert.code, alert.rule, alert.level, now, escalated.escalation_count, notify
    )
    return Change(escalated, event, notify)


def why_rerouted(alert: AlertState, primary: int | None) -> Rerouted:
    """Why the notice :func:`undelivered` sends goes to its reader: in this failure round
    a message about `alert` to the patient's own clinician (`primary`) failed for good, or
    only one to another (the backup told at the deadline, say). Only that notice says so:
    a deadline escalation opens a new round, in which nothing has failed yet."""
    return "primary" if primary in _ids(alert.detail, ROUND_FAILED) else "other"


def _ids(detail: Mapping[str, DetailValue], key: str) -> tuple[int, ...]:
    return tuple(int(i) for i in str(detail.get(key) or "").split(",") if i)


def _joined(ids: Iterable[int]) -> str:
    return ",".join(str(i) for i in ids)


def _new_round(detail: Mapping[str, DetailValue], told: Sequence[int]) -> dict[str, DetailValue]:
    """The detail with a new failure round, opened by telling `told`."""
    kept = {k: v for k, v in detail.items() if k not in (ROUND_FAILED, ROUND_TOLD)}
    return {**kept, ROUND_TOLD: _joined(told)} if told else kept


def acknowledge(alert: AlertState, clinician_id: int, now: datetime) -> Change:
    """A clinician has seen the alert: escalation stops. Idempotent."""
    if alert.status != "open":
        return Change(alert)
    acked = replace(alert, status="acknowledged", acknowledged_by=clinician_id, acknowledged_at=now)
    return Change(acked, AlertAcknowledged(alert.code, alert.rule, alert.level, now, clinician_id))


def resolve(alert: AlertState, by: Actor, now: datetime) -> Change:
    """Close the alert. Crisis and clinician-only rules: a clinician, or a refusal."""
    if alert.status == "resolved":
        return Change(alert)
    if by.kind != "clinician" and clinician_only(alert):
        return Change(alert, AlertResolutionRefused(alert.code, alert.rule, alert.level, now, by))
    closed = replace(alert, status="resolved", resolved_by=by, resolved_at=now)
    if by.kind == "clinician" and alert.acknowledged_at is None:
        closed = replace(closed, acknowledged_by=by.id, acknowledged_at=now)
    return Change(closed, AlertResolved(alert.code, alert.rule, alert.level, now, by))


def clinician_only(alert: AlertState) -> bool:
    return alert.level == "crisis" or alert.rule in CLINICIAN_CLOSES


# ---- acknowledgement codes -----------------------------------------------------------------


def new_code(choose: Callable[[str], str], taken: Collection[str] = ()) -> str:
    """A code not in `taken`, drawn with `choose` (``secrets.choice`` in the shell)."""
    for _ in range(_CODE_TRIES):
        code = "".join(choose(CODE_ALPHABET) for _ in range(CODE_LENGTH))
        if code not in taken:
            return code
    raise RuntimeError(f"no free acknowledgement code in {_CODE_TRIES} draws")


def normalize_code(text: str) -> str | None:
    """The code a clinician typed (any case, spaces or dashes), or None if it is not one."""
    code = "".join(ch for ch in text.upper() if ch not in " -")
    ok = len(code) == CODE_LENGTH and all(ch in CODE_ALPHABET for ch in code)
    return code if ok else None


def _unique(ids: Iterable[int]) -> tuple[int, ...]:
    return tuple(dict.fromkeys(ids))

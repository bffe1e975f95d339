"""A notice refused for good (bot.domain.alerts.lifecycle.undelivered): who is told next,
once per clinician per failure round; a deadline escalation opens a new round; what the
notice to the one told next says of why (why_rerouted)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

import pytest

from bot.domain.alerts import (
    DEFAULT_RULES,
    AlertState,
    acknowledge,
    escalate,
    undelivered,
    why_rerouted,
)
from tests.domain.test_alerts import BACKUP, PRIMARY, T0, raise_, trigger

OTHER, FOURTH = 3, 4
LINE = (BACKUP, OTHER, FOURTH)  # what storage.next_in_line gives: backup, then the others
SOON = T0 + timedelta(seconds=5)


def crisis() -> AlertState:
    return raise_([], trigger("suicidality", "crisis")).alert


def refusals(alert: AlertState, failing: Sequence[int]) -> list[tuple[int, ...]]:
    """Whom each refusal in turn has told (an empty tuple: nobody; None: nothing changed)."""
    told: list[tuple[int, ...]] = []
    for clinician in failing:
        change = undelivered(alert, clinician, SOON, LINE)
        told.append(change.notify if change is not None else ())
        alert = change.alert if change is not None else alert
    return told


@pytest.mark.parametrize(
    ("failing", "told"),
    [
        ((PRIMARY,), [(BACKUP,)]),  # the primary's notice refused: the backup
        ((PRIMARY, BACKUP), [(BACKUP,), (OTHER,)]),  # then the backup's: the next one
        ((PRIMARY, BACKUP, OTHER, FOURTH), [(BACKUP,), (OTHER,), (FOURTH,), ()]),  # all: stop
        ((PRIMARY, PRIMARY), [(BACKUP,), ()]),  # a second refusal of the same: nothing more
        ((PRIMARY, BACKUP, BACKUP, OTHER), [(BACKUP,), (OTHER,), (), (FOURTH,)]),
    ],
)
def test_each_refusal_tells_the_next_not_yet_in_the_round(
    failing: tuple[int, ...], told: list[tuple[int, ...]]
) -> None:
    """Each clinician is told at most once a round, and a refusal of one already refused
    tells nobody: notices failing in turn end, they never bounce."""
    assert refusals(crisis(), failing) == told


def test_telling_the_next_is_an_escalation_that_keeps_the_deadline() -> None:
    """The count goes up, the backup joins the recipients, the deadline stays 15 minutes."""
    alert = crisis()
    change = undelivered(alert, PRIMARY, SOON, LINE)
    assert change is not None
    assert change.alert.escalation_count == 1 and change.alert.recipients == (PRIMARY, BACKUP)
    assert change.alert.ack_deadline == alert.ack_deadline == T0 + timedelta(minutes=15)
    assert change.alert.last_notified_at == SOON


def test_an_alert_acknowledged_or_without_a_deadline_goes_nowhere() -> None:
    """Someone saw it, or nobody is expected to: a refusal changes nothing."""
    acked = acknowledge(crisis(), BACKUP, SOON).alert
    info = raise_([], trigger("response", "info")).alert
    assert undelivered(acked, PRIMARY, SOON, LINE) is None
    assert undelivered(info, PRIMARY, SOON, LINE) is None


def test_the_deadline_escalation_opens_a_new_round() -> None:
    """After everyone refused, the deadline still escalates (to primary and backup); a
    refusal then tells the one that escalation did not."""
    alert = crisis()
    for clinician in (PRIMARY, BACKUP, OTHER, FOURTH):
        change = undelivered(alert, clinician, SOON, LINE)
        assert change is not None
        alert = change.alert
    at = SOON + timedelta(minutes=15)  # the repeat interval after the last told
    later = escalate(alert, at, PRIMARY, BACKUP, DEFAULT_RULES)
    assert later is not None and later.notify == (PRIMARY, BACKUP)
    again = undelivered(later.alert, PRIMARY, at, LINE)
    assert again is not None and again.notify == (OTHER,)


def rerouted_after(alert: AlertState, failing: Sequence[int]) -> str:
    """What the notice the last refusal sent says: whose message failed this round."""
    for clinician in failing:
        change = undelivered(alert, clinician, SOON, LINE)
        assert change is not None and change.notify
        alert = change.alert
    return why_rerouted(alert, PRIMARY)


@pytest.mark.parametrize(
    ("deadline_first", "failing", "why"),
    [
        (False, (PRIMARY,), "primary"),  # the raise refused: the patient's clinician never told
        (False, (PRIMARY, BACKUP), "primary"),  # then the backup's too: still never told
        (True, (BACKUP,), "other"),  # the primary was told; the backup's escalation refused
        (True, (BACKUP, OTHER), "other"),
    ],
)
def test_the_notice_sent_instead_says_whose_message_failed_this_round(
    deadline_first: bool, failing: tuple[int, ...], why: str
) -> None:
    """The primary's refusal this round makes it "primary"; a refusal of the backup the
    deadline told, the primary's own notice not refused, "other"."""
    alert = crisis()
    if deadline_first:
        change = escalate(alert, T0 + timedelta(minutes=15), PRIMARY, BACKUP, DEFAULT_RULES)
        assert change is not None and change.notify == (BACKUP,)
        alert = change.alert
    assert rerouted_after(alert, failing) == why


def test_a_primary_refused_in_an_earlier_round_is_not_this_rounds_reason() -> None:
    """The primary refused, the backup was told instead; the deadline repeat (a new round)
    forgets the refusal, so a refusal of the backup then is "other": whether the primary's
    repeat arrives is not known yet when the next clinician is told."""
    change = undelivered(crisis(), PRIMARY, SOON, LINE)
    assert change is not None and why_rerouted(change.alert, PRIMARY) == "primary"
    later = escalate(change.alert, SOON + timedelta(minutes=15), PRIMARY, BACKUP, DEFAULT_RULES)
    assert later is not None and later.notify == (PRIMARY, BACKUP)
    assert "round_failed" not in later.alert.detail
    assert rerouted_after(later.alert, (BACKUP,)) == "other"
    assert rerouted_after(later.alert, (PRIMARY,)) == "primary"

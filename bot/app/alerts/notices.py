"""Messages to clinicians: an alert notice, or the answer to a clinician's command, queued
in the outbox (rendered in the clinician's language on their channel: ``Clinician.language``;
a Spanish-speaking clinic was told in English before). A notice goes before
routine traffic; an answer is a reply. Both alerting and the clinician desk tell this way.

An alert notice may be held for a digest (:func:`hold`): queued under a ``held:`` key,
due only a minute after its window closes, so that the digest pass
(:mod:`bot.app.alerts.digests`) takes it first; if that pass never runs, it still goes.
Whether to hold it is :func:`digest_until`: a clinician's first alert goes at once, and
those raised within the window after it wait to leave together.

Every message fits the clinician's channel (bot/rendering/budget.py): a list too long for
one goes as several (:func:`tell_parts`); a digest is sized by bot/app/alerts/digests.py;
what still does not fit (one alert whose words alone are too long) loses words at a
space, never its last line, its code.

An alert message names the alerts it tells of by id (payload ``alerts``), so that a message
the provider refuses for good can have them told to someone else (:func:`alerts_told`).
On WhatsApp every one of :data:`ALERT_INTENTS` goes as the approved alert template, in the
24-hour window or out of it (``bot.channels.whatsapp.TEMPLATE_OF``), in the clinician's
language (payload ``language``; the English template when theirs is not configured); the
other messages here answer what the clinician just wrote.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TypeVar

from bot.domain import events as ev
from bot.rendering import budget
from bot.rendering.renderer import Renderer
from bot.storage import outbox
from bot.storage.digests import (  # HELD: a waiting notice's key prefix
    HELD,
    deciding_alone,
    last_alert,
)
from bot.storage.queued import QueuedMessage
from bot.storage.repository import Repository
from bot.storage.tables import Clinician

T = TypeVar("T")


async def tell(
    renderer: Renderer,
    repo: Repository,
    clinician: Clinician,
    intent: ev.Intent,
    source: str,
    now: datetime,
    photo: bytes | None = None,
    held: dict[str, object] | None = None,
    alerts: Sequence[int] = (),
) -> None:
    """Queue a message to a clinician (a `photo`, PNG, goes with it as base64). `held`:
    see :func:`hold`; `alerts`: the ids of the alerts an alert message tells of."""
    assert clinician.id is not None and clinician.address is not None
    rendered = renderer.render(intent, clinician.channel, clinician.language)
    if rendered is None:
        return
    # a WhatsApp alert goes in a template's variable, which the channel fits itself
    if clinician.channel != "whatsapp" or not isinstance(intent, ALERTS):
        limit = _limit(clinician.channel, photo is not None)
        rendered = replace(rendered, text=budget.cut(rendered.text, limit, rendered.html))
    payload: dict[str, object] = {"intent": type(intent).__name__, "html": rendered.html}
    payload["language"] = clinician.language  # WhatsApp picks its alert template by it
    if rendered.buttons:
        payload["buttons"] = [[b.label, b.data] for b in rendered.buttons]
    if photo is not None:
        payload["photo"] = base64.b64encode(photo).decode("ascii")
    if isinstance(intent, ALERTS):
        payload["told_at"] = now.isoformat()  # when the next alert may go at once again
        payload["alerts"] = list(alerts)
    key, due = f"{source}:c{clinician.id}", now
    if held is not None:
        payload["held"] = held
        key, due = f"{HELD}{key}", datetime.fromisoformat(str(held["until"])) + HELD_FALLBACK
    await repo.enqueue([
        QueuedMessage(
            channel=clinician.channel,
            recipient_kind="clinician",
            recipient_id=clinician.id,
            address=clinician.address,
            body=rendered.text,
            payload=payload,
            idempotency_key=key,
            next_attempt_at=due,
            # an alert goes before routine traffic; a command's answer is a reply
            priority=outbox.URGENT if isinstance(intent, ALERTS) else outbox.REPLY,
        )
    ])  # fmt: skip


def _limit(channel: str, photo: bool = False) -> int:
    if photo and channel in budget.CAPTION_CHARS:
        return budget.CAPTION_CHARS[channel]
    return budget.MESSAGE_CHARS.get(channel, budget.MESSAGE_CHARS["telegram"])


async def tell_parts(
    renderer: Renderer,
    repo: Repository,
    clinician: Clinician,
    items: Sequence[T],
    make: Callable[[Sequence[T], int, int, int], ev.Intent],
    source: str,
    now: datetime,
) -> None:
    """Queue a list (the clinician's open alerts, their patients) in as few messages as fit
    their channel (bot/rendering/budget.py), cut between items, in order: a clinician who
    asks for the list gets all of it. `make(items, part, parts, more)` is the intent for
    one message. Past :data:`~bot.rendering.budget.MAX_PARTS` messages the last says how
    many were left, and that the web panel lists them all: forty texts would bury the
    ones that matter (ALERTS lists the most urgent first, so what is left is the least)."""
    limit = _limit(clinician.channel)

    def fits(intent: ev.Intent) -> bool:
        rendered = renderer.render(intent, clinician.channel, clinician.language)
        return rendered is None or len(rendered.text) <= limit

    whole = make(items, 1, 1, 0)
    if fits(whole):
        await tell(renderer, repo, clinician, whole, source, now)
        return
    widest = len(items)  # measured with the widest header and "…and N more": never longer
    kept = budget.runs(len(items), lambda a, b: fits(make(items[a:b], widest, widest, widest)),
                       cap=len(items), most=budget.MAX_PARTS)  # fmt: skip
    more = len(items) - kept[-1][1]
    for n, (a, b) in enumerate(kept):
        intent = make(items[a:b], n + 1, len(kept), more if n == len(kept) - 1 else 0)
        await tell(renderer, repo, clinician, intent, f"{source}:{n}" if n else source, now)


ALERTS = (ev.AlertNotice, ev.AlertDigest)
ALERT_INTENTS = tuple(t.__name__ for t in ALERTS)


def alerts_told(payload: Mapping[str, object]) -> list[int]:
    """The ids of the alerts a queued message tells of (none: not an alert message)."""
    if payload.get("intent") not in ALERT_INTENTS:
        return []
    told = payload.get("alerts")
    return [int(i) for i in told] if isinstance(told, list) else []


HELD_FALLBACK = timedelta(minutes=1)  # sent alone this long after its window, if not taken


async def digest_until(
    repo: Repository, clinician_id: int, now: datetime, window: timedelta
) -> datetime | None:
    """Until when a notice for this clinician raised `now` waits for a digest; None: it
    goes at once. The first alert after a quiet `window` goes at once (a lone crisis alert
    never waits); one raised within `window` of the last alert told waits until `window`
    after it, and joins a digest already waiting. So a clinician gets at most one alert
    message a window, and no alert waits longer than the window. While another
    transaction decides for the same clinician (PostgreSQL, turns at once), this one
    waits the window: it joins that one's digest, or is the digest after its alert."""
    if not await deciding_alone(repo.session, clinician_id, repo.dialect == "postgresql"):
        return now + window
    last = await last_alert(repo.session, clinician_id)
    if last is None:
        return None
    key, payload = last
    if key.startswith(HELD):  # a digest is waiting (or its notice went alone, later)
        until = datetime.fromisoformat(str(payload["held"]["until"]))
        return until if until > now else _next_after(until, now, window)
    told = payload.get("told_at")
    return _next_after(datetime.fromisoformat(told), now, window) if told else None


def _next_after(told: datetime, now: datetime, window: timedelta) -> datetime | None:
    return told + window if now < told + window else None


async def hold(
    renderer: Renderer,
    repo: Repository,
    clinician: Clinician,
    notice: ev.AlertNotice,
    alert_id: int,
    source: str,
    now: datetime,
    until: datetime,
) -> None:
    """Queue an alert notice to wait for its digest until `until`. What the digest needs
    to tell it again is kept beside it: the alert's id (its row holds the rest), the
    escalation, the time, why it was rerouted (if it was) and the key it would have had
    alone; never a name."""
    held = {"until": until.isoformat(), "alert": alert_id, "escalation": notice.escalation,
            "at": notice.at.isoformat(), "source": source}  # fmt: skip
    if notice.rerouted is not None:
        held["rerouted"] = notice.rerouted
    await tell(renderer, repo, clinician, notice, source, now, held=held, alerts=[alert_id])

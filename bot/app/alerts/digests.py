"""Alert digests: a clinician's first alert goes at once; the notices raised for them
within `window` after it leave as one message when that window closes, the most urgent
first, each with its ACK code (bot/domain/alerts/digest.py). In a storm forming (many
turns under way in this process, :attr:`Digests.crowded`) the first alert waits for the
digest too, so the clinician gets one message instead of two. A digest too long for the
clinician's channel goes as several messages, cut between alerts (:meth:`Digests._parts`).

How: alerting holds each such notice (:func:`bot.app.alerts.notices.hold`) until the
window after the last alert message told closes (:func:`bot.app.alerts.notices.digest_until`),
never longer than ``window`` after it was raised. :meth:`Digests.fold_due` finds the clinicians
whose first held notice is due and replaces all their held notices with one message: the
notice as it would have been sent alone when there is one, else a digest. So no notice
waits longer than the window, a crisis alert included, and each alert keeps its own row,
code, acknowledgement and escalation: only the message is shared.

Who folds: the deliverer, before each claim, once this process has held a notice whose
window has closed (a timer wakes the courier then); and every tick, whatever was held
where. Held rows are also due on their own a minute after their window (the fallback if
no fold ever runs). Taking held rows and writing their message is one transaction, rows
locked on PostgreSQL (``SKIP LOCKED``): a notice is told once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.app.alerts import notices
from bot.app.ports import Clock
from bot.domain import events as ev
from bot.domain.alerts.digest import digest_order
from bot.rendering import budget
from bot.rendering.renderer import Renderer
from bot.storage import digests as held
from bot.storage.database import Database
from bot.storage.repository import Repository
from bot.storage.tables import Alert, Clinician, OutboundMessage, Patient

# at most this many alerts in one message, whatever the channel allows: Telegram's digest
# carries a button per alert, and twenty buttons already fill a phone's screen
PER_DIGEST = 20


@dataclass
class Digests:
    db: Database
    renderer: Renderer
    clock: Clock
    kick: Callable[[], None] = lambda: None  # wake this process's courier, if it has one
    due_at: datetime | None = None  # the earliest window this process knows to close
    # a storm may be forming (bot/bootstrap.py: URGENT_FORMING turns under way here)
    crowded: Callable[[], bool] = lambda: False

    async def until(
        self, repo: Repository, clinician_id: int, now: datetime, window: timedelta
    ) -> datetime | None:
        """Until when a notice for the clinician raised `now` waits for a digest; None: it
        goes at once (:func:`bot.app.alerts.notices.digest_until`). When `crowded`, a first
        alert waits the window as well. Fifty item-9 answers at once on Telegram need
        fifty crisis messages, and each of five clinicians had a first alert and then a
        digest a second later: 60 urgent messages, exactly two of Telegram's windows of
        30 a second. One turn ending after its clinician's digest had left made a 61st,
        which went in the third window (2.19 s). With the first alerts folded into the
        digests, 55 messages leave room for such late ones. No alert waits longer than
        the window still; a lone crisis, with few turns under way, goes at once."""
        until = await notices.digest_until(repo, clinician_id, now, window)
        if until is None and self.crowded():
            return now + window
        return until

    def held(self, until: datetime) -> None:
        """A notice was held until `until`: fold then (wake the courier at that time)."""
        if self.due_at is None or until < self.due_at:
            self.due_at = until
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        loop.call_later(max(0.0, (until - self.clock()).total_seconds()), self.kick)

    async def fold_if_due(self) -> int:
        """:meth:`fold_due` if a window this process knows of has closed (the deliverer
        calls this before each claim: most calls cost nothing)."""
        if self.due_at is None or self.due_at > self.clock():
            return 0
        return await self.fold_due()

    async def fold_due(self) -> int:
        """Replace the held notices of every clinician whose first window has closed with
        one message each; how many messages were queued."""
        now = self.clock()
        queued = 0
        later: datetime | None = None
        async with self.db.transaction() as session:
            repo = Repository(session)
            rows = await held.held_notices(session, repo.dialect == "postgresql")
            by_clinician: dict[int, list[OutboundMessage]] = {}
            for row in rows:
                by_clinician.setdefault(row.recipient_id, []).append(row)
            for clinician_id, group in by_clinician.items():
                first = min(_until(row) for row in group)
                if first > now:
                    later = first if later is None else min(later, first)
                    continue
                queued += await self._fold(repo, clinician_id, group, now)
        self.due_at = later
        return queued

    async def _fold(
        self, repo: Repository, clinician_id: int, group: Sequence[OutboundMessage], now: datetime
    ) -> int:
        ids = [row.id for row in group if row.id is not None]
        await held.drop(repo.session, ids)
        clinician = await repo.session.get(Clinician, clinician_id)
        told: list[ev.AlertNotice] = []
        alert_of: dict[int, int] = {}  # each notice (by identity) to its alert's id
        for row in group:
            if (notice := await _notice(repo, row)) is not None:
                alert_of[id(notice)] = int(row.payload["held"]["alert"])
                told.append(notice)
        if clinician is None or clinician.address is None or not told:
            return 0  # a clinician removed meanwhile: the alerts escalate as usual
        if len(told) == 1:
            source = str(group[0].payload["held"]["source"])
            alerts = [alert_of[id(told[0])]]
            await notices.tell(self.renderer, repo, clinician, told[0], source, now, alerts=alerts)
            return 1
        parts = self._parts(clinician.channel, clinician.language, digest_order(told))
        for n, digest in enumerate(parts):
            source = f"digest{min(ids)}:{n}"
            alerts = [alert_of[id(x)] for x in digest.notices]
            await notices.tell(self.renderer, repo, clinician, digest, source, now, alerts=alerts)
        return len(parts)

    def _parts(
        self, channel: str, language: str, ordered: tuple[ev.AlertNotice, ...]
    ) -> list[ev.AlertDigest]:
        """The digest in as few messages as fit `channel`, measured in the clinician's
        `language` (Spanish runs longer than English) (bot/rendering/budget.py: SMS
        1,600 characters, the WhatsApp alert template's variable, Telegram 4,096), at most
        :data:`PER_DIGEST` alerts each, in order, so crisis alerts lead the first; each
        alert whole with its code, and none left out: those that do not fit go in the next
        part. Before, twenty alerts went in one SMS of some 4,000 characters, which Twilio
        refuses for good (21617), and on WhatsApp all but the first few were cut."""
        limit = budget.alert_chars(channel, self.renderer.clinic.name)

        def fits(digest: ev.AlertDigest) -> bool:
            rendered = self.renderer.render(digest, channel, language)
            return rendered is None or budget.alert_length(rendered.text, channel) <= limit

        total = len(ordered)
        if total <= PER_DIGEST and fits(ev.AlertDigest(ordered)):
            return [ev.AlertDigest(ordered)]
        # measured with the widest header ("message 25 of 25"): the one sent is no longer
        found = budget.runs(
            total, lambda a, b: fits(ev.AlertDigest(ordered[a:b], total, a + 1, total, total)),
            PER_DIGEST,
        )  # fmt: skip
        return [
            ev.AlertDigest(ordered[a:b], total, a + 1, n + 1, len(found))
            for n, (a, b) in enumerate(found)
        ]


async def _notice(repo: Repository, row: OutboundMessage) -> ev.AlertNotice | None:
    """The notice a held row stands for, told as its alert is now (None: alert gone)."""
    kept = row.payload["held"]
    alert = await repo.session.get(Alert, int(kept["alert"]))
    if alert is None:
        return None
    patient = await repo.session.get(Patient, alert.patient_id)
    return ev.AlertNotice(
        code=alert.code,
        rule=alert.rule,
        level=alert.level,
        patient=patient.display_name if patient is not None else "",
        detail=dict(alert.detail),
        escalation=int(kept["escalation"]),
        at=datetime.fromisoformat(str(kept["at"])),
        rerouted=kept.get("rerouted"),  # kept by notices.hold: still why it comes to them
    )


def _until(row: OutboundMessage) -> datetime:
    return datetime.fromisoformat(str(row.payload["held"]["until"]))

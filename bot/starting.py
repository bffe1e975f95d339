"""The tick's start stage, a chunk of due check-ins at a time.

:func:`start_due` claims due check-ins (see ``bot.storage.checkins.claim_due``) and starts
them in chunks, each chunk in one transaction with a fixed handful of statements however
many check-ins it holds:

* the patients of the chunk are locked together, in id order so that two workers locking
  overlapping sets cannot deadlock (SQLite serializes writers with ``BEGIN IMMEDIATE``);
* the check-ins are read again under those locks, so one started meanwhile is left alone;
* one query finds the patients who already have a check-in open.

Each check-in is then decided exactly as ``Services._start_in`` decides one: held for an
hour while the patient is not active, held five minutes behind an open check-in (the
first of two due for one patient starts, the second waits), held until the morning in
quiet hours unless asked with ``ignore_quiet_hours``, otherwise begun by the pure core.
The outcome is written with one UPDATE for the check-ins and one multi-row INSERT for all
opening messages, each keyed ``begin<check-in id>:<n>`` as before.

A start whose transition records something (a check-in with nothing left to ask is
completed and scored at once) is not written here: ``Services._start_in`` starts it after
the chunk's writes, in the same transaction, so its events and alerts are stored the one
way they always are. If a chunk fails, its check-ins are started one by one, each in its
own transaction, so one bad row holds up no other.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.domain import conversation as core
from bot.domain import events as ev
from bot.rendering import Rendered, Renderer
from bot.services import HELD_BEHIND, HELD_INACTIVE, Services, _update_checkin
from bot.storage import bulk
from bot.storage import checkins as q
from bot.storage.repository import Repository
from bot.storage.tables import Checkin, OutboundMessage, Patient

log = logging.getLogger(__name__)
CHUNK = 250  # check-ins started in one transaction
# Events a start may carry that `Services._apply` writes nothing for: a transition with
# only these is written here; any other goes through `Services._start_in`.
SILENT_EVENTS = (ev.CheckinStarted,)
_HELD = ("lease_until",)
_STARTED = ("state", "status", "sent_at", "next_reminder_at", "partial", "completed_at")


async def start_due(services: Services, limit: int) -> int:
    """Claim up to `limit` due check-ins and start them; how many were started."""
    async with services.db.transaction() as session:
        due = await q.claim_due(Repository(session), services.clock(), limit, services.start_lease)
    started = 0
    for first in range(0, len(due), CHUNK):
        chunk = due[first : first + CHUNK]
        try:
            async with services.db.transaction() as session:
                started += await start_chunk(services, Repository(session), chunk)
            continue
        except Exception as exc:
            log.warning("starting %d check-ins together failed (%s); one by one now",
                        len(chunk), type(exc).__name__)  # fmt: skip
        started += await start_one_by_one(services, chunk)
    return started


async def start_one_by_one(services: Services, ids: Iterable[int]) -> int:
    """Start each check-in in its own transaction; one that fails is logged and left."""
    started = 0
    for checkin_id in ids:
        try:
            async with services.db.transaction() as session:
                started += await services._start_in(Repository(session), checkin_id)
        except Exception as exc:
            log.error("check-in %s could not start (%s)", checkin_id, type(exc).__name__)
    return started


async def start_chunk(services: Services, repo: Repository, ids: Sequence[int]) -> int:
    """Start the check-ins `ids` (in that order) in the caller's transaction."""
    session = repo.session
    patients = await _lock_patients(session, ids)
    checkins = await _checkins(session, ids)
    busy = await _with_open_checkin(session, list(patients))
    now = services.clock()
    chunk = _Chunk(replace(services, renderer=_Remembering(services.renderer)), now)
    for checkin_id in ids:
        checkin = checkins.get(checkin_id)
        patient = patients.get(checkin.patient_id) if checkin is not None else None
        if checkin is not None and patient is not None and checkin.status == "pending":
            chunk.decide(patient, checkin, busy)
    await bulk.update_by_id(session, Checkin, chunk.held)
    await bulk.update_by_id(session, Checkin, chunk.started)
    await bulk.insert_new(session, OutboundMessage, chunk.messages, ("idempotency_key",))
    started = len(chunk.started)
    for checkin_id in chunk.later:  # after the writes above, which it must see
        started += await services._start_in(repo, checkin_id)
    return started


@dataclass
class _Chunk:
    """What one chunk's decisions write: held and started check-ins, opening messages, and
    the check-ins left to ``Services._start_in``."""

    services: Services
    now: datetime
    held: list[dict[str, Any]] = field(default_factory=list)
    started: list[dict[str, Any]] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)
    later: list[int] = field(default_factory=list)
    deferred: set[int] = field(default_factory=set)  # patients whose starts are `later`
    settings: dict[str, core.Setting] = field(default_factory=dict)

    def decide(self, patient: Patient, checkin: Checkin, busy: set[int]) -> None:
        assert checkin.id is not None and patient.id is not None
        services, now = self.services, self.now
        if patient.id in self.deferred:
            self.later.append(checkin.id)  # decided after the one before it, in order
        elif patient.status != "active":
            self.hold(checkin, now + HELD_INACTIVE)  # paused, blocked, not yet consented
        elif patient.id in busy:
            self.hold(checkin, now + HELD_BEHIND)  # one open check-in per patient
        elif not checkin.ignore_quiet_hours and services._quiet_now(patient, now):
            self.hold(checkin, services._quiet_end(patient, now))  # the allowed hours
        else:
            self.begin(patient, checkin, busy)

    def hold(self, checkin: Checkin, until: datetime) -> None:
        self.held.append({"id": checkin.id, "lease_until": until})

    def begin(self, patient: Patient, checkin: Checkin, busy: set[int]) -> None:
        assert checkin.id is not None and patient.id is not None
        transition = core.begin(core.from_json(checkin.state), self.setting(patient), self.now)
        if any(not isinstance(e, SILENT_EVENTS) for e in transition.events):
            self.later.append(checkin.id)
            self.deferred.add(patient.id)
            return
        if transition.state.is_open:
            busy.add(patient.id)  # the patient's next one waits behind this one
        _update_checkin(checkin, transition.state, self.now)
        row = {name: getattr(checkin, name) for name in _STARTED}
        self.started.append({"id": checkin.id, "lease_until": None, **row})
        source = f"begin{checkin.id}"
        for message in self.services._outbox(patient, transition.intents, source, self.now):
            self.messages.append(message.model_dump(exclude={"id"}))

    def setting(self, patient: Patient) -> core.Setting:
        if patient.language not in self.settings:
            self.settings[patient.language] = self.services._setting(patient)
        return self.settings[patient.language]


class _Remembering(Renderer):
    """The renderer, remembering each (intent, channel, language) it rendered for one chunk.

    A render depends on nothing else (the templates, catalog and clinic are fixed), and a
    wave's openings are the same few intents over and over."""

    def __init__(self, renderer: Renderer) -> None:  # wraps one; builds no environment
        self._inner = renderer
        self._seen: dict[tuple[object, str, str], Rendered | None] = {}

    def render(self, intent: ev.Intent, channel: str, language: str) -> Rendered | None:
        key = (intent, channel, language)
        try:
            return self._seen[key]
        except KeyError:
            pass
        except TypeError:  # an intent holding a dict or list: not remembered
            return self._inner.render(intent, channel, language)
        rendered = self._seen[key] = self._inner.render(intent, channel, language)
        return rendered


async def _lock_patients(session: AsyncSession, ids: Sequence[int]) -> dict[int, Patient]:
    """The patients of check-ins `ids`, row-locked in id order, as detached rows."""
    patient, checkin = bulk.table_of(Patient), bulk.table_of(Checkin)
    statement = (
        sa.select(*(patient.c[name] for name in _PATIENT))
        .where(patient.c.id.in_(sa.select(checkin.c.patient_id).where(checkin.c.id.in_(ids))))
        .order_by(patient.c.id)
        .with_for_update(of=patient)
    )
    rows = await (await session.connection()).execute(statement)
    return {row.id: Patient(display_name="", **row._mapping) for row in rows}


async def _checkins(session: AsyncSession, ids: Sequence[int]) -> dict[int, Checkin]:
    """The check-ins `ids` as they are now, as detached rows (written back by Core)."""
    checkin = bulk.table_of(Checkin)
    statement = sa.select(*(checkin.c[name] for name in _CHECKIN)).where(checkin.c.id.in_(ids))
    rows = await (await session.connection()).execute(statement)
    return {row.id: Checkin(**row._mapping) for row in rows}


# what starting reads: enough to decide, to render the opening and to update the row
_PATIENT = ("id", "status", "timezone", "language", "channel", "address")
_CHECKIN = (
    "id", "patient_id", "status", "state", "ignore_quiet_hours", "reminder_after_s",
    "reminders_sent", "max_reminders", "sent_at", "next_reminder_at", "partial",
    "completed_at", "due_at", "expires_at", "idempotency_key",
)  # fmt: skip


async def _with_open_checkin(session: AsyncSession, patient_ids: list[int]) -> set[int]:
    """Which of the patients have a check-in open now."""
    if not patient_ids:
        return set()
    statement = (
        select(Checkin.patient_id)
        .where(col(Checkin.patient_id).in_(patient_ids))
        .where(col(Checkin.status).in_(q.OPEN_STATUSES))
        .distinct()
    )
    return set((await session.exec(statement)).all())

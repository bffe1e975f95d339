"""The tick's start stage, a chunk of due check-ins at a time; and the start of check-ins
planning has just created already due (:meth:`Starting.start_planned`, a wave enrolled a
moment ago), in the planning chunk's own transaction and by the same chunk logic.

:func:`start_due` claims due check-ins (see ``bot.storage.checkins.claim_due``) and starts
them in chunks, each chunk in one transaction with a fixed handful of statements however
many check-ins it holds:

* the patients of the chunk are locked together, in id order so that two workers locking
  overlapping sets cannot deadlock (SQLite serializes writers with ``BEGIN IMMEDIATE``);
* the check-ins are read again under those locks, so one started meanwhile is left alone;
* one query finds the patients who already have a check-in open.

Each check-in is then decided exactly as :meth:`Starting.start_one` decides one: held for an
hour while the patient is not active, held five minutes behind an open check-in (the
first of two due for one patient starts, the second waits), held until the morning in
quiet hours unless asked with ``ignore_quiet_hours``, otherwise begun by the pure core.
The outcome is written with one UPDATE for the check-ins and one multi-row INSERT for all
opening messages, each keyed ``begin<check-in id>:<n>`` as before.

A start whose transition records something (a check-in with nothing left to ask is
completed and scored at once), or whose check-in holds an instrument the patient cannot be
asked in their language (:mod:`bot.app.conversations.unasked`), is not written here:
:meth:`Starting.start_one` starts it after the chunk's writes, in the same transaction,
so its events and alerts are stored the one way they always are. If a chunk fails, its
check-ins are started one by one, each in its own transaction, so one bad row holds up
no other.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any, cast

import sqlalchemy as sa
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.app.context import Context
from bot.app.conversations.messages import outbox_rows
from bot.app.conversations.quiet_hours import quiet_end, quiet_now
from bot.app.conversations.transitions import apply_transition, update_checkin
from bot.app.conversations.unasked import leave_out
from bot.app.planning.planner import CATCH_UP_S
from bot.domain import conversation as core
from bot.domain import events as ev
from bot.storage import bulk
from bot.storage import checkins as q
from bot.storage.repository import Repository
from bot.storage.tables import Checkin, OutboundMessage, Patient

log = logging.getLogger(__name__)
START_LEASE = timedelta(minutes=2)  # a worker starting a check-in holds it this long
HELD_BEHIND = timedelta(minutes=5)  # looked at again this often while another one is open
HELD_INACTIVE = timedelta(hours=1)  # ... while the patient is paused or not yet consented
CHUNK = 250  # check-ins started in one transaction
# Events a start may carry that `apply_transition` writes nothing for: a transition with
# only these is written here; any other goes through `Starting.start_one`.
SILENT_EVENTS = (ev.CheckinStarted,)
_HELD = ("lease_until",)
_STARTED = ("state", "status", "sent_at", "next_reminder_at", "partial", "completed_at")


@dataclass(frozen=True)
class Starting:
    """The tick's start stage: send the first question of every due check-in whose patient
    has none open."""

    ctx: Context
    start_lease: timedelta = START_LEASE
    catch_up_s: float = CATCH_UP_S  # the stage claims again while batches are full

    async def start_due(self, limit: int = 500) -> int:
        """Claim up to `limit` due check-ins and start them; again while claims come back
        full, for up to `catch_up_s` seconds, so a wave of thousands starts at the
        database's pace rather than a batch a tick. How many were started.

        Due check-ins are claimed with a short lease (PostgreSQL: ``FOR UPDATE SKIP
        LOCKED``), so several workers start different ones; each chunk of them then runs
        under its patients' row locks and re-checks the rows, so none is ever sent twice."""
        deadline = time.monotonic() + self.catch_up_s
        started = 0
        while True:
            async with self.ctx.db.transaction() as session:
                repo = Repository(session)
                due = await q.claim_due(repo, self.ctx.clock(), limit, self.start_lease)
            started += await self._start_claimed(due)
            if len(due) < limit or time.monotonic() >= deadline:
                return started

    async def _start_claimed(self, due: Sequence[int]) -> int:
        started = 0
        for first in range(0, len(due), CHUNK):
            chunk = due[first : first + CHUNK]
            try:
                async with self.ctx.db.transaction() as session:
                    started += await self.start_chunk(Repository(session), chunk)
                continue
            except Exception as exc:
                log.warning("starting %d check-ins together failed (%s); one by one now",
                            len(chunk), type(exc).__name__)  # fmt: skip
            started += await self.start_one_by_one(chunk)
        return started

    async def start_one_by_one(self, ids: Iterable[int]) -> int:
        """Start each check-in in its own transaction; one that fails is logged and left."""
        started = 0
        for checkin_id in ids:
            try:
                async with self.ctx.db.transaction() as session:
                    started += await self.start_one(Repository(session), checkin_id)
            except Exception as exc:
                log.error("check-in %s could not start (%s)", checkin_id, type(exc).__name__)
        return started

    async def start_chunk(self, repo: Repository, ids: Sequence[int]) -> int:
        """Start the check-ins `ids` (in that order) in the caller's transaction."""
        session = repo.session
        patients = await _lock_patients(session, ids)
        checkins = await _checkins(session, ids)
        busy = await _with_open_checkin(session, list(patients))
        chunk = _Chunk(self.ctx, self.ctx.clock(), busy)
        for checkin_id in ids:
            checkin = checkins.get(checkin_id)
            patient = patients.get(checkin.patient_id) if checkin is not None else None
            if checkin is not None and patient is not None and checkin.status == "pending":
                chunk.decide(patient, checkin)
        await bulk.update_by_id(session, Checkin, chunk.held)
        await bulk.update_by_id(session, Checkin, chunk.started)
        await bulk.insert_new(session, OutboundMessage, chunk.messages, ("idempotency_key",))
        started = len(chunk.started)
        for checkin_id in chunk.later:  # after the writes above, which it must see
            started += await self.start_one(repo, checkin_id)
        return started

    async def start_planned(self, session: AsyncSession, ids: Sequence[int]) -> int:
        """Start the check-ins `ids` that planning has just created, due now, in its
        transaction (the planner's ``start_planned``); how many were started."""
        return await self.start_chunk(Repository(session), ids)

    async def start_one(self, repo: Repository, checkin_id: int) -> int:
        """Start one check-in in the caller's transaction, under its patient's lock: held
        while the patient is not active, behind an open check-in, or in quiet hours;
        otherwise begun. 1 if it was begun."""
        session, ctx = repo.session, self.ctx
        checkin = await repo.get_checkin(checkin_id)
        if checkin is None:
            return 0
        patient = await repo.lock_patient(checkin.patient_id)
        await session.refresh(checkin)
        if patient is None or checkin.status != "pending":
            return 0
        now = ctx.clock()
        if patient.status != "active":
            checkin.lease_until = now + HELD_INACTIVE  # paused, blocked, not yet consented
            await repo.add(checkin)
            return 0
        if await q.open_checkin(session, checkin.patient_id) is not None:
            checkin.lease_until = now + HELD_BEHIND  # one open check-in per patient
            await repo.add(checkin)
            return 0
        if not checkin.ignore_quiet_hours and quiet_now(ctx.clinic, patient, now):
            checkin.lease_until = quiet_end(ctx.clinic, patient, now)  # the allowed hours
            await repo.add(checkin)
            return 0
        conv = core.from_json(checkin.state)
        missing = ctx.catalog.no_wording(conv.instruments, patient.language)
        if missing:  # left out and the clinician told, never silently
            kept = await leave_out(ctx, repo, patient, checkin, missing, now)
            if kept is None:
                return 0  # nothing left to ask: cancelled
            conv = kept
        checkin.lease_until = None
        transition = core.begin(conv, ctx.setting(patient), now)
        await apply_transition(
            ctx, repo, patient, checkin, transition, f"begin{checkin_id}", now, None
        )
        return 1


@dataclass(frozen=True)
class _Recipient:
    """What starting reads of a patient."""

    id: int
    status: str
    timezone: str
    language: str
    channel: str
    address: str

    def as_patient(self) -> Patient:
        """A detached Patient with these values, for the shared helpers (building one
        costs far more than this class: a chunk builds one per time zone or language)."""
        return Patient(display_name="", **asdict(self))


@dataclass
class _Chunk:
    """One chunk's decisions: the check-ins held and started, their opening messages, and
    the check-ins left to :meth:`Starting.start_one`.

    What does not depend on the patient is worked out once per chunk: quiet hours per time
    zone, the conversation setting per language, and the opening messages per intents,
    channel and language (rendered once, then addressed to each patient)."""

    ctx: Context
    now: datetime
    busy: set[int]  # patients with a check-in open
    held: list[dict[str, Any]] = field(default_factory=list)
    started: list[dict[str, Any]] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)
    later: list[int] = field(default_factory=list)
    deferred: set[int] = field(default_factory=set)  # patients whose starts are `later`
    quiet_until: dict[str, datetime | None] = field(default_factory=dict)
    settings: dict[str, core.Setting] = field(default_factory=dict)
    openings: dict[tuple[Any, ...], list[dict[str, Any]]] = field(default_factory=dict)
    begun: dict[tuple[str, str], core.Transition | None] = field(default_factory=dict)

    def decide(self, patient: _Recipient, checkin: SimpleNamespace) -> None:
        if patient.id in self.deferred:
            self.later.append(checkin.id)  # decided after the one before it, in order
        elif patient.status != "active":
            self.hold(checkin, self.now + HELD_INACTIVE)  # paused, blocked, not consented
        elif patient.id in self.busy:
            self.hold(checkin, self.now + HELD_BEHIND)  # one open check-in per patient
        elif not checkin.ignore_quiet_hours and (until := self.quiet(patient)) is not None:
            self.hold(checkin, until)  # the allowed hours
        else:
            self.begin(patient, checkin)

    def hold(self, checkin: SimpleNamespace, until: datetime) -> None:
        self.held.append({"id": checkin.id, "lease_until": until})

    def begin(self, patient: _Recipient, checkin: SimpleNamespace) -> None:
        transition = self.transition(patient, checkin.state)
        if transition is None:
            self.defer(patient, checkin)  # some left out, the clinician told: start_one
            return
        if any(not isinstance(e, SILENT_EVENTS) for e in transition.events):
            self.defer(patient, checkin)
            return
        if transition.state.is_open:
            self.busy.add(patient.id)  # the patient's next one waits behind this one
        # the row as Starting.start_one would leave it (only attributes are read and set)
        update_checkin(cast(Checkin, checkin), transition.state, self.now)
        row = {name: getattr(checkin, name) for name in _STARTED}
        self.started.append({"id": checkin.id, "lease_until": None, **row})
        self.messages += self.opening(patient, transition.intents, f"begin{checkin.id}")

    def transition(self, patient: _Recipient, state: Any) -> core.Transition | None:
        """The pure core's start of a check-in in `state` for a patient speaking their
        language (None: an instrument has no wording in it). A wave's check-ins start from
        a handful of states: each (state, language) is decided once a chunk."""
        key = (json.dumps(state, sort_keys=True, default=str), patient.language)
        if key not in self.begun:
            conv = core.from_json(state)
            if self.ctx.catalog.no_wording(conv.instruments, patient.language):
                self.begun[key] = None
            else:
                self.begun[key] = core.begin(conv, self.setting(patient), self.now)
        return self.begun[key]

    def defer(self, patient: _Recipient, checkin: SimpleNamespace) -> None:
        self.later.append(checkin.id)
        self.deferred.add(patient.id)

    def opening(
        self, patient: _Recipient, intents: tuple[ev.Intent, ...], source: str
    ) -> list[dict[str, Any]]:
        """The outbox rows of `intents` for the patient, keyed ``<source>:<n>``."""
        key: tuple[Any, ...] = (intents, patient.channel, patient.language)
        try:
            made = self.openings.get(key)
        except TypeError:  # an intent holding a dict or list: made for this one alone
            made, key = None, ()
        if made is None:
            rows = outbox_rows(self.ctx.renderer, patient.as_patient(), intents, source, self.now)
            made = [row.values() for row in rows]
            if key:
                self.openings[key] = made
        return [
            row | {"recipient_id": patient.id, "address": patient.address,
                   "idempotency_key": f"{source}:{row['idempotency_key'].rsplit(':', 1)[1]}"}
            for row in made
        ]  # fmt: skip

    def quiet(self, patient: _Recipient) -> datetime | None:
        """When the patient's quiet hours end, or None outside them."""
        if patient.timezone not in self.quiet_until:
            stand_in, now = patient.as_patient(), self.now
            clinic = self.ctx.clinic
            until = quiet_end(clinic, stand_in, now) if quiet_now(clinic, stand_in, now) else None
            self.quiet_until[patient.timezone] = until
        return self.quiet_until[patient.timezone]

    def setting(self, patient: _Recipient) -> core.Setting:
        if patient.language not in self.settings:
            self.settings[patient.language] = self.ctx.setting_for(patient.language)
        return self.settings[patient.language]


async def _lock_patients(session: AsyncSession, ids: Sequence[int]) -> dict[int, _Recipient]:
    """The patients of check-ins `ids`, row-locked in id order, as detached rows."""
    patient, checkin = bulk.table_of(Patient), bulk.table_of(Checkin)
    statement = (
        sa.select(*(patient.c[name] for name in _PATIENT))
        .where(
            patient.c.id.in_(
                sa.select(checkin.c.patient_id).where(
                    bulk.among(_dialect(session), checkin.c.id, ids)
                )
            )
        )
        .order_by(patient.c.id)
        .with_for_update(of=patient)
    )
    rows = await (await session.connection()).execute(statement)
    return {row.id: _Recipient(**row._mapping) for row in rows}


async def _checkins(session: AsyncSession, ids: Sequence[int]) -> dict[int, SimpleNamespace]:
    """The check-ins `ids` as they are now, as plain objects (written back by Core)."""
    checkin = bulk.table_of(Checkin)
    statement = sa.select(*(checkin.c[name] for name in _CHECKIN)).where(
        bulk.among(_dialect(session), checkin.c.id, ids)
    )
    rows = await (await session.connection()).execute(statement)
    return {row.id: SimpleNamespace(**row._mapping) for row in rows}


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
        .where(bulk.among(_dialect(session), col(Checkin.patient_id), patient_ids))
        .where(col(Checkin.status).in_(q.OPEN_STATUSES))
        .distinct()
    )
    return set((await session.exec(statement)).all())


def _dialect(session: AsyncSession) -> str:
    return session.get_bind().dialect.name

"""Schedules as an operator sets and checks them: give a patient a protocol (check-ins not
sent yet are planned again at once), and preview what a protocol plans for a patient.

The planning itself is :mod:`bot.app.planning.planner`; a protocol name it does not know raises
its ``ConfigError``.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from bot.app.operator.recall_notes import note, recall_windows
from bot.app.operator.refusals import NoProtocol
from bot.app.operator.treatments import Replanned
from bot.app.planning.planner import Planner
from bot.app.planning.protocols import preview
from bot.app.planning.rows import stored_occurrences
from bot.app.planning.session_changes import sessions_of
from bot.app.ports import Clock
from bot.config import Clinic
from bot.domain.errors import NotFound
from bot.domain.schedule.recall import Asking, plan_overlaps
from bot.instruments import Catalog
from bot.storage.database import Database
from bot.storage.repository import Repository


async def assign(planner: Planner, patient_id: int, protocol: str | None) -> Replanned:
    """Put the patient on `protocol` (None: on none); audited by the planner. The result
    names the protocol's instruments the patient cannot be asked in their language."""
    change = Replanned.of(await planner.assign(patient_id, protocol))
    if protocol is None:
        return change
    async with planner.db.transaction() as session:
        patient = await Repository(session).get_patient(patient_id)
    language = patient.language if patient is not None else "en"
    return replace(change, no_wording=planner.no_wording(protocol, language))


async def preview_plan(
    db: Database,
    clock: Clock,
    planner: Planner,
    patient_id: int,
    *,
    clinic: Clinic,
    bundle_window: timedelta,
    protocol: str | None = None,
    start_day: date | None = None,
    days: int = 14,
) -> list[dict[str, Any]]:
    """The check-ins the patient's protocol (or `protocol`) plans from local midnight of
    `start_day` (default: their today) for `days` days: local and UTC times, rule,
    instruments, the bundle each is asked in, and its status against what was stored
    (planned, satisfied, or already sent) with a note saying why. Nothing is stored but
    the audit event."""
    async with db.transaction() as session:
        repo = Repository(session)
        patient = await repo.get_patient(patient_id)
        if patient is None:
            raise NotFound("patient", patient_id)
        name = protocol or patient.protocol
        if name is None:
            raise NoProtocol(patient_id)
        chosen = planner.protocol(name)
        sessions = await sessions_of(session, patient_id)
        stored = await stored_occurrences(session, [patient_id], sessions_only=False)
        await repo.audit(clock(), "operator", "schedule_previewed", f"patient:{patient_id}")
    day = start_day or clock().astimezone(ZoneInfo(patient.timezone)).date()
    rows = preview(
        chosen,
        patient,
        sessions,
        start_day=day,
        days=days,
        clinic=clinic,
        bundle_window=bundle_window,
        catalog=planner.catalog,
        stored=stored.get(patient_id, []) if name == patient.protocol else [],
    )
    return with_recall_notes(rows, planner.catalog)


def with_recall_notes(rows: list[dict[str, Any]], catalog: Catalog) -> list[dict[str, Any]]:
    """Each row gains ``recall_notes``: for the instruments it asks less than half their
    recall window after the asking before (a bundle is one asking, at its first due time),
    what overlaps and the shorter-recall alternative (:mod:`bot.app.operator.recall_notes`)."""
    bundles: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        bundles.setdefault(row["bundle"], []).append(row)
    askings = {
        key: Asking(
            min(datetime.fromisoformat(r["due_at_utc"]) for r in members),
            tuple(r["rule"] for r in members),
            tuple(dict.fromkeys(k for r in members for k in r["instruments"])),
        )
        for key, members in bundles.items()
    }
    late = {
        (o.at, o.instrument): o for o in plan_overlaps(askings.values(), recall_windows(catalog))
    }
    told: set[tuple[str, str]] = set()  # (bundle, instrument): said on its first row only
    for row in rows:
        at = askings[row["bundle"]].at
        keys = [k for k in row["instruments"] if (at, k) in late and (row["bundle"], k) not in told]
        told.update((row["bundle"], k) for k in keys)
        row["recall_notes"] = [note(late[(at, k)], catalog) for k in keys]
    return rows

"""Protocols outside a planning pass: checked against the instrument catalog when the
service starts, and previewed for an operator (what a protocol would plan for a patient
over some days; pure). The planner (:mod:`bot.app.planning.planner`) shares :func:`quiet_hours`.

The preview matches the plan against what was stored before
(:func:`bot.domain.schedule.moves.reconcile`, as the planner does), so it shows what will
be sent: each entry has a ``status`` (``planned``: it will be sent; ``satisfied``: a moved
session's earlier score still counts; else the stored check-in's status, not sent again)
and a ``note`` saying why a time moved or why nothing will be sent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from bot.app.planning.rows import domain_sessions, enrolled_at
from bot.config import Clinic
from bot.domain.errors import ConfigError
from bot.domain.schedule import Outlook, Protocol, QuietHours, Stored, bundle, plan, reconcile
from bot.instruments import Catalog
from bot.storage.tables import Patient, TreatmentSession


def quiet_hours(clinic: Clinic) -> QuietHours:
    return QuietHours(clinic.quiet_hours_start_local, clinic.quiet_hours_end_local)


def check_protocols(protocols: Mapping[str, Protocol], catalog: Catalog, source: str) -> None:
    """Every instrument a protocol names is loaded (or waits for its licensed wording)."""
    for protocol in protocols.values():
        for rule in protocol.rules:
            for key in rule.instruments:
                if key in catalog.instruments:
                    continue
                where = f"protocols.{protocol.name}.rules.{rule.name}.instruments"
                if key in catalog.unavailable:
                    why = f"{key!r} cannot be used yet: {catalog.unavailable[key]}"
                else:
                    known = ", ".join(sorted(catalog.instruments))
                    why = f"unknown instrument {key!r} (loaded: {known})"
                raise ConfigError(source, where, why)


def without_wording(protocol: Protocol, catalog: Catalog, language: str) -> tuple[str, ...]:
    """The protocol's instruments that cannot be asked in `language` (see
    :meth:`bot.instruments.Catalog.no_wording`), in the order the rules name them."""
    return catalog.no_wording((k for rule in protocol.rules for k in rule.instruments), language)


def preview(
    protocol: Protocol,
    patient: Patient,
    sessions: Sequence[TreatmentSession],
    *,
    start_day: date,
    days: int,
    clinic: Clinic,
    bundle_window: timedelta,
    catalog: Catalog | None = None,
    stored: Sequence[Stored] = (),
) -> list[dict[str, Any]]:
    """The check-ins `protocol` plans for the patient from local midnight of `start_day`,
    for `days` days: one entry per occurrence, with the bundle it is asked in, its status
    against the `stored` occurrences, and (given the catalog) the instruments that will not
    be asked for want of the patient's language."""
    zone = ZoneInfo(patient.timezone)
    start = datetime.combine(start_day, time(0), zone).astimezone(UTC)
    end = datetime.combine(start_day + timedelta(days=days), time(0), zone).astimezone(UTC)
    found = plan(
        protocol,
        timezone=patient.timezone,
        enrolled_at=enrolled_at(patient),
        sessions=domain_sessions(sessions),
        start=start,
        end=end,
        quiet=quiet_hours(clinic),
    )
    outlooks = reconcile(found, stored)
    sent = [o.occurrence for o in outlooks if _status(o) == "planned"]
    together: dict[str, str] = {}
    for group in bundle(sent, bundle_window):
        for member in group.members:
            together[member.key] = group.key
    entries = [_entry(o, zone, together) for o in outlooks]
    if catalog is not None:
        for entry in entries:
            entry["no_wording"] = list(catalog.no_wording(entry["instruments"], patient.language))
    return entries


def _status(outlook: Outlook) -> str:
    if outlook.status == "new":
        return "planned"
    if outlook.status == "satisfied":
        return "satisfied"
    assert outlook.stored is not None
    return "planned" if outlook.stored.status == "pending" else outlook.stored.status


def _entry(outlook: Outlook, zone: ZoneInfo, together: Mapping[str, str]) -> dict[str, Any]:
    occurrence = outlook.occurrence
    due = occurrence.due_at
    return {
        "due_at_local": due.astimezone(zone).isoformat(),
        "due_at_utc": _utc(due),
        "rule": occurrence.rule,
        "instruments": list(occurrence.instruments),
        "key": occurrence.key,
        "session": occurrence.session,
        "expires_at_utc": _utc(occurrence.expires_at),
        "bundle": together.get(occurrence.key, occurrence.key),
        "status": _status(outlook),
        "note": _note(outlook, zone),
    }


def _utc(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _note(outlook: Outlook, zone: ZoneInfo) -> str | None:
    """Why the entry is as it is, for an operator: a moved time, a moved session."""
    occurrence, stored = outlook.occurrence, outlook.stored

    def local(at: datetime | None) -> str:
        return "?" if at is None else f"{at.astimezone(zone):%Y-%m-%d %H:%M}"

    if outlook.status == "satisfied" and stored is not None:
        return (
            f"session moved; the score completed {local(stored.completed_at)} still counts "
            "before it: not asked again"
        )
    if outlook.status == "stored" and stored is not None and stored.status != "pending":
        status = stored.status.replace("_", " ")
        return f"already {status} (due {local(stored.due_at)}); not sent again"
    notes = []
    if outlook.moved and stored is not None:
        notes.append(
            f"session moved; asked again (the check-in due {local(stored.due_at)} was "
            f"{stored.status.replace('_', ' ')}, too early for the new time)"
        )
    placed = {
        "later": "in quiet hours: waits for their end",
        "earlier": "in quiet hours: sent before they begin, ahead of the session",
        "ignore": 'sent in quiet hours (the rule says quiet_hours = "ignore")',
        "no_allowed_time": (
            f"no allowed time between {local(occurrence.intended_at)} and the session at "
            f"{local(occurrence.closes_at)}: sent before quiet hours begin"
        ),
    }.get(occurrence.placement)
    if placed is not None:
        notes.append(placed)
    return "; ".join(notes) or None

"""Protocols outside a planning pass: checked against the instrument catalog when the
service starts, and previewed for an operator (what a protocol would plan for a patient
over some days; pure). The planner (:mod:`bot.app.planning.planner`) shares :func:`quiet_hours`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from bot.app.planning.rows import domain_sessions, enrolled_at
from bot.config import Clinic
from bot.domain.errors import ConfigError
from bot.domain.schedule import Occurrence, Protocol, QuietHours, bundle, plan
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
) -> list[dict[str, Any]]:
    """The check-ins `protocol` plans for the patient from local midnight of `start_day`,
    for `days` days: one entry per occurrence, with the bundle it is asked in, and (given
    the catalog) the instruments that will not be asked for want of the patient's language."""
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
    together: dict[str, str] = {}
    for group in bundle(found, bundle_window):
        for member in group.members:
            together[member.key] = group.key
    entries = [_entry(o, zone, together[o.key]) for o in found]
    if catalog is not None:
        for entry in entries:
            entry["no_wording"] = list(catalog.no_wording(entry["instruments"], patient.language))
    return entries


def _entry(occurrence: Occurrence, zone: ZoneInfo, bundle_key: str) -> dict[str, Any]:
    due = occurrence.due_at
    return {
        "due_at_local": due.astimezone(zone).isoformat(),
        "due_at_utc": due.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "rule": occurrence.rule,
        "instruments": list(occurrence.instruments),
        "key": occurrence.key,
        "session": occurrence.session,
        "expires_at_utc": (due + occurrence.expires_after).isoformat().replace("+00:00", "Z"),
        "bundle": bundle_key,
    }

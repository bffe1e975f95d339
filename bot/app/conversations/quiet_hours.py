"""Quiet hours in a patient's own time zone: whether now is inside them, and when they end.

The clinic sets the hours (``[clinic] quiet_hours_start_local`` / ``_end_local``); a
patient whose time zone is unknown or malformed is treated as being in UTC rather than
never quiet. Starting, reminding and planning all ask here, so they agree.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bot.config import Clinic
from bot.domain.schedule import QuietHours, defer, in_quiet_hours
from bot.storage.tables import Patient


def quiet_now(clinic: Clinic, patient: Patient, now: datetime) -> bool:
    """True when `now` falls in the patient's quiet hours."""
    return in_quiet_hours(now, zone_of(patient), _hours(clinic))


def quiet_end(clinic: Clinic, patient: Patient, now: datetime) -> datetime:
    """The first allowed instant at or after `now` for the patient (UTC)."""
    return defer(now, zone_of(patient), _hours(clinic))


def zone_of(patient: Patient) -> ZoneInfo:
    try:
        return ZoneInfo(patient.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def _hours(clinic: Clinic) -> QuietHours:
    return QuietHours(clinic.quiet_hours_start_local, clinic.quiet_hours_end_local)

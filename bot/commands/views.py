"""How records print, where several commands print the same kind: the JSON of a patient, a
check-in and an enrolment link, and the lines that show the link."""

from __future__ import annotations

from typing import Any

import typer

from bot.app.operator.invitations import Invitation
from bot.app.operator.views import CheckinView, PatientView


def patient_json(patient: PatientView) -> dict[str, Any]:
    return {
        "id": patient.id,
        "name": patient.name,
        "channel": patient.channel,
        "status": patient.status,
        "timezone": patient.timezone,
        "language": patient.language,
        "clinician_id": patient.clinician_id,
        "protocol": patient.protocol,
    }


def checkin_json(checkin: CheckinView) -> dict[str, Any]:
    return {
        "id": checkin.id,
        "instruments": list(checkin.instruments),
        "status": checkin.status,
        "due_at": checkin.due_at.isoformat(),
        "expires_at": checkin.expires_at.isoformat(),
        "completed_at": checkin.completed_at.isoformat() if checkin.completed_at else None,
        "partial": checkin.partial,
    }


def invitation_json(invitation: Invitation | None) -> dict[str, Any]:
    if invitation is None:
        return {}
    return {
        "enroll_code": invitation.code,
        "enroll_link": invitation.link,
        "enroll_expires_at": invitation.expires_at.isoformat(),
    }


def echo_invitation(data: dict[str, Any]) -> None:
    if "enroll_link" in data:
        typer.echo(f"enrolment link (single use, until {data['enroll_expires_at'][:16]} UTC):")
        typer.echo(f"  {data['enroll_link']}")

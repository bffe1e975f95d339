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


def warn_no_wording(patient_id: int, language: str | None, keys: tuple[str, ...]) -> None:
    """On stderr (JSON stays clean): the protocol's instruments this patient will not be
    asked, for want of wording in their language, and what happens instead."""
    if not keys:
        return
    speaks = f"{language!r}" if language else "the patient's language"
    typer.echo(
        f"warning: patient {patient_id}: {', '.join(keys)} has no wording in {speaks} and "
        "will not be asked; the check-ins go ahead without it and the clinician gets a "
        "wording_missing alert when it first comes due (add the language with a wording "
        "file: docs/INSTRUMENTS.md)",
        err=True,
    )

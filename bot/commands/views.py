"""How records print, where several commands print the same kind: the JSON of a patient, a
check-in, a score and an enrolment link, and the lines that show the link and a score."""

from __future__ import annotations

from typing import Any

import typer

from bot.app.operator.invitations import Invitation
from bot.app.operator.views import CheckinView, PatientView, ScoreView


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


def score_json(score: ScoreView) -> dict[str, Any]:
    """A score with its place in the series; a clinician-rated measure says who rated it
    and, for blood pressure, when in the session and the two pressures."""
    data: dict[str, Any] = {
        "id": score.id,
        "checkin_id": score.checkin_id,
        "instrument": score.instrument,
        "total": score.total,
        "band": score.band,
        "valid": score.valid,
        "prorated": score.prorated,
        "flags": list(score.flags),
        "completed_at": score.completed_at.isoformat(),
        "session_number": score.session_number,
        "hours_since_session": score.hours_since_session,
    }
    if score.checkin_id is None:
        data |= {"rated_by": score.rated_by, "time_point": score.time_point}
        data |= dict(score.components)
    return data


def score_line(s: dict[str, Any]) -> str:
    """One score as `patient show` prints it (from :func:`score_json`)."""
    if "systolic" in s:
        value = f"{s['systolic']}/{s['diastolic']} mmHg at {s['time_point']}"
    else:
        value = f"{s['total'] if s['total'] is not None else 'no total'} {s['band'] or ''}"
    hours = s["hours_since_session"]
    place = f"session {s['session_number']}" + (f" +{hours:g} h" if hours is not None else "")
    return f"{s['instrument']}: {value.strip()} ({place})"


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

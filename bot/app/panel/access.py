"""Who may see which patient on the panel: an admin sees every patient; a clinician sees
their own and those of the clinicians they are backup for. Anything else is "not found"
(``NotFound``, answered 404 by the web), never "forbidden": the panel does not tell
whether a patient it does not show exists.
"""

from __future__ import annotations

from typing import Any

from sqlmodel import col, or_, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.app.panel.signin import Viewer
from bot.domain.errors import NotFound
from bot.storage.tables import Alert, Clinician, Patient


def visible(viewer: Viewer) -> Any:
    """A condition on ``Patient`` that holds for the patients `viewer` may see."""
    if viewer.admin:
        return col(Patient.id).is_not(None)
    covered = select(Clinician.id).where(Clinician.backup_clinician_id == viewer.clinician_id)
    return or_(
        col(Patient.clinician_id) == viewer.clinician_id,
        col(Patient.clinician_id).in_(covered),
    )


async def patient_for(session: AsyncSession, viewer: Viewer, patient_id: int) -> Patient:
    statement = select(Patient).where(Patient.id == patient_id, visible(viewer))
    patient = (await session.exec(statement)).first()
    if patient is None:
        raise NotFound("patient", patient_id)
    return patient


async def alert_for(session: AsyncSession, viewer: Viewer, alert_id: int) -> Alert:
    """The alert, if it is about a patient `viewer` may see (locked for the change)."""
    statement = (
        select(Alert)
        .join(Patient, col(Patient.id) == col(Alert.patient_id))
        .where(Alert.id == alert_id, visible(viewer))
        .with_for_update(of=Alert)
    )
    alert = (await session.exec(statement)).first()
    if alert is None:
        raise NotFound("alert", alert_id)
    return alert

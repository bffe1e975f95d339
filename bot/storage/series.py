"""A patient's treatment series as the scores need it: the start of every held (not
cancelled) session, and the place in the series of a score made at a given time
(``bot.domain.sessions``), read in the caller's transaction."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.domain.sessions import SessionPosition, session_position
from bot.storage.tables import TreatmentSession


async def held_session_starts(session: AsyncSession, patient_id: int) -> list[datetime]:
    """When each of the patient's sessions not cancelled starts (or started), in order."""
    statement = select(TreatmentSession.at).where(
        TreatmentSession.patient_id == patient_id, col(TreatmentSession.cancelled_at).is_(None)
    )
    return list((await session.exec(statement.order_by(col(TreatmentSession.at)))).all())


async def place_of(session: AsyncSession, patient_id: int, at: datetime) -> SessionPosition:
    """The place in the series of a score the patient makes at `at`."""
    return session_position(await held_session_starts(session, patient_id), at)

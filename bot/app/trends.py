"""A patient's trend, loaded for a chart: valid PHQ-9 and GAD-7 totals and treatment sessions.

Drawing is :mod:`bot.rendering.chart` (matplotlib), imported only when a chart is drawn.
"""

from __future__ import annotations

import asyncio

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.instruments import Catalog
from bot.rendering.trend import INSTRUMENTS, Point, SessionMark, Trend, series_for
from bot.storage.database import Database
from bot.storage.tables import Score, TreatmentSession


async def load_trend(session: AsyncSession, catalog: Catalog, patient_id: int, title: str) -> Trend:
    """The patient's valid scores on PHQ-9 and GAD-7 and their treatment sessions."""
    series = []
    for key in INSTRUMENTS:
        if key not in catalog.instruments:
            continue
        statement = select(Score).where(
            Score.patient_id == patient_id,
            Score.instrument == key,
            col(Score.total).is_not(None),
            Score.valid == True,  # noqa: E712
        )
        scores = (await session.exec(statement.order_by(col(Score.completed_at)))).all()
        points = tuple(Point(s.completed_at, s.total) for s in scores if s.total is not None)
        if points:
            series.append(series_for(catalog, key, points))
    sessions_query = select(TreatmentSession).where(
        TreatmentSession.patient_id == patient_id, col(TreatmentSession.cancelled_at).is_(None)
    )
    rows = (await session.exec(sessions_query.order_by(col(TreatmentSession.at)))).all()
    sessions = tuple(SessionMark(r.at, r.number) for r in rows)
    return Trend(title, tuple(series), sessions)


async def trend_png(db: Database, catalog: Catalog, patient_id: int, title: str) -> bytes | None:
    """Load and render (in a worker thread); None when the patient has no scores to draw."""
    async with db.transaction() as session:
        trend = await load_trend(session, catalog, patient_id, title)
    if not trend.series:
        return None
    from bot.rendering.chart import render_trend  # matplotlib: loaded only when charting

    return await asyncio.to_thread(render_trend, trend)

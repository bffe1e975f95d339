"""The trend chart: a six-session series read from the database renders a real PNG, off the
event loop, and different scores draw a different picture."""

from __future__ import annotations

import io
from dataclasses import replace
from datetime import timedelta

from PIL import Image

from bot.app.trends import load_trend, trend_png
from bot.rendering.chart import render_trend
from bot.rendering.trend import Point
from bot.storage.database import Database
from bot.storage.repository import Repository
from bot.storage.tables import Checkin, Patient, Score, TreatmentSession
from tests.test_services import CATALOG, T0

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PHQ9 = (19, 17, 14, 12, 9, 8, 6)


async def six_sessions(db: Database, gad7: bool = True) -> int:
    """A patient with a baseline PHQ-9 (and GAD-7) and one score the day after each of six
    sessions."""
    async with db.transaction() as session:
        repo = Repository(session)
        patient = Patient(display_name="P-6", timezone="UTC", channel="console", address="p6")
        await repo.add(patient)
        assert patient.id is not None
        for n, total in enumerate(PHQ9):
            day = T0 + timedelta(days=4 * n)
            checkin = Checkin(patient_id=patient.id, idempotency_key=f"c{n}", due_at=day,
                              expires_at=day + timedelta(hours=1), status="completed")  # fmt: skip
            await repo.add(checkin)
            assert checkin.id is not None
            await repo.add(Score(checkin_id=checkin.id, patient_id=patient.id, instrument="phq9",
                                 total=total, valid=True, completed_at=day))  # fmt: skip
            if gad7:
                await repo.add(Score(checkin_id=checkin.id, patient_id=patient.id,
                                     instrument="gad7", total=max(0, total - 5), valid=True,
                                     completed_at=day))  # fmt: skip
            if n:
                await repo.add(TreatmentSession(patient_id=patient.id, number=n, kind="ketamine",
                                                at=day - timedelta(days=1)))  # fmt: skip
    return patient.id


def decoded(png: bytes) -> Image.Image:
    assert png.startswith(PNG_SIGNATURE)
    image = Image.open(io.BytesIO(png))
    image.load()
    return image


async def test_a_six_session_series_renders_a_png(db: Database) -> None:
    """PHQ-9 and GAD-7 panels from stored scores and sessions: a valid PNG, two panels tall."""
    patient_id = await six_sessions(db)
    png = await trend_png(db, CATALOG, patient_id, "P-6")
    assert png is not None
    image = decoded(png)
    assert image.format == "PNG" and image.size[0] == 800 and image.size[1] > 600


async def test_the_chart_depends_on_the_data(db: Database) -> None:
    """One panel without GAD-7 is shorter; other scores give other pixels."""
    patient_id = await six_sessions(db, gad7=False)
    one_panel = await trend_png(db, CATALOG, patient_id, "P-6")
    assert one_panel is not None
    assert decoded(one_panel).size[1] < 600
    async with db.transaction() as session:
        trend = await load_trend(session, CATALOG, patient_id, "P-6")
    (series,) = trend.series
    assert [p.total for p in series.points] == list(PHQ9) and series.baseline == 19
    assert [s.number for s in trend.sessions] == [1, 2, 3, 4, 5, 6]
    worse = replace(series, points=tuple(Point(p.at, 27 - p.total) for p in series.points))
    other = render_trend(replace(trend, series=(worse,)))
    assert decoded(other).size == decoded(one_panel).size
    assert decoded(other).tobytes() != decoded(one_panel).tobytes()


async def test_no_scores_no_chart(db: Database) -> None:
    """A patient without any score gets None (the caller says so in words)."""
    async with db.transaction() as session:
        patient = Patient(display_name="P-0", timezone="UTC", channel="console", address="p0")
        await Repository(session).add(patient)
    assert patient.id is not None
    assert await trend_png(db, CATALOG, patient.id, "P-0") is None

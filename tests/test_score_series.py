"""Every score carries its place in the treatment series, fixed when it is made: a check-in's
score (stored by the conversation) and clinician-rated measures (stored by the operator use
cases), shown in the CSV, the FHIR Bundle and the series report. Real services on real
SQLite and PostgreSQL databases."""

from __future__ import annotations

import csv
import json
from datetime import timedelta
from pathlib import Path

from fhir.resources.R4B.bundle import Bundle

from bot.app.operator import measures
from bot.domain.instruments import BloodPressure
from bot.outputs.exports import export_csv, export_fhir
from bot.outputs.report import load_report, render_html
from bot.storage.database import Database
from bot.storage.repository import Repository
from bot.storage.tables import Clinician, Score, TreatmentSession
from tests.test_services import CATALOG, T0, add_patient, rows, said, started, wire

PHQ9 = ["1", "2", "0", "1", "0", "1", "0", "0", "0", "not difficult"]
EXT = "urn:mbc-checkin:extension"


async def seed(db: Database) -> int:
    """A session at T0; a PHQ-9 answered 26 h later; then a MADRS (rated by clinician 1),
    a pre-dose blood pressure and a +40 min one around a second session at T0 + 3 d."""
    w = wire(db)
    patient = await add_patient(db, "pat-s")
    second = T0 + timedelta(days=3)
    async with db.transaction() as session:
        repo = Repository(session)
        await repo.add(Clinician(display_name="Dr R", channel="console", address="dr-r"))
        for n, at in ((1, T0), (2, second)):
            await repo.add(TreatmentSession(patient_id=patient, number=n, kind="ketamine", at=at))
    w.clock.now = T0 + timedelta(hours=26)
    await started(w, patient, ["phq9"])
    for n, text in enumerate(PHQ9):
        assert await w.services.inbox.handle_inbound(said("pat-s", text, n, w.clock.now))
    w.clock.now = second + timedelta(hours=3)
    await measures.record_madrs(
        db, w.clock, patient, 18, (second - timedelta(hours=1)).isoformat(), 1
    )
    bp = measures.record_blood_pressure
    await bp(
        db,
        w.clock,
        patient,
        BloodPressure(128, 82),
        "pre",
        (second - timedelta(minutes=10)).isoformat(),
    )
    await bp(
        db,
        w.clock,
        patient,
        BloodPressure(170, 95),
        "40min",
        (second + timedelta(minutes=40)).isoformat(),
    )
    return patient


async def test_scores_are_placed_when_made(db: Database) -> None:
    """The PHQ-9 is session 1 at 26 h; the MADRS and the pre-dose reading (before the
    second session) session 1; the +40 min reading session 2 at 0.67 h with its rise."""
    await seed(db)
    stored = await rows(db, Score)
    assert [
        (s.instrument, s.session_number, s.hours_since_session, s.time_point) for s in stored
    ] == [
        ("phq9", 1, 26.0, None),
        ("madrs", 1, 71.0, None),
        ("blood_pressure", 1, 71.83, "pre"),
        ("blood_pressure", 2, 0.67, "40min"),
    ]
    assert stored[0].checkin_id is not None and stored[1].checkin_id is None
    assert (stored[1].rated_by, stored[3].flags) == (1, ["bp_rise"])


async def test_csv_carries_the_place_and_the_measures(db: Database, tmp_path: Path) -> None:
    """scores.csv: session_number and hours_since_session on every row; the MADRS with its
    maximum and rater, blood pressure with the LOINC panel, its point and both pressures."""
    await seed(db)
    await export_csv(db, CATALOG, tmp_path)
    with (tmp_path / "scores.csv").open(newline="", encoding="utf-8") as fh:
        scores = list(csv.DictReader(fh))
    picked = [(r["instrument"], r["session_number"], r["hours_since_session"]) for r in scores]
    assert picked == [("phq9", "1", "26.0"), ("madrs", "1", "71.0"),
                      ("blood_pressure", "1", "71.83"), ("blood_pressure", "2", "0.67")]  # fmt: skip
    madrs, _, after = scores[1], scores[2], scores[3]
    assert (madrs["checkin_id"], madrs["total"], madrs["max_total"], madrs["rated_by"]) == (
        "",
        "18",
        "60",
        "1",
    )
    assert (after["loinc_panel"], after["time_point"], after["systolic"], after["diastolic"]) == (
        "85354-9", "40min", "170", "95")  # fmt: skip


async def test_fhir_carries_the_place_and_the_measures(db: Database, tmp_path: Path) -> None:
    """The Bundle validates; each score Observation has the session extensions; blood
    pressure is a vital-signs panel (85354-9) with systolic 8480-6 and diastolic 8462-4
    in mm[Hg] and its time point; the MADRS names its rater."""
    await seed(db)
    out = tmp_path / "bundle.json"
    await export_fhir(db, CATALOG, out)
    bundle = json.loads(out.read_text(encoding="utf-8"))
    Bundle.model_validate(bundle)
    observations = {e["resource"]["id"]: e["resource"] for e in bundle["entry"]
                    if e["resource"]["resourceType"] == "Observation"}  # fmt: skip
    ext = {k: {x["url"].rsplit(":", 1)[1]: next(v for n, v in x.items() if n != "url")
               for x in o.get("extension", [])} for k, o in observations.items()}  # fmt: skip
    scores = await rows(db, Score)
    phq9, madrs, _, after = (f"score-{s.id}" for s in scores)
    assert ext[phq9] == {"session-number": 1, "hours-since-session": 26.0}
    assert ext[after] == {"session-number": 2, "hours-since-session": 0.67, "time-point": "40min"}
    bp = observations[after]
    assert bp["code"]["coding"][0]["code"] == "85354-9"
    assert bp["category"][0]["coding"][0]["code"] == "vital-signs"
    assert [(c["code"]["coding"][0]["code"], c["valueQuantity"]["value"], c["valueQuantity"]["code"])
            for c in bp["component"]] == [("8480-6", 170, "mm[Hg]"), ("8462-4", 95, "mm[Hg]")]  # fmt: skip
    rated = observations[madrs]
    assert rated["valueInteger"] == 18 and rated["performer"][0]["identifier"]["value"] == "1"


async def test_the_report_lists_scores_by_session(db: Database) -> None:
    """The series report's score table shows each score's session and hours, the clinician's
    MADRS among the outcomes, and the blood pressure as a reading."""
    patient = await seed(db)
    async with db.transaction() as session:
        report = await load_report(session, CATALOG, patient, T0 + timedelta(days=5))
    assert [(s.instrument, s.value, s.session_number, s.hours_since_session) for s in report.scores] == [
        ("phq9", "5", 1, 26.0), ("madrs", "18", 1, 71.0),
        ("blood_pressure", "128/82", 1, 71.83), ("blood_pressure", "170/95", 2, 0.67),
    ]  # fmt: skip
    assert "MADRS (clinician)" in [o.name for o in report.outcomes]
    html = render_html(report)
    assert "Scores by session" in html and "170/95" in html and "after 2" in html

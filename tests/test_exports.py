"""Exports of the record: CSV files that round-trip every stored answer and score, and a
FHIR Bundle that validates against the fhir.resources R4B models (R4 proper needs
pydantic 1; see docs/EXPORTS.md). Seeded through the real Services on real databases."""

from __future__ import annotations

import csv
import json
import os
from datetime import timedelta
from pathlib import Path

from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.patient import Patient as FhirPatient
from fhir.resources.R4B.questionnaireresponse import QuestionnaireResponse
from sqlalchemy import update

from bot.outputs.exports import ANSWER_COLUMNS, SCORE_COLUMNS, Selection, export_csv, export_fhir
from bot.storage.database import Database
from bot.storage.tables import Answer, Checkin, Patient, Score
from tests.test_services import CATALOG, T0, Wired, add_patient, rows, said, started, wire

PHQ9 = ["1", "2", "0", "1", "0", "1", "0", "0", "0", "not difficult"]
NAME, PHONE = "Zelda Quux", "+15555550123"
MODELS = {
    "QuestionnaireResponse": QuestionnaireResponse,
    "Observation": Observation,
    "Patient": FhirPatient,
}


async def seed(db: Database) -> tuple[Wired, int, int]:
    """Patient A: a completed PHQ-9, then a PHQ-9 expired after three answers (a day later).
    Patient B: a completed GAD-7 two days later. A is then an SMS patient with a phone."""
    w = wire(db)
    a = await add_patient(db, "pat-a")
    b = await add_patient(db, "pat-b")
    await started(w, a, ["phq9"])
    for n, text in enumerate(PHQ9):
        assert await w.services.inbox.handle_inbound(said("pat-a", text, n))
    w.clock.now = T0 + timedelta(days=1)
    await started(w, a, ["phq9"])
    for n in range(3):
        await w.services.inbox.handle_inbound(said("pat-a", "2", 100 + n, w.clock.now))
    w.clock.now = T0 + timedelta(days=2, hours=1)
    assert await w.services.reminders.expire_due() == 1
    await started(w, b, ["gad7"])
    for n, text in enumerate(["0", "1", "2", "3", "0", "1", "2", "somewhat"]):
        assert await w.services.inbox.handle_inbound(said("pat-b", text, 200 + n, w.clock.now))
    async with db.transaction() as session:
        identity = {"display_name": NAME, "channel": "sms", "address": PHONE}
        await session.exec(update(Patient).where(Patient.id == a).values(**identity))  # type: ignore[call-overload]
    return w, a, b


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


async def test_csv_has_every_answer_and_score_exactly_once(db: Database, tmp_path: Path) -> None:
    """Paged three rows at a time, every stored answer and score is one row, values intact."""
    await seed(db)
    counts = await export_csv(db, CATALOG, tmp_path / "out", page_size=3)
    answers, scores = (read_csv(tmp_path / "out" / f) for f in ("answers.csv", "scores.csv"))
    stored = {a.id: a for a in await rows(db, Answer)}
    assert counts.answers == len(answers) == len(stored) == 10 + 3 + 8
    assert sorted(int(r["answer_id"]) for r in answers) == sorted(stored)
    for row in answers:
        answer = stored[int(row["answer_id"])]
        assert (row["item_key"], row["value"]) == (answer.item_key, str(answer.value_int))
        assert row["answered_at"].endswith("Z") and row["answered_at"][:10] >= "2026-05-04"
    q1 = next(r for r in answers if r["item_key"] == "phq9.q1")
    assert (q1["item_loinc"], q1["value"], q1["value_loinc"]) == ("44250-9", "1", "LA6569-3")
    stored_scores = {s.id: s for s in await rows(db, Score)}
    assert counts.scores == len(scores) == len(stored_scores) == 3
    assert sorted(int(r["score_id"]) for r in scores) == sorted(stored_scores)
    phq9 = next(r for r in scores if r["instrument"] == "phq9" and r["valid"] == "true")
    assert (phq9["total"], phq9["max_total"], phq9["band"]) == ("5", "27", "mild")
    assert (phq9["loinc_panel"], phq9["loinc_total"]) == ("44249-1", "44261-6")
    partial = next(r for r in scores if r["valid"] == "false")
    assert partial["total"] == "" and "safety_item_missing" in partial["flags"].split(";")
    assert list(answers[0]) == list(ANSWER_COLUMNS) and list(scores[0]) == list(SCORE_COLUMNS)


async def test_csv_filters_and_carries_no_identifiers(db: Database, tmp_path: Path) -> None:
    """--patient keeps one patient's rows, --since drops older ones; no name or phone anywhere."""
    _, _, b = await seed(db)
    await export_csv(db, CATALOG, tmp_path / "b", Selection(patient_id=b))
    assert {r["patient_id"] for r in read_csv(tmp_path / "b" / "answers.csv")} == {str(b)}
    assert {r["patient_id"] for r in read_csv(tmp_path / "b" / "scores.csv")} == {str(b)}
    await export_csv(db, CATALOG, tmp_path / "late", Selection(since=T0 + timedelta(hours=12)))
    late = read_csv(tmp_path / "late" / "answers.csv")
    assert len(late) == 3 + 8 and all(r["answered_at"] >= "2026-05-04T21" for r in late)
    assert len(read_csv(tmp_path / "late" / "scores.csv")) == 2
    for name in ("answers.csv", "scores.csv"):
        path = tmp_path / "b" / name
        text = path.read_text()
        assert NAME not in text and PHONE not in text and "pat-a" not in text
        assert os.stat(path).st_mode & 0o777 == 0o600
    assert not list((tmp_path / "b").glob(".*partial"))


def bundle_of(path: Path) -> dict:  # type: ignore[type-arg]
    data: dict = json.loads(path.read_text())  # type: ignore[type-arg]
    Bundle.model_validate(data)
    for entry in data["entry"]:
        resource = entry["resource"]
        MODELS[resource["resourceType"]].model_validate(resource)
    return data


def of_type(bundle: dict, kind: str) -> list[dict]:  # type: ignore[type-arg]
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == kind]


async def test_fhir_bundle_validates_and_carries_the_loinc_codes(
    db: Database, tmp_path: Path
) -> None:
    """Every resource validates; responses per check-in and instrument with LOINC items;
    totals with the LOINC total code inside a panel; no Patient and no identifiers."""
    await seed(db)
    path = tmp_path / "bundle.json"
    counts = await export_fhir(db, CATALOG, path, now=T0, page_size=1)
    bundle = bundle_of(path)
    assert (bundle["type"], counts.patients, of_type(bundle, "Patient")) == ("collection", 0, [])
    responses = of_type(bundle, "QuestionnaireResponse")
    assert counts.questionnaire_responses == len(responses) == 3
    assert sorted(r["status"] for r in responses) == ["completed", "completed", "stopped"]
    done = next(
        r for r in responses if r["status"] == "completed" and "44249-1" in r["questionnaire"]
    )
    assert done["questionnaire"] == "http://loinc.org/q/44249-1"
    assert [i["linkId"] for i in done["item"]][:2] == ["44250-9", "44255-8"]
    first = done["item"][0]["answer"][0]["valueCoding"]
    assert (first["system"], first["code"], first["extension"][0]["valueDecimal"]) == (
        "http://loinc.org", "LA6569-3", 1,
    )  # fmt: skip
    observations = of_type(bundle, "Observation")
    totals = [o for o in observations if "hasMember" not in o]
    values = sorted((o["code"]["coding"][0]["code"], o.get("valueInteger", -1)) for o in totals)
    assert values == [("44261-6", -1), ("44261-6", 5), ("70274-6", 9)]
    absent = next(o for o in totals if "valueInteger" not in o)
    assert absent["dataAbsentReason"]["coding"][0]["code"] == "unknown"
    panels = [o for o in observations if "hasMember" in o]
    assert {p["code"]["coding"][0]["code"] for p in panels} == {"44249-1", "69737-5"}
    urls = {e["fullUrl"] for e in bundle["entry"]}
    assert all(m["reference"] in urls for p in panels for m in p["hasMember"])
    assert all(o["derivedFrom"][0]["reference"] in urls for o in observations)
    subjects = [e["resource"]["subject"] for e in bundle["entry"]]
    assert all(set(s) == {"type", "identifier"} for s in subjects)
    text = path.read_text()
    assert NAME not in text and PHONE not in text and "pat-a" not in text


async def test_fhir_identifiers_only_when_asked_and_filters(db: Database, tmp_path: Path) -> None:
    """--include-identifiers adds each patient once with name and phone; filters apply."""
    _, a, b = await seed(db)
    path = tmp_path / "named.json"
    counts = await export_fhir(db, CATALOG, path, include_identifiers=True, page_size=1)
    bundle = bundle_of(path)
    patients = of_type(bundle, "Patient")
    assert counts.patients == len(patients) == 2
    named = next(p for p in patients if p["identifier"][0]["value"] == str(a))
    assert named["name"][0]["text"] == NAME and named["telecom"][0]["value"] == PHONE
    urls = {e["fullUrl"] for e in bundle["entry"]}
    assert all(r["subject"]["reference"] in urls for r in of_type(bundle, "QuestionnaireResponse"))
    await export_fhir(db, CATALOG, tmp_path / "b.json", Selection(patient_id=b))
    only_b = bundle_of(tmp_path / "b.json")
    subjects = {e["resource"]["subject"]["identifier"]["value"] for e in only_b["entry"]}
    assert subjects == {str(b)} and len(of_type(only_b, "QuestionnaireResponse")) == 1
    await export_fhir(
        db, CATALOG, tmp_path / "late.json", Selection(since=T0 + timedelta(hours=12))
    )
    late = bundle_of(tmp_path / "late.json")
    assert sorted(r["status"] for r in of_type(late, "QuestionnaireResponse")) == [
        "completed", "stopped",
    ]  # fmt: skip
    after = tmp_path / "after.json"
    await export_fhir(db, CATALOG, after, Selection(since=T0 + timedelta(days=2)))
    later = bundle_of(after)  # the partial PHQ-9 was answered earlier but scored at expiry
    assert sorted(r["status"] for r in of_type(later, "QuestionnaireResponse")) == [
        "completed", "stopped",
    ]  # fmt: skip
    urls = {e["fullUrl"] for e in later["entry"]}
    derived = [o["derivedFrom"][0]["reference"] for o in of_type(later, "Observation")]
    assert len(derived) == 4 and set(derived) <= urls


async def test_an_empty_database_exports_empty_files(db: Database, tmp_path: Path) -> None:
    """No records: headers only, and a Bundle with no entries that still validates."""
    counts = await export_csv(db, CATALOG, tmp_path)
    assert counts.answers == counts.scores == 0
    assert (tmp_path / "answers.csv").read_text().strip() == ",".join(ANSWER_COLUMNS)
    await export_fhir(db, CATALOG, tmp_path / "empty.json")
    assert bundle_of(tmp_path / "empty.json")["entry"] == []
    assert await rows(db, Checkin) == []

"""An answer once given is never overwritten. The whole path, on real databases: a patient
answers PHQ-9 item 9 = 2, types BACK, answers 0 and completes. The score uses the 0 and
says a safety answer was lowered; both answers are stored, exported (CSV and FHIR) and
shown by ``patient show``; the suicidality alert stays as raised, and its clinician is told
of the change in numbers only."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

from typer.testing import CliRunner

from bot.app.operator import patients
from bot.cli import app
from bot.outputs.exports import export_csv, export_fhir
from bot.storage.database import Database
from bot.storage.tables import Alert, Answer, Score
from tests.test_alerting import clinic, to, wired
from tests.test_exports import bundle_of, of_type, read_csv
from tests.test_services import CATALOG, T0, rows, said


async def endorse_then_lower(db: Database) -> int:
    """Items 1-8 = 0, item 9 = 2 (crisis resources, crisis alert), BACK, item 9 = 0: the
    check-in completes (item 10 no longer applies). The patient's id."""
    services, _, clock = wired(db)
    _, _, patient_id = await clinic(db)
    await services.asking.ask(patient_id, ["phq9"])
    await services.starting.start_due()
    for n, text in enumerate(["0"] * 8 + ["2", "back", "0"]):
        clock.now = T0 + timedelta(minutes=n + 1)
        await services.inbox.handle_inbound(said("pat", text, n, clock.now))
    return patient_id


async def test_item_9_lowered_after_back_is_kept_flagged_exported_and_told(
    db: Database, tmp_path: Path
) -> None:
    """2, BACK, 0: score 0 with safety_item_changed; two answer rows, the 2 superseded by
    the 0; CSV and FHIR carry both; the crisis alert stays open and its update says
    'item 9 changed from 2 to 0 after endorsement'."""
    patient_id = await endorse_then_lower(db)
    (score,) = await rows(db, Score)
    assert (score.total, score.valid, score.flags) == (0, True, ["safety_item_changed"])

    endorsed, lowered = await rows(db, Answer, Answer.item_key == "phq9.q9")
    assert (endorsed.value_int, endorsed.superseded_by) == (2, lowered.id)
    assert endorsed.superseded_at == lowered.answered_at == T0 + timedelta(minutes=11)
    assert (lowered.value_int, lowered.superseded_at) == (0, None)

    (alert,) = await rows(db, Alert)
    assert (alert.rule, alert.level, alert.status) == ("suicidality", "crisis", "open")
    assert (alert.detail["changed_from"], alert.detail["changed_to"]) == (2, 0)
    raised, update = await to(db, "dr-r")
    assert "(PHQ9, item 9 = 2)" in raised
    assert update.startswith("CRISIS: P-017, suicidal thoughts endorsed (PHQ9, item 9 changed")
    assert "item 9 changed from 2 to 0 after endorsement" in update
    assert f"Reply ACK {alert.code}" in update and "better off dead" not in update

    await export_csv(db, CATALOG, tmp_path)
    q9 = [r for r in read_csv(tmp_path / "answers.csv") if r["item_key"] == "phq9.q9"]
    assert [(r["value"], r["superseded_by"], r["superseded_at"]) for r in q9] == [
        ("2", str(lowered.id), "2026-05-04T09:11:00Z"),
        ("0", "", ""),
    ]

    await export_fhir(db, CATALOG, tmp_path / "bundle.json", now=T0)
    bundle = bundle_of(tmp_path / "bundle.json")  # every resource validates
    (response,) = of_type(bundle, "QuestionnaireResponse")
    answered_9 = [i for i in response["item"] if i["linkId"] == "44260-8"]
    assert [i["answer"][0]["valueCoding"]["code"] for i in answered_9] == ["LA6568-5"]  # 0
    (withdrawn,) = [o for o in of_type(bundle, "Observation") if o["status"] != "final"]
    assert withdrawn["status"] == "entered-in-error"
    assert withdrawn["code"]["coding"][0]["code"] == "44260-8"
    coding = withdrawn["valueCodeableConcept"]["coding"][0]
    assert (coding["code"], coding["extension"][0]["valueDecimal"]) == ("LA6570-1", 2)
    assert withdrawn["effectiveDateTime"] == "2026-05-04T09:09:00Z"
    assert f"by answer {lowered.id}" in withdrawn["note"][0]["text"]

    record = await patients.show(db, lambda: T0, patient_id)
    shown = [(a.value, a.superseded_by) for a in record.answers if a.item_key == "phq9.q9"]
    assert shown == [(2, lowered.id), (0, None)]


def test_patient_show_lists_the_superseded_answer(migrated_sqlite_url: str, tmp_path: Path) -> None:
    """`checkin patient show` prints both answers to item 9, the first marked superseded."""

    async def seed() -> int:
        async with Database(migrated_sqlite_url) as database:
            return await endorse_then_lower(database)

    patient_id = asyncio.run(seed())
    config = tmp_path / "clinic.toml"
    config.write_text(f'[database]\nurl = "{migrated_sqlite_url}"\n')
    result = CliRunner().invoke(app, ["--config", str(config), "patient", "show", str(patient_id)])
    assert result.exit_code == 0, result.output
    lines = [line.strip() for line in result.stdout.splitlines() if "phq9.q9" in line]
    assert len(lines) == 2
    assert lines[0].endswith("phq9.q9 = 2 at 2026-05-04T09:09 (superseded by answer 10 at "
                             "2026-05-04T09:11)")  # fmt: skip
    assert lines[1].endswith("phq9.q9 = 0 at 2026-05-04T09:11")

"""A session's route and dose as an operator records them (real processes on a SQLite
file): `treatment add --route --dose`, `treatment dose` to record or correct it later,
`treatment list`, the series report, and the one-line refusals of a bad dose."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tests.test_cli_ops import add_patient, one_line_error, telegram_config, url
from tests.test_cli_service import checkin, ok_json

__all__ = ["telegram_config", "url"]  # fixtures


def _file(url: str) -> str:
    return url.split("///", 1)[1]


def test_dose_given_with_the_session_and_corrected_later(url: str, tmp_path: Path) -> None:
    patient = add_patient(url)
    added = ok_json(checkin(url, "treatment", "add", str(patient), "--at", "2026-03-02T10:00Z",
                            "--route", "ketamine-iv", "--dose", "0.5", "--json"))  # fmt: skip
    session = added["session"]
    assert (session["route"], session["dose"], session["dose_unit"]) == (
        "ketamine-iv",
        0.5,
        "mg/kg",
    )
    assert session["kind"] == "ketamine-iv"  # the route names a session given no kind
    second = ok_json(checkin(url, "treatment", "add", str(patient), "--at", "2026-03-05T10:00Z",
                             "--json"))["session"]  # fmt: skip
    assert (second["route"], second["dose_text"]) == (None, "")
    fixed = ok_json(checkin(url, "treatment", "dose", str(second["id"]), "--route",
                            "esketamine-in", "--dose", "84", "--json"))  # fmt: skip
    assert (fixed["number"], fixed["dose_text"]) == (2, "84 mg")
    listed = checkin(url, "treatment", "list", str(patient)).stdout.splitlines()
    assert listed[0].endswith("ketamine-iv  0.5 mg/kg") and listed[1].endswith("84 mg")
    with sqlite3.connect(_file(url)) as db:
        stored = db.execute(
            "SELECT route, dose, dose_unit FROM treatment_session ORDER BY at"
        ).fetchall()
        audits = db.execute(
            "SELECT detail FROM audit_event WHERE action = 'treatment_dose_set'"
        ).fetchall()
    assert stored == [("ketamine-iv", 0.5, "mg/kg"), ("esketamine-in", 84.0, "mg")]
    assert len(audits) == 1 and "84" not in audits[0][0]  # the route, never the dose
    out = tmp_path / "series.html"
    checkin(url, "report", str(patient), "--out", str(out))
    page = out.read_text()
    assert "0.5 mg/kg" in page and "84 mg" in page


def test_a_bad_dose_is_one_line_and_records_nothing(url: str) -> None:
    patient = add_patient(url)
    args = ("treatment", "add", str(patient), "--at", "2026-03-02T10:00Z")
    one_line_error(checkin(url, *args, "--route", "ketamine-iv", "--dose", "35"),
                   "--route/--dose: 35 mg/kg is outside 0.05-3 mg/kg")  # fmt: skip
    one_line_error(checkin(url, *args, "--route", "esketamine-in", "--dose", "70"),
                   "--route/--dose: intranasal esketamine is given as 28, 56, 84 mg")  # fmt: skip
    one_line_error(checkin(url, *args, "--dose", "0.5"), "--dose and --unit need --route")
    one_line_error(checkin(url, "treatment", "dose", "999", "--route", "other"),
                   "no treatment session with id 999")  # fmt: skip
    with sqlite3.connect(_file(url)) as db:
        assert db.execute("SELECT count(*) FROM treatment_session").fetchone() == (0,)

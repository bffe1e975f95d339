"""The audit, discharge, delete and retention commands, run in-process on a SQLite file."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from bot.cli import app

runner = CliRunner()


@pytest.fixture
def config(migrated_sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("CHECKIN_CONFIG", raising=False)
    monkeypatch.delenv("CHECKIN_DATABASE_URL", raising=False)
    path = tmp_path / "clinic.toml"
    path.write_text(
        f'[database]\nurl = "{migrated_sqlite_url}"\n'
        "[retention]\ndelete_after_days = 30\nkeep_deidentified_scores = true\n"
    )
    return path


def run(config: Path, *args: str, stdin: str | None = None) -> Result:
    return runner.invoke(app, ["--config", str(config), *args], input=stdin)


def ok(config: Path, *args: str) -> Any:
    result = run(config, *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def database_file(config: Path) -> Path:
    return config.with_name("checkin.db")


def test_operator_reads_and_changes_are_audited(config: Path) -> None:
    """add, list, show and ask each leave an operator event naming the patient by id only."""
    patient = ok(config, "patient", "add", "--name", "Hester Prynne", "--channel", "console")
    subject = f"patient:{patient['id']}"
    ok(config, "patient", "list")
    ok(config, "patient", "show", str(patient["id"]))
    ok(config, "ask", str(patient["id"]), "phq9")
    about = ok(config, "audit", "list", "--subject", subject)
    assert [(e["actor"], e["action"]) for e in about] == [
        ("operator", "patient_added"),
        ("operator", "patient_viewed"),
        ("operator", "checkin_queued"),
    ]
    everything = ok(config, "audit", "list")
    assert "patients_listed" in [e["action"] for e in everything]
    assert "Hester" not in json.dumps(everything)
    assert ok(config, "audit", "list", "--limit", "1")[0]["action"] == "audit_listed"


def test_verify_passes_then_names_the_altered_event(config: Path) -> None:
    """verify exits 0 on an intact trail, and 1 naming the event altered behind its back."""
    patient = ok(config, "patient", "add", "--name", "X", "--channel", "console")
    ok(config, "patient", "show", str(patient["id"]))
    result = run(config, "audit", "verify")
    assert result.exit_code == 0 and "audit trail intact: 2 events" in result.stdout
    with sqlite3.connect(database_file(config)) as connection:
        connection.execute("UPDATE audit_event SET action = 'nothing' WHERE id = 1")
    result = run(config, "audit", "verify")
    assert result.exit_code == 1
    assert "audit trail BROKEN at event 1: its content does not match its hash" in result.stdout
    report = json.loads(run(config, "audit", "verify", "--json").stdout)
    assert (report["ok"], report["broken_id"], report["checked"]) == (False, 1, 0)


def test_discharge_then_delete_keeps_a_wiped_row(config: Path) -> None:
    """discharge cancels the queued check-in; delete asks first, then wipes the name."""
    patient = ok(config, "patient", "add", "--name", "Hester Prynne", "--channel", "console")
    pid = str(patient["id"])
    ok(config, "ask", pid, "phq9")
    discharged = ok(config, "patient", "discharge", pid)
    assert discharged == {"id": patient["id"], "status": "discharged", "cancelled_checkins": 1}
    refused = run(config, "patient", "delete", pid, stdin="n\n")
    assert refused.exit_code == 1 and "nothing erased" in refused.output
    assert ok(config, "patient", "show", pid)["name"] == "Hester Prynne"
    erased = ok(config, "patient", "delete", pid, "--yes")
    assert (erased["erased"], erased["kept_scores"]) == (True, True)
    assert ok(config, "patient", "show", pid)["name"] == "(erased)"
    again = run(config, "patient", "delete", pid, "--yes")
    assert again.exit_code == 2
    assert (
        again.output.strip()
        == f"error: patient {pid} was erased already; see `checkin patient list`"
    )


def test_unknown_patient_and_bad_subject_are_one_line_errors(config: Path) -> None:
    """A missing patient or a malformed --subject: exit 2, one line saying what to do."""
    missing = run(config, "patient", "discharge", "999")
    assert missing.exit_code == 2
    assert missing.output.strip() == "error: no patient with id 999; see `checkin patient list`"
    bad = run(config, "audit", "list", "--subject", "Hester")
    assert bad.exit_code == 2 and "must look like patient:12" in bad.output


def test_retention_run_dry_run_lists_nobody_recently_discharged(config: Path) -> None:
    """A patient discharged today is not due under a 30-day policy; a dry run erases nothing."""
    patient = ok(config, "patient", "add", "--name", "Y", "--channel", "console")
    ok(config, "patient", "discharge", str(patient["id"]))
    assert ok(config, "retention", "run", "--dry-run") == {"dry_run": True, "due": [], "erased": []}
    assert run(config, "retention", "run").stdout.strip() == "0 patients erased: none"

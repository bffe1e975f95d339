"""`checkin patient add --channel whatsapp` and `checkin config check` on [whatsapp] (its
templates, and a warning when alerts have no Spanish one), run in-process on a SQLite file
(nothing is sent: delivery is the service's)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from bot.cli import app
from bot.storage.database import Database
from bot.storage.tables import Patient

runner = CliRunner()
SID = "HX" + "a" * 32
TEMPLATES = "".join(
    f'[whatsapp.templates.{p}]\nen = "{SID}"\nes = "{SID}"\n'
    for p in ("invitation", "checkin", "alert")
)


def write(tmp_path: Path, url: str, whatsapp: str) -> Path:
    path = tmp_path / "clinic.toml"
    path.write_text(
        f'[database]\nurl = "{url}"\n[server]\npublic_url = "https://checkin.example"\n'
        f'[sms]\naccount_sid = "AC{"5" * 32}"\nauth_token = "t"\n{whatsapp}'
    )
    return path


@pytest.fixture
def config(migrated_sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("CHECKIN_CONFIG", raising=False)
    monkeypatch.delenv("CHECKIN_DATABASE_URL", raising=False)
    whatsapp = f'[whatsapp]\nfrom_number = "+15005550006"\n{TEMPLATES}'
    return write(tmp_path, migrated_sqlite_url, whatsapp)


def run(config: Path, *args: str) -> Result:
    return runner.invoke(app, ["--config", str(config), *args])


def ok(config: Path, *args: str) -> Any:
    result = run(config, *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_patient_add_on_whatsapp_invites(config: Path) -> None:
    """A WhatsApp patient is enrolled invited, with the invitation template queued."""
    added = ok(config, "patient", "add", "--name", "P", "--channel", "whatsapp",
               "--phone", "+1 201 555 0123", "--language", "es")  # fmt: skip
    assert added["channel"] == "whatsapp" and added["status"] == "invited" and added["invited"]


def test_consent_on_record_makes_the_patient_active(config: Path) -> None:
    """--consented-at records the clinic's own opt-in: active at once, no invitation."""
    added = ok(config, "patient", "add", "--name", "P", "--channel", "whatsapp",
               "--phone", "+12015550124", "--consented-at", "2026-05-01T10:00:00")  # fmt: skip
    assert added["status"] == "active" and "invited" not in added
    refused = run(config, "patient", "add", "--name", "Q", "--channel", "console",
                  "--consented-at", "2026-05-01")  # fmt: skip
    assert refused.exit_code != 0 and "--consented-at is for --channel whatsapp" in refused.output


def test_config_check_names_missing_and_malformed_templates(
    migrated_sqlite_url: str, tmp_path: Path
) -> None:
    """A sender without its templates, or a Content SID of the wrong shape, is named by key."""
    missing = write(tmp_path, migrated_sqlite_url, '[whatsapp]\nfrom_number = "+15005550006"\n')
    result = run(missing, "config", "check")
    assert result.exit_code != 0
    assert "whatsapp.templates.invitation.en: is missing" in result.output
    bad = write(tmp_path, migrated_sqlite_url,
                '[whatsapp]\nfrom_number = "+1"\n[whatsapp.templates.checkin]\nes = "HX1"\n')  # fmt: skip
    result = run(bad, "config", "check")
    assert "whatsapp.templates.checkin.es: must be a Content SID" in result.output


def test_config_check_warns_when_alerts_have_no_spanish_template(
    migrated_sqlite_url: str, tmp_path: Path
) -> None:
    """An alert template in English only is a warning naming [whatsapp.templates.alert] es
    (English stands in, so the exit status stays 0); with es set, or no [whatsapp], none."""
    english = TEMPLATES.replace(f'[whatsapp.templates.alert]\nen = "{SID}"\nes = "{SID}"\n',
                                f'[whatsapp.templates.alert]\nen = "{SID}"\n')  # fmt: skip
    assert english != TEMPLATES
    only_en = write(tmp_path, migrated_sqlite_url,
                    f'[whatsapp]\nfrom_number = "+15005550006"\n{english}')  # fmt: skip
    result = run(only_en, "config", "check")
    assert result.exit_code == 0, result.output
    assert "warning: " in result.output and "[whatsapp.templates.alert] es" in result.output
    data = ok(only_en, "config", "check")
    assert data["problems"] == []
    assert [w["key"] for w in data["warnings"]] == ["whatsapp.templates.alert.es"]
    assert "told in Spanish" in data["warnings"][0]["problem"]
    for whatsapp in (f'[whatsapp]\nfrom_number = "+15005550006"\n{TEMPLATES}', ""):
        quiet = write(tmp_path, migrated_sqlite_url, whatsapp)  # es set; no WhatsApp at all
        assert ok(quiet, "config", "check") == {"problems": [], "warnings": []}, whatsapp


def test_patient_import_takes_whatsapp_rows_with_their_numbers(
    config: Path, migrated_sqlite_url: str, tmp_path: Path
) -> None:
    """Import checks a WhatsApp row as `patient add` does: a number is needed (none: refused
    by line, nothing enrolled), it is stored as whatsapp:+E164, and the patient is invited.
    Without [whatsapp] the row is refused naming what to configure."""
    rows = tmp_path / "rows.csv"
    rows.write_text("name,channel,phone\nW-1,whatsapp,+34 612 345 678\nW-2,whatsapp,\n")
    refused = run(config, "patient", "import", str(rows))
    assert refused.exit_code == 2
    assert "line 3: phone is empty (channel whatsapp needs one)" in refused.output
    assert ok(config, "patient", "list") == []
    rows.write_text("name,channel,phone\nW-1,whatsapp,+34 612 345 678\n")
    done = ok(config, "patient", "import", str(rows))
    assert (done["created"], done["rows"][0]["invited"]) == (1, True)
    shown = ok(config, "patient", "show", str(done["rows"][0]["id"]))
    assert (shown["channel"], shown["status"]) == ("whatsapp", "invited")
    with sqlite3.connect(migrated_sqlite_url.split("///", 1)[1]) as db:
        [(sealed,)] = db.execute("SELECT address FROM patient").fetchall()
    assert "612" not in sealed  # the number is sealed at rest ...
    url = migrated_sqlite_url
    assert asyncio.run(_address(url, done["rows"][0]["id"])) == "whatsapp:+34612345678"  # ... E.164
    bare = write(tmp_path, url, "")
    unset = run(bare, "patient", "import", str(rows))
    assert "line 2: channel whatsapp: WhatsApp is not configured" in unset.output


async def _address(url: str, patient_id: int) -> str | None:
    async with Database(url) as db, db.transaction() as session:
        patient = await session.get(Patient, patient_id)
    return patient.address if patient else None

"""`checkin patient add --channel whatsapp` and `checkin config check` on [whatsapp], run
in-process on a SQLite file (nothing is sent: delivery is the service's)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from bot.cli import app

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

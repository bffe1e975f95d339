"""`checkin clinician add --email`, `password`, `totp` and `sessions`, run as an operator
runs them; `checkin demo` printing a sign-in; the [panel] section of config.toml."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bot.config import settings_from_mapping
from bot.domain.errors import ConfigError
from tests.test_cli_service import ROOT, checkin, env_for, ok_json


@pytest.fixture
def url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'clinic.db'}"
    assert checkin(url, "db", "upgrade").returncode == 0
    return url


def with_stdin(url: str, text: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot", *args], input=text, capture_output=True, text=True,
        env=env_for(url), cwd=ROOT, timeout=120, check=False,
    )  # fmt: skip


def test_an_account_is_added_with_the_clinician(url: str) -> None:
    """--email and --role give the clinician a panel account; the e-mail is unique."""
    added = ok_json(checkin(url, "clinician", "add", "--name", "Dr A", "--channel", "console",
                            "--email", "Rao@Clinic.example", "--role", "admin", "--json"))  # fmt: skip
    assert added["email"] == "rao@clinic.example" and added["role"] == "admin"
    again = checkin(url, "clinician", "add", "--name", "Dr B", "--channel", "console",
                    "--email", "rao@clinic.example")  # fmt: skip
    assert again.returncode == 2 and "already belongs to an account" in again.stderr
    listed = ok_json(checkin(url, "clinician", "list", "--json"))
    assert [c["name"] for c in listed] == ["Dr A"]  # the refused one was not added
    bad = checkin(url, "clinician", "add", "--name", "C", "--channel", "console", "--email", "x",
                  "--role", "boss")  # fmt: skip
    assert bad.returncode == 2 and "e-mail" in bad.stderr


def test_password_from_stdin_refuses_weak_ones(url: str) -> None:
    checkin(
        url, "clinician", "add", "--name", "A", "--channel", "console", "--email", "a@c.example"
    )
    short = with_stdin(url, "short\n", "clinician", "password", "1")
    assert short.returncode == 2 and "at least 12 characters" in short.stderr
    common = with_stdin(url, "Password1234\n", "clinician", "password", "1")
    assert common.returncode == 2 and "too common" in common.stderr
    good = with_stdin(url, "a long enough passphrase\n", "clinician", "password", "1")
    assert good.returncode == 0 and "password set" in good.stdout
    assert "passphrase" not in good.stdout + good.stderr
    nobody = with_stdin(url, "a long enough passphrase\n", "clinician", "password", "9")
    assert nobody.returncode == 2 and "no clinician with id 9" in nobody.stderr
    no_account = checkin(url, "clinician", "add", "--name", "B", "--channel", "console")
    assert no_account.returncode == 0
    refused = with_stdin(url, "a long enough passphrase\n", "clinician", "password", "2")
    assert refused.returncode == 2 and "no panel account" in refused.stderr


def test_totp_prints_the_uri_once_and_draws_the_qr_locally(url: str, tmp_path: Path) -> None:
    checkin(
        url, "clinician", "add", "--name", "A", "--channel", "console", "--email", "a@c.example"
    )
    qr = tmp_path / "qr.svg"
    first = ok_json(checkin(url, "clinician", "totp", "1", "--qr", str(qr), "--json"))
    assert (
        first["otpauth_uri"].startswith("otpauth://totp/")
        and first["secret"] in first["otpauth_uri"]
    )
    assert qr.read_text().startswith("<?xml") and "<svg" in qr.read_text()
    second = checkin(url, "clinician", "totp", "1", "--terminal")
    assert second.returncode == 0 and "otpauth://totp/" in second.stdout
    assert first["secret"] not in second.stdout  # a new secret each time
    assert "█" in second.stdout or "▀" in second.stdout


def test_sessions_list_and_revoke(url: str) -> None:
    checkin(
        url, "clinician", "add", "--name", "A", "--channel", "console", "--email", "a@c.example"
    )
    assert ok_json(checkin(url, "clinician", "sessions", "1", "--json")) == []  # type: ignore[comparison-overlap]
    revoked = ok_json(checkin(url, "clinician", "sessions", "1", "--revoke", "--json"))
    assert revoked == {"id": 1, "revoked": 0}


@pytest.mark.parametrize("command", ["add", "password", "totp", "sessions"])
def test_each_command_has_help(url: str, command: str) -> None:
    result = checkin(url, "clinician", command, "--help")
    assert result.returncode == 0 and "Usage" in result.stdout
    words = {
        "add": "--email",
        "password": "standard input",
        "totp": "otpauth",
        "sessions": "--revoke",
    }
    assert words[command] in result.stdout


def test_demo_prints_a_one_time_admin_sign_in(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bot", "demo"], input="", capture_output=True, text=True,
        cwd=tmp_path, timeout=300, check=False,
        env={k: v for k, v in os.environ.items() if not k.startswith("CHECKIN_")},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (
        "http://127.0.0.1:8080/login" in result.stdout
        and "e-mail admin@demo.invalid" in result.stdout
    )
    assert "otpauth://totp/" in result.stdout


def test_the_panel_section_is_read_and_checked(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    panel = {"require_totp": False, "idle_timeout_min": 5, "absolute_timeout_h": 8,
             "timezone": "Europe/Madrid"}  # fmt: skip
    settings = settings_from_mapping({"panel": panel}, path)
    assert settings.panel.require_totp is False and settings.panel.idle_timeout_min == 5.0
    assert settings.panel.absolute_timeout_h == 8.0 and settings.panel.timezone == "Europe/Madrid"
    for wrong, key in (({"timezone": "Mars/Base"}, "panel.timezone"),
                       ({"idle_timeout_min": 0}, "panel.idle_timeout_min"),
                       ({"cookie": "x"}, "panel.cookie")):  # fmt: skip
        with pytest.raises(ConfigError, match=key):
            settings_from_mapping({"panel": wrong}, path)

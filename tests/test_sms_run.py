"""SMS through `checkin run`, as deployed: invited from the command line, YES, a PHQ-9, with
the real twilio client sending to a Twilio stand-in and Twilio's signed webhooks posted to
the running service (signed for the public URL, as behind a TLS-terminating proxy)."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.standins.server import serve_in_thread
from tests.standins.twilio import TwilioStandIn
from tests.test_cli_service import Running, checkin, free_port, ok_json
from tests.test_telegram_run import wait_until

PUBLIC = "https://checkin.example"
CLINIC_NUMBER = "+12125550100"


@pytest.fixture
def twilio() -> Iterator[tuple[TwilioStandIn, str]]:
    fake = TwilioStandIn()
    with serve_in_thread(fake.app) as url:
        yield fake, url


def test_invited_patient_says_yes_and_completes_a_phq9(
    tmp_path: Path, twilio: tuple[TwilioStandIn, str]
) -> None:
    """`patient add --channel sms` invites; YES activates; a PHQ-9 completes through `checkin run`."""
    fake, url = twilio
    port = free_port()
    config = tmp_path / "clinic.toml"
    config.write_text(
        f'[clinic]\nname = "Lakeside"\n\n[server]\nport = {port}\npublic_url = "{PUBLIC}"\n\n'
        "[scheduler]\ntick_s = 0.3\n\n"
        f'[sms]\naccount_sid = "{fake.account_sid}"\nauth_token = "{fake.auth_token}"\n'
        f'from_number = "{CLINIC_NUMBER}"\napi_base_url = "{url}"\n'
    )
    db = f"sqlite:///{tmp_path / 'clinic.db'}"
    assert checkin(db, "db", "upgrade").returncode == 0
    patient = ok_json(checkin(
        db, "patient", "add", "--name", "P-2", "--channel", "sms", "--phone", "(212) 555-0123",
        "--timezone", "America/New_York", "--json", config=config,
    ))  # fmt: skip
    assert (patient["status"], patient["invited"]) == ("invited", True)
    number = "+12125550123"

    def to_patient() -> list[str]:
        return [m["body"] for m in list(fake.messages.values()) if m["to"] == number]

    def text(body: str) -> None:
        request = fake.inbound_request(f"{PUBLIC}/sms", from_=number, to=CLINIC_NUMBER, body=body)
        response = httpx.post(
            f"http://127.0.0.1:{port}/sms", data=request.form, headers=request.headers, timeout=10
        )
        assert response.status_code == 200

    service = Running(db, "--config", str(config), "run")
    try:
        wait_until("the invitation", lambda: any("Reply YES to start" in b for b in to_patient()))
        text("YES")
        wait_until("the welcome", lambda: any(b.startswith("Welcome") for b in to_patient()))
        assert (
            checkin(db, "ask", str(patient["id"]), "phq9", "--now", config=config).returncode == 0
        )
        for n, reply in enumerate(["1", "1", "0", "0", "1", "0", "0", "0", "0"], start=1):
            wait_until(
                f"question {n}",
                lambda n=n: any(f"\n{n}/" in f"\n{b}" for b in to_patient()),  # 1/: below the intro
            )
            text(reply)
        wait_until(
            "the difficulty question", lambda: any(b.startswith("10/10") for b in to_patient())
        )
        text("1")
        wait_until("the thanks", lambda: any("check-in is complete" in b for b in to_patient()))
        service.process.send_signal(signal.SIGTERM)
        assert service.process.wait(timeout=20) == 0
    finally:
        service.stop()
    shown = ok_json(checkin(db, "patient", "show", str(patient["id"]), "--json"))
    assert [(s["instrument"], s["total"]) for s in shown["scores"]] == [("phq9", 3)]
    assert shown["status"] == "active"


def test_sms_patient_add_needs_a_valid_number(
    tmp_path: Path, twilio: tuple[TwilioStandIn, str]
) -> None:
    """A missing or invalid --phone is refused in one line naming the problem."""
    fake, url = twilio
    config = tmp_path / "clinic.toml"
    config.write_text(
        f'[server]\npublic_url = "{PUBLIC}"\n[sms]\naccount_sid = "{fake.account_sid}"\n'
        f'auth_token = "x"\nfrom_number = "{CLINIC_NUMBER}"\napi_base_url = "{url}"\n'
    )
    db = f"sqlite:///{tmp_path / 'clinic.db'}"
    assert checkin(db, "db", "upgrade").returncode == 0
    missing = checkin(db, "patient", "add", "--name", "P", "--channel", "sms", config=config)
    assert (
        missing.returncode == 2
        and missing.stderr.strip() == "error: --channel sms needs --phone NUMBER"
    )
    bad = checkin(
        db, "patient", "add", "--name", "P", "--channel", "sms", "--phone", "12", config=config
    )
    assert bad.returncode == 2 and "is not a valid phone number" in bad.stderr


def test_run_refuses_to_start_with_a_spool_it_cannot_open(
    tmp_path: Path, twilio: tuple[TwilioStandIn, str]
) -> None:
    """An [sms] spool_path the service cannot create stops `checkin run` at start-up with
    one line naming the path, before /sms could answer a single 503."""
    fake, url = twilio
    config = tmp_path / "clinic.toml"
    config.write_text(
        f'[server]\nport = {free_port()}\npublic_url = "{PUBLIC}"\n[sms]\n'
        f'account_sid = "{fake.account_sid}"\nauth_token = "x"\n'
        f'from_number = "{CLINIC_NUMBER}"\napi_base_url = "{url}"\n'
        'spool_path = "/dev/null/checkin.spool"\n'
    )
    db = f"sqlite:///{tmp_path / 'clinic.db'}"
    assert checkin(db, "db", "upgrade").returncode == 0
    refused = checkin(db, "run", config=config)
    assert refused.returncode != 0
    assert "sms spool: cannot open /dev/null/checkin.spool (File exists)" in refused.stderr
    assert "Traceback" not in refused.stderr

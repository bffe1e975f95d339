"""`checkin run` with Telegram, as deployed: a separate process, the real python-telegram-bot
against a Bot API stand-in, in polling mode and in webhook mode."""

from __future__ import annotations

import signal
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.standins.telegram import SECRET_TOKEN_HEADER, TelegramStandIn
from tests.test_cli_service import Running, checkin, free_port, ok_json

CHAT = 7301
SECRET = "run-secret_0123"


def wait_until(what: str, check: Callable[[], bool], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def configure(tmp_path: Path, url: str, token: str, mode: str, port: int) -> Path:
    config = tmp_path / "clinic.toml"
    config.write_text(
        "[clinic]\nname = \"Lakeside\"\n\n"
        f"[server]\nport = {port}\npublic_url = \"https://checkin.example\"\n\n"
        "[scheduler]\ntick_s = 0.3\n\n"
        f"[telegram]\ntoken = \"{token}\"\nmode = \"{mode}\"\nwebhook_secret = \"{SECRET}\"\n"
        f"api_base_url = \"{url}/bot\"\n"
    )  # fmt: skip
    return config


@pytest.mark.parametrize("mode", ["polling", "webhook"])
def test_enrol_and_complete_a_phq9_through_checkin_run(
    tmp_path: Path, stand_in: tuple[TelegramStandIn, str], mode: str
) -> None:
    """Deep link, then a PHQ-9 by taps and typing, all through a running `checkin run`."""
    fake, url = stand_in
    db = f"sqlite:///{tmp_path / 'clinic.db'}"
    port = free_port()
    config = configure(tmp_path, url, fake.token, mode, port)
    assert checkin(db, "db", "upgrade").returncode == 0
    patient = ok_json(
        checkin(
            db, "patient", "add", "--name", "P-1", "--channel", "telegram", "--json", config=config
        )
    )
    assert patient["status"] == "invited"
    assert patient["enroll_link"] == f"https://t.me/checkin_test_bot?start={patient['enroll_code']}"

    def send(update: dict[str, Any]) -> None:
        if mode == "polling":
            fake.queue_update(update)
            return
        response = httpx.post(
            f"http://127.0.0.1:{port}/telegram",
            json=update,
            headers={SECRET_TOKEN_HEADER: SECRET},
            timeout=10,
        )
        assert response.status_code == 200

    service = Running(db, "--config", str(config), "run")
    try:
        if mode == "webhook":
            wait_until(
                "the webhook to be set",
                lambda: fake.webhook_url == "https://checkin.example/telegram",
            )
            assert fake.webhook_secret == SECRET
            _healthy(port)
        send(fake.text_update(CHAT, f"/start {patient['enroll_code']}"))
        wait_until("the welcome", lambda: any("Welcome" in t for t in fake.sent_texts(CHAT)))
        assert (
            checkin(db, "ask", str(patient["id"]), "phq9", "--now", config=config).returncode == 0
        )
        for n in range(1, 10):
            wait_until(f"question {n}", lambda n=n: _question(fake, f"{n}/") is not None)
            question = _question(fake, f"{n}/")
            assert question is not None
            if n % 2:
                send(fake.callback_update(CHAT, question["message_id"], f"phq9.q{n}=1"))
            else:
                send(fake.text_update(CHAT, "0"))
        wait_until("the difficulty question", lambda: _question(fake, "10/10") is not None)
        send(fake.text_update(CHAT, "not difficult"))
        wait_until(
            "the thanks", lambda: any("check-in is complete" in t for t in fake.sent_texts(CHAT))
        )
        # the last answer's edit leaves after the thanks (what the patient waits for first)
        wait_until("the last edit", lambda: len(_edited(fake)) == 10)
        service.process.send_signal(signal.SIGTERM)
        assert service.process.wait(timeout=20) == 0
    finally:
        service.stop()
    shown = ok_json(checkin(db, "patient", "show", str(patient["id"]), "--json"))
    assert shown["status"] == "active"
    assert [(s["instrument"], s["total"], s["band"]) for s in shown["scores"]] == [
        ("phq9", 5, "mild")
    ]
    assert len(_edited(fake)) == 10  # every question now shows the answer chosen


def _edited(fake: TelegramStandIn) -> list[str]:
    return [m["text"] for m in fake.messages(CHAT) if "✓" in m["text"]]


def _question(fake: TelegramStandIn, prefix: str) -> dict[str, Any] | None:
    for message in fake.messages(CHAT):
        if any(line.startswith(prefix) for line in message["text"].splitlines()):
            return message
    return None


def _healthy(port: int) -> None:
    def ok() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    wait_until("healthz", ok)


def test_webhook_refuses_a_forged_update_while_running(
    tmp_path: Path, stand_in: tuple[TelegramStandIn, str]
) -> None:
    """Against the running service, a missing or wrong secret gets 403 and nothing is stored."""
    fake, url = stand_in
    db = f"sqlite:///{tmp_path / 'clinic.db'}"
    port = free_port()
    config = configure(tmp_path, url, fake.token, "webhook", port)
    assert checkin(db, "db", "upgrade").returncode == 0
    service = Running(db, "--config", str(config), "run")
    try:
        _healthy(port)
        update = fake.text_update(CHAT, "hello")
        for headers in ({}, {SECRET_TOKEN_HEADER: "nope"}):
            response = httpx.post(
                f"http://127.0.0.1:{port}/telegram", json=update, headers=headers, timeout=10
            )
            assert response.status_code == 403
    finally:
        service.process.send_signal(signal.SIGTERM)
        service.process.wait(timeout=20)
        service.stop()
    with sqlite3.connect(tmp_path / "clinic.db") as connection:
        assert connection.execute("SELECT count(*) FROM inbound_message").fetchone() == (0,)
    assert fake.sent_texts(CHAT) == []

"""The service's command line, run as an operator runs it: real processes, a real SQLite
file or PostgreSQL database, signals included."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent


def env_for(url: str) -> dict[str, str]:
    env = dict(os.environ, CHECKIN_DATABASE_URL=url, PYTHONUNBUFFERED="1")
    env.pop("CHECKIN_CONFIG", None)
    return env


def checkin(url: str, *args: str, config: Path | None = None) -> subprocess.CompletedProcess[str]:
    pre = ["--config", str(config)] if config else []
    return subprocess.run(
        [sys.executable, "-m", "bot", *pre, *args],
        capture_output=True, text=True, env=env_for(url), cwd=ROOT, timeout=120, check=False,
    )  # fmt: skip


def ok_json(result: subprocess.CompletedProcess[str]) -> dict:  # type: ignore[type-arg]
    assert result.returncode == 0, result.stderr
    data: dict = json.loads(result.stdout)  # type: ignore[type-arg]
    return data


class Running:
    """A long-running `checkin` process whose output is read line by line without blocking."""

    def __init__(self, url: str, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bot", *args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, env=env_for(url), cwd=ROOT,
        )  # fmt: skip
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)

    def wait_for(self, text: str, timeout_s: float = 30.0) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.1)
            except queue.Empty:
                continue
            self.seen.append(line)
            if text in line:
                return line
        raise AssertionError(f"{text!r} never appeared; output so far:\n{''.join(self.seen)}")

    def send(self, text: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(text + "\n")
        self.process.stdin.flush()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)
        self.reader.join(timeout=10)
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                with contextlib.suppress(BrokenPipeError):
                    pipe.close()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def clinic_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database for a clinic, upgraded through the CLI, on each dialect."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'clinic.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    result = checkin(url, "db", "upgrade")
    assert result.returncode == 0, result.stderr
    assert "database at revision" in result.stdout
    return url


def test_patients_clinicians_and_check_ins_from_the_command_line(clinic_url: str) -> None:
    """clinician add, patient add, ask and patient show work together and print JSON."""
    clinician = ok_json(
        checkin(
            clinic_url, "clinician", "add", "--name", "Dr. Rao", "--channel", "console", "--json"
        )
    )
    patient = ok_json(checkin(
        clinic_url, "patient", "add", "--name", "P-017", "--timezone", "America/Chicago",
        "--language", "es", "--channel", "console", "--clinician", str(clinician["id"]), "--json",
    ))  # fmt: skip
    assert patient["id"] and patient["status"] == "active" and patient["language"] == "es"
    refused = checkin(clinic_url, "ask", str(patient["id"]), "gad7")  # no Spanish GAD-7 ships
    assert refused.returncode == 2 and "gad7: has no 'es' wording" in refused.stderr
    asked = ok_json(checkin(clinic_url, "ask", str(patient["id"]), "side_effects", "--json"))
    assert asked["instruments"] == ["side_effects"] and asked["status"] == "pending"
    shown = ok_json(checkin(clinic_url, "patient", "show", str(patient["id"]), "--json"))
    assert [c["status"] for c in shown["checkins"]] == ["pending"]
    assert shown["scores"] == [] and shown["alerts"] == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["patient", "add", "--name", "X", "--channel", "pigeon"], "--channel 'pigeon' is not one of telegram, sms, console"),
        (["patient", "add", "--name", "X", "--channel", "console", "--timezone", "Mars/Olympus"], "--timezone 'Mars/Olympus' is not an IANA time zone"),
        (["patient", "add", "--name", "X", "--channel", "console", "--language", "fr"], "--language 'fr' is not one of en, es"),
        (["patient", "add", "--name", "X", "--channel", "console", "--clinician", "99"], "no clinician with id 99"),
        (["patient", "show", "42"], "no patient with id 42"),
        (["ask", "42", "phq9"], "no patient with id 42"),
        (["ask", "1", "bdi"], "unknown instrument 'bdi'"),
    ],
)  # fmt: skip
def test_operator_mistakes_get_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    """Each mistake exits 2 with one line naming the problem; no traceback."""
    url = f"sqlite:///{tmp_path / 'clinic.db'}"
    assert checkin(url, "db", "upgrade").returncode == 0
    checkin(url, "patient", "add", "--name", "Only", "--channel", "console")
    result = checkin(url, *args)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().startswith(f"error: {message}"), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_database_without_schema_says_what_to_do(tmp_path: Path) -> None:
    """Using a database before `db upgrade` names the command to run."""
    result = checkin(f"sqlite:///{tmp_path / 'new.db'}", "patient", "list")
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        == "error: the database has no schema yet: run `checkin db upgrade` first"
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_run_sends_a_queued_check_in_within_a_tick_and_stops_on_sigterm(
    clinic_url: str, tmp_path: Path
) -> None:
    """`checkin run` serves /healthz, sends a queued check-in on its first tick, stops on SIGTERM."""
    port = free_port()
    config = tmp_path / "clinic.toml"
    config.write_text(
        f'[server]\nport = {port}\n\n[scheduler]\ntick_s = 0.5\n\n[clinic]\nname = "Lakeside"\n'
    )
    patient = ok_json(
        checkin(clinic_url, "patient", "add", "--name", "P", "--channel", "console", "--json")
    )
    assert checkin(clinic_url, "ask", str(patient["id"]), "phq2", "--now").returncode == 0
    service = Running(clinic_url, "--config", str(config), "run")
    try:
        service.wait_for("Lakeside check-in: PHQ-2")
        service.wait_for("1/2 (last 2 weeks): Little interest")
        health = _healthz(port)
        assert health == {"ok": True, "database": True, "scheduler": True}
        service.process.send_signal(signal.SIGTERM)
        assert service.process.wait(timeout=15) == 0
    finally:
        service.stop()
    shown = ok_json(checkin(clinic_url, "patient", "show", str(patient["id"]), "--json"))
    assert [c["status"] for c in shown["checkins"]] == ["sent"]


def _healthz(port: int) -> dict:  # type: ignore[type-arg]
    deadline = time.monotonic() + 20
    while True:
        try:
            response = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
            if response.status_code == 200:
                data: dict = response.json()  # type: ignore[type-arg]
                return data
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError("healthz never answered 200")
        time.sleep(0.2)


def test_run_refuses_an_unmigrated_database(tmp_path: Path) -> None:
    """`checkin run` on a database without the schema exits 2 and says to upgrade."""
    result = checkin(f"sqlite:///{tmp_path / 'x.db'}", "run")
    assert result.returncode == 2
    assert "run `checkin db upgrade` first" in result.stderr


def test_sigkill_mid_check_in_resumes_at_the_same_item(clinic_url: str) -> None:
    """A process killed with SIGKILL part-way resumes at the next item with earlier answers intact."""
    patient = ok_json(
        checkin(clinic_url, "patient", "add", "--name", "P", "--channel", "console", "--json")
    )
    pid = str(patient["id"])
    assert checkin(clinic_url, "ask", pid, "phq9", "--now").returncode == 0
    first = Running(clinic_url, "chat", pid)
    try:
        first.wait_for("1/9")
        for n, value in enumerate(["1", "2", "3", "0"], start=2):
            first.send(value)
            first.wait_for(f"{n}/10")
        time.sleep(1)  # let the last delivery be recorded; a kill mid-send is a delivery test
        first.process.send_signal(signal.SIGKILL)
        first.process.wait(timeout=10)
    finally:
        first.stop()
    second = Running(clinic_url, "chat", pid)
    try:
        second.send("2")
        second.wait_for("6/10 (last 2 weeks): Feeling bad about yourself", timeout_s=60)
    finally:
        second.stop()
    shown = ok_json(checkin(clinic_url, "patient", "show", pid, "--json"))
    assert [c["status"] for c in shown["checkins"]] == ["in_progress"]
    answers = _answers(clinic_url)
    assert answers == [
        ("phq9.q1", 1),
        ("phq9.q2", 2),
        ("phq9.q3", 3),
        ("phq9.q4", 0),
        ("phq9.q5", 2),
    ]


def _answers(url: str) -> list[tuple[str, int]]:
    code = (
        "import asyncio, json, sys\n"
        "from sqlmodel import select, col\n"
        "from bot.storage.database import Database\n"
        "from bot.storage.tables import Answer\n"
        "async def main():\n"
        "    db = Database(sys.argv[1])\n"
        "    async with db.transaction() as s:\n"
        # item keys and values only: they are stored in the clear (raw text is encrypted)
        "        query = select(Answer.item_key, Answer.value_int).order_by(col(Answer.id))\n"
        "        rows = (await s.exec(query)).all()\n"
        "    await db.dispose()\n"
        "    print(json.dumps([[key, value] for key, value in rows]))\n"
        "asyncio.run(main())\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, url], capture_output=True, text=True, cwd=ROOT, check=True
    )
    return [(key, value) for key, value in json.loads(result.stdout)]


def test_demo_auto_plays_a_series_and_exits_0(tmp_path: Path) -> None:
    """`checkin demo --auto` runs on a fresh machine: no config, prints response and remission."""
    result = subprocess.run(
        [sys.executable, "-m", "bot", "demo", "--auto"],
        capture_output=True, text=True, cwd=tmp_path, timeout=300, check=False,
        env={k: v for k, v in os.environ.items() if not k.startswith("CHECKIN_")},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "after session 6" in result.stdout
    assert "response yes, remission yes" in result.stdout

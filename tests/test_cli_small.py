"""Small things an operator met on the command line (issue 24), run as the operator runs
them: usage mistakes in one line, the UTC date in the preview, cancelling twice, the
console worker saying whose message it prints, an empty report, "1 problem"."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_cli_service import Running, checkin, ok_json


@pytest.fixture
def url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'clinic.db'}"
    assert checkin(url, "db", "upgrade").returncode == 0
    return url


def _patient(url: str, protocol: str = "weekly-phq9", zone: str = "Australia/Sydney") -> int:
    args = ["--name", "P", "--channel", "console", "--timezone", zone, "--protocol", protocol]
    return int(ok_json(checkin(url, "patient", "add", *args, "--json"))["id"])


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["schedule", "preview", "1", "--days", "-3"], "--days"),
        (["report", "1", "--out", "r.html", "--format"], "--format"),
        (["export", "--format"], "--format"),
        (["schedule", "preview"], "patient_id"),
        (["no-such-command"], "no-such-command"),
    ],
)
def test_usage_mistakes_are_one_line(url: str, args: list[str], words: str) -> None:
    """A usage mistake the framework catches is one `error:` line with exit status 2, not
    the boxed usage message."""
    result = checkin(url, *args)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], lines
    assert "╭" not in result.stderr and "Usage:" not in result.stderr


def test_help_still_works(url: str) -> None:
    """--help prints the help and exits 0, for the program and for a command."""
    for args in (["--help"], ["schedule", "preview", "--help"]):
        result = checkin(url, *args)
        assert result.returncode == 0, result.stderr
        assert "Usage" in result.stdout and result.stderr == ""


def test_text_preview_shows_the_utc_date(url: str) -> None:
    """Monday 09:00 in Sydney is Sunday 22:00 UTC: the text preview gives that UTC date."""
    pid = _patient(url)
    args = ["schedule", "preview", str(pid), "--from", "2027-03-08", "--days", "1"]
    result = checkin(url, *args)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("2027-03-08 09:00  2027-03-07 22:00Z  weekly"), result.stdout


def test_cancelling_a_cancelled_session_says_it_already_was(url: str) -> None:
    """The second cancel is refused in one line naming when it was cancelled, and changes
    nothing (the first cancellation time stays)."""
    pid = _patient(url, "ketamine-iv-6", "America/Los_Angeles")
    added = ok_json(
        checkin(url, "treatment", "add", str(pid), "--at", "2030-03-03T14:00", "--json")
    )
    sid = str(added["session"]["id"])
    assert checkin(url, "treatment", "cancel", sid).returncode == 0
    first = ok_json(checkin(url, "treatment", "list", str(pid), "--json"))[0]["cancelled_at"]
    again = checkin(url, "treatment", "cancel", sid)
    assert again.returncode == 2, again.stdout
    assert f"session {sid} was already cancelled" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1
    assert (
        ok_json(checkin(url, "treatment", "list", str(pid), "--json"))[0]["cancelled_at"] == first
    )


def test_report_for_a_patient_without_scores_says_so(url: str, tmp_path: Path) -> None:
    """The report is written, and the command says the patient has no scores yet."""
    pid = _patient(url)
    out = tmp_path / "p.html"
    result = checkin(url, "report", str(pid), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert out.exists() and f"patient {pid} has no valid scores yet" in result.stderr
    data = ok_json(checkin(url, "report", str(pid), "--out", str(out), "--json"))
    assert data["scores"] == 0


def test_one_problem_is_one_problem(url: str, tmp_path: Path) -> None:
    """`config check` with one problem says "1 problem"."""
    config = tmp_path / "config.toml"
    config.write_text('[server]\nport = "eighty"\n')
    result = checkin(url, "config", "check", config=config)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == "1 problem", result.stderr


def test_the_worker_says_whose_console_message_it_prints(url: str) -> None:
    """Two console patients asked at once: each printed message names its patient by id."""
    first, second = _patient(url, "weekly-phq9", "UTC"), _patient(url, "weekly-phq9", "UTC")
    for pid in (first, second):
        assert checkin(url, "ask", str(pid), "phq2", "--now").returncode == 0
    worker = Running(url, "worker")
    try:
        for pid in (first, second):
            line = worker.wait_for(f"[to patient {pid}]")
            assert "PHQ-2" in line or "check-in" in line.lower(), line
    finally:
        worker.stop()


def test_preview_notes_an_instrument_asked_within_its_recall_window(url: str) -> None:
    """A Los Angeles ketamine-iv-6 patient, infusions two days apart: the preview notes each
    PHQ-9 asked less than half its 14-day recall after the one before, in JSON and on
    stderr; the first PHQ-9 and the side-effect check are not noted."""
    pid = str(_patient(url, "ketamine-iv-6", "America/Los_Angeles"))
    for day in ("04", "06"):
        assert checkin(url, "treatment", "add", pid, "--at", f"2030-03-{day}T13:00").returncode == 0
    args = ["schedule", "preview", pid, "--from", "2030-03-04", "--days", "4"]
    rows = ok_json(checkin(url, *args, "--json"))
    noted = [(r["key"], len(r["recall_notes"])) for r in rows]
    assert noted == [
        ("before_session:1", 0),
        ("after_session:1", 1),
        ("before_session:2", 1),
        ("after_session:2", 1),
    ]
    assert "phq9 asks about the last 14 days but is asked 22h apart" in rows[2]["recall_notes"][0]
    text = checkin(url, *args)
    notes = [line for line in text.stderr.splitlines() if line.startswith("note: ")]
    assert len(notes) == 3 and "QIDS-SR16 (7 days)" in notes[0], text.stderr

"""`checkin treatment` and `checkin schedule` as an operator runs them (real processes)."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tests.test_cli_service import checkin, ok_json


@pytest.fixture
def url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'clinic.db'}"
    assert checkin(url, "db", "upgrade").returncode == 0
    return url


def _patient(url: str, protocol: str = "ketamine-iv-6", zone: str = "America/New_York") -> int:
    data = ok_json(
        checkin(
            url,
            "patient",
            "add",
            "--name",
            "P",
            "--channel",
            "console",
            "--timezone",
            zone,
            "--protocol",
            protocol,
            "--json",
        )
    )
    return int(data["id"])


def test_preview_json_gives_local_and_utc_times(url: str) -> None:
    """Local midnight of --from in the patient's zone; across the spring-forward change in
    New York (2027-03-14) the Monday 09:00 stays 09:00 local and moves in UTC."""
    pid = _patient(url, "weekly-phq9")
    rows = ok_json(
        checkin(
            url, "schedule", "preview", str(pid), "--from", "2027-03-01", "--days", "21", "--json"
        )
    )
    assert [(r["due_at_local"], r["due_at_utc"]) for r in rows] == [
        ("2027-03-01T09:00:00-05:00", "2027-03-01T14:00:00Z"),
        ("2027-03-08T09:00:00-05:00", "2027-03-08T14:00:00Z"),
        ("2027-03-15T09:00:00-04:00", "2027-03-15T13:00:00Z"),
    ]
    assert all(r["rule"] == "weekly" and r["instruments"] == ["phq9"] for r in rows)
    for row in rows:  # ISO 8601, both parse
        assert datetime.fromisoformat(row["due_at_local"]) == datetime.fromisoformat(
            row["due_at_utc"]
        )


def _local(days: int, hour: int) -> datetime:
    """A time `days` from today at `hour`:00 in New York (inside the planning horizon)."""
    zone = ZoneInfo("America/New_York")
    day = datetime.now(zone).date() + timedelta(days=days)
    return datetime.combine(day, time(hour), zone)


def _utc(at: datetime) -> str:
    return at.astimezone(UTC).isoformat()


def test_treatment_add_move_cancel_and_list(url: str) -> None:
    pid = _patient(url)
    # afternoons: every session-relative check-in (2 h before, 24 h after) lands at noon
    # or 14:00, more than the 2 h bundling window from the Monday 09:00 maintenance
    # PHQ-9, which would otherwise absorb it on whichever run puts it on a Monday
    first_at, second_at, moved_at = _local(3, 14), _local(2, 14), _local(5, 14)
    args = ["treatment", "add", str(pid), "--at", first_at.isoformat()[:16]]
    added = ok_json(checkin(url, *args, "--kind", "ketamine-iv", "--json"))
    assert added["session"]["number"] == 1
    assert added["session"]["at"] == _utc(first_at)  # a time without offset is local
    planned = sorted(c["due_at"] for c in added["planned_checkins"])
    assert _utc(first_at - timedelta(hours=2)) in planned
    assert _utc(first_at + timedelta(hours=24)) in planned
    second = ok_json(checkin(url, "treatment", "add", str(pid), "--at", _utc(second_at), "--json"))
    assert second["session"]["number"] == 1  # earlier, so it is now the first
    args = ["treatment", "move", str(second["session"]["id"]), "--at", moved_at.isoformat()]
    moved = ok_json(checkin(url, *args, "--json"))
    assert moved["session"]["number"] == 2 and moved["cancelled_checkins"] > 0
    assert _utc(moved_at - timedelta(hours=2)) in [c["due_at"] for c in moved["planned_checkins"]]
    sessions = ok_json(checkin(url, "treatment", "list", str(pid), "--json"))
    assert [(s["number"], s["at"]) for s in sessions] == [(1, _utc(first_at)), (2, _utc(moved_at))]
    cancelled = ok_json(checkin(url, "treatment", "cancel", str(added["session"]["id"]), "--json"))
    dues = [c["due_at"] for c in cancelled["planned_checkins"]]
    assert _utc(first_at - timedelta(hours=2)) not in dues
    assert _utc(moved_at - timedelta(hours=2)) in dues  # now session 1
    after = ok_json(checkin(url, "treatment", "list", str(pid), "--json"))
    assert [(s["number"], s["cancelled_at"] is not None) for s in after] == [(1, True), (1, False)]
    days = ok_json(checkin(url, "schedule", "preview", str(pid), "--days", "7", "--json"))
    keys = {r["key"]: r["due_at_utc"] for r in days}
    assert keys["before_session:1"] == _utc(moved_at - timedelta(hours=2)).replace("+00:00", "Z")


def test_assign_and_protocols(url: str) -> None:
    pid = _patient(url, "weekly-phq9")
    protocols = ok_json(checkin(url, "schedule", "protocols", "--json"))
    assert {p["name"] for p in protocols} == {"weekly-phq9", "ketamine-iv-6"}
    ketamine = next(p for p in protocols if p["name"] == "ketamine-iv-6")
    quiet = {r["name"]: r["quiet_hours"] for r in ketamine["rules"]}
    assert (quiet["before_session"], quiet["after_session"]) == ("earlier", "later")
    changed = ok_json(checkin(url, "schedule", "assign", str(pid), "ketamine-iv-6", "--json"))
    assert isinstance(changed["planned_checkins"], list)
    shown = ok_json(checkin(url, "patient", "show", str(pid), "--json"))
    assert shown["protocol"] == "ketamine-iv-6"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["treatment", "add", "1", "--at", "next tuesday"], "is not an ISO 8601 time"),
        (["treatment", "add", "99", "--at", "2027-01-01T10:00"], "no patient with id 99"),
        (["treatment", "move", "42", "--at", "2027-01-01T10:00"], "no treatment session"),
        (["treatment", "cancel", "42"], "treatment session"),
        (["schedule", "assign", "1", "nightly"], "no such protocol"),
        (["schedule", "preview", "1", "--from", "March"], "is not a date"),
        (
            ["patient", "add", "--name", "Q", "--channel", "console", "--protocol", "x"],
            "no protocol 'x'",
        ),
    ],
)
def test_mistakes_get_one_line(url: str, args: list[str], message: str) -> None:
    _patient(url)
    result = checkin(url, *args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_second_scheduler_on_one_sqlite_file_refuses_to_start(url: str) -> None:
    """SQLite has no row locks to share work: one scheduling process per file."""
    import subprocess
    import sys

    from tests.test_cli_service import ROOT, env_for

    first = subprocess.Popen(
        [sys.executable, "-m", "bot", "worker"],
        env=env_for(url),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert first.stdout is not None
        for line in first.stdout:
            if "worker ticking" in line:
                break
        second = checkin(url, "worker")
        assert second.returncode == 2
        assert "already scheduling" in second.stderr
    finally:
        first.terminate()
        first.communicate(timeout=20)  # reads the rest and closes the pipe
    assert first.returncode == 0


@pytest.mark.parametrize(
    ("typed", "stored", "said"),
    [
        ("2027-03-14T02:30", "2027-03-14T10:00:00+00:00", "taken as 03:00 PDT"),  # skipped
        ("2027-11-07T01:30", "2027-11-07T08:30:00+00:00", "taken as the first, 01:30 PDT"),
    ],
)
def test_treatment_at_a_local_time_the_clock_skips_or_repeats(
    url: str, typed: str, stored: str, said: str
) -> None:
    """`treatment add --at` reads a local time by the protocols' wall-clock rule (02:30 on
    the spring-forward day is 03:00, a repeated 01:30 its first showing) and says so on
    stderr and in --json's at_note."""
    pid = _patient(url, zone="America/Los_Angeles")
    result = checkin(url, "treatment", "add", str(pid), "--at", typed, "--json")
    assert result.returncode == 0, result.stderr
    added = ok_json(result)
    assert added["session"]["at"] == stored
    assert said in added["at_note"] and said in result.stderr
    plain = checkin(url, "treatment", "add", str(pid), "--at", "2027-07-01T10:00", "--json")
    assert ok_json(plain)["at_note"] is None and "note:" not in plain.stderr


def test_preview_puts_the_pre_session_phq9_before_a_morning_session_and_says_why(
    url: str,
) -> None:
    """`treatment add --at 2027-03-03T07:00` in Los Angeles: the PHQ-9 "2 h before" goes out
    at 19:30 the evening before (quiet hours 20:00-08:00), and the preview says why."""
    pid = _patient(url, zone="America/Los_Angeles")
    ok_json(checkin(url, "treatment", "add", str(pid), "--at", "2027-03-03T07:00", "--json"))
    args = ["schedule", "preview", str(pid), "--from", "2027-03-02", "--days", "2"]
    rows = ok_json(checkin(url, *args, "--json"))
    (pre,) = [r for r in rows if r["rule"] == "before_session"]
    assert (pre["due_at_local"], pre["expires_at_utc"], pre["status"]) == (
        "2027-03-02T19:30:00-08:00",
        "2027-03-03T06:30:00Z",  # 3 h later, well before the session (15:00Z)
        "planned",
    )
    assert "sent before they begin" in pre["note"]
    text = checkin(url, *args).stdout
    (line,) = [row for row in text.splitlines() if "before_session" in row]
    assert line.startswith("2027-03-02 19:30") and "sent before they begin" in text

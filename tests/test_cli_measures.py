"""Clinician-rated measures and the clinician's first Telegram link, run as an operator runs
them (real processes on a SQLite file): `measure madrs`, `measure bp`, `patient show`,
`clinician add --channel telegram`."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.test_cli_ops import (
    _redeem,
    add_clinician,
    add_patient,
    one_line_error,
    telegram_config,
    url,
)
from tests.test_cli_service import checkin, ok_json

__all__ = ["telegram_config", "url"]  # fixtures


def test_madrs_carries_its_session_and_the_series_outcome(url: str) -> None:
    """A baseline MADRS before the first session is session 0; the one a day after it is
    session 1 at 24 h, and at 12 (60 % down) is both a response and a remission. A session
    added afterwards changes neither: the place is fixed when the score is made."""
    patient, rater = add_patient(url), add_clinician(url)
    checkin(url, "treatment", "add", str(patient), "--at", "2026-03-02T10:00Z")
    base = ok_json(checkin(url, "measure", "madrs", str(patient), "--total", "30",
                           "--at", "2026-03-01T09:00Z", "--json"))  # fmt: skip
    assert (base["session_number"], base["hours_since_session"], base["band"]) == (
        0,
        None,
        "moderate",
    )
    later = ok_json(checkin(url, "measure", "madrs", str(patient), "--total", "12", "--at",
                            "2026-03-03T10:00Z", "--rater", str(rater), "--json"))  # fmt: skip
    assert (later["session_number"], later["hours_since_session"]) == (1, 24.0)
    assert (later["baseline"], later["improvement_pct"], later["rated_by"]) == (30, 60.0, rater)
    assert {"response", "remission"} <= set(later["statuses"])
    assert later["checkin_id"] is None
    checkin(url, "treatment", "add", str(patient), "--at", "2026-03-03T08:00Z")
    shown = ok_json(checkin(url, "patient", "show", str(patient), "--json"))
    places = [(s["instrument"], s["total"], s["session_number"], s["hours_since_session"])
              for s in shown["scores"]]  # fmt: skip
    assert places == [("madrs", 30, 0, None), ("madrs", 12, 1, 24.0)]
    text = checkin(url, "measure", "madrs", str(patient), "--total", "31").stdout
    assert text.startswith("score 3 recorded: madrs: 31 moderate (session 2 +")
    assert "baseline 30, 3 % worse: early_improvement" in text  # (the 12 came by session 2)


def test_blood_pressure_at_its_time_points(url: str) -> None:
    """A pre-dose reading before the session, then +40 min after it: each with its point
    and place; the rise over the pre-dose reading and an elevated pre-dose are flagged."""
    patient = add_patient(url)
    checkin(url, "treatment", "add", str(patient), "--at", "2026-03-02T10:00Z")
    pre = ok_json(checkin(url, "measure", "bp", str(patient), "--systolic", "142", "--diastolic",
                          "84", "--point", "pre", "--at", "2026-03-02T09:50Z", "--json"))  # fmt: skip
    assert (pre["time_point"], pre["systolic"], pre["diastolic"]) == ("pre", 142, 84)
    assert (pre["session_number"], pre["flags"]) == (0, ["bp_elevated_pre"])
    after = ok_json(checkin(url, "measure", "bp", str(patient), "--systolic", "185",
                            "--diastolic", "100", "--point", "40min", "--at",
                            "2026-03-02T10:40Z", "--json"))  # fmt: skip
    assert (after["session_number"], after["hours_since_session"]) == (1, 0.67)
    assert after["flags"] == ["bp_rise", "bp_severe"]
    shown = checkin(url, "patient", "show", str(patient)).stdout
    assert "blood_pressure: 185/100 mmHg at 40min (session 1 +0.67 h)" in shown


def test_measures_refuse_bad_input_in_one_line(url: str) -> None:
    """Out-of-range totals, unknown points, swapped pressures, unreadable or future times,
    unknown patients and raters: one line each, nothing stored."""
    patient = str(add_patient(url))
    madrs = ("measure", "madrs", patient, "--total")
    one_line_error(checkin(url, *madrs, "61"), "--total: 61 is not a MADRS total (0 to 60)")
    one_line_error(checkin(url, *madrs, "6", "--at", "soon"), "--at 'soon' is not an ISO 8601")
    one_line_error(
        checkin(url, *madrs, "6", "--at", "2999-01-01T00:00Z"), "2999-01-01T00:00Z is still to come"
    )
    one_line_error(checkin(url, *madrs, "6", "--rater", "99"), "no clinician with id 99")
    one_line_error(checkin(url, "measure", "madrs", "98", "--total", "6"), "no patient with id 98")
    bp = ("measure", "bp", patient, "--systolic", "80", "--diastolic")
    one_line_error(checkin(url, *bp, "120", "--point", "pre"), "--diastolic: must be below")
    one_line_error(
        checkin(url, *bp, "60", "--point", "1h"), "--point: '1h' is not one of pre, 40min, 2h"
    )
    assert ok_json(checkin(url, "patient", "show", patient, "--json"))["scores"] == []
    helped = checkin(url, "measure", "bp", "--help").stdout
    assert "--point" in helped and "pre-dose" in helped


def test_a_telegram_clinician_gets_their_link_when_added(url: str, telegram_config: Path) -> None:
    """`clinician add --channel telegram --json` prints a working single-use link, as
    `patient add` does; the text output shows it too."""
    added = ok_json(checkin(url, "clinician", "add", "--name", "Dr T", "--channel", "telegram",
                            "--json", config=telegram_config))  # fmt: skip
    assert added["enroll_link"] == f"https://t.me/checkin_test_bot?start={added['enroll_code']}"
    assert asyncio.run(_redeem(url, added["enroll_code"], "777")) is True
    text = checkin(url, "clinician", "add", "--name", "Dr U", "--channel", "telegram",
                   config=telegram_config).stdout  # fmt: skip
    assert "https://t.me/checkin_test_bot?start=" in text
    one_line_error(checkin(url, "clinician", "add", "--name", "Dr V", "--channel", "telegram"),
                   "telegram is not configured")  # fmt: skip
    assert [c["name"] for c in ok_json(checkin(url, "clinician", "list", "--json"))] == [
        "Dr T",
        "Dr U",
    ]  # type: ignore[index]

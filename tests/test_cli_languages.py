"""An operator is told, before anything is due, which protocol instruments a patient cannot
be asked in their language: `patient add`, `schedule assign` (a warning, and `no_wording`
in --json) and `schedule preview` (the rows marked). Real processes, a SQLite file."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_cli_service import checkin, ok_json

WARNING = "gad7 has no wording in 'es' and will not be asked"


@pytest.fixture
def url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'clinic.db'}"
    assert checkin(url, "db", "upgrade").returncode == 0
    return url


def add(url: str, language: str, *more: str) -> tuple[dict, str]:  # type: ignore[type-arg]
    result = checkin(
        url, "patient", "add", "--name", "P", "--channel", "console", "--language", language,
        *more, "--json",
    )  # fmt: skip
    return ok_json(result), result.stderr


def test_patient_add_names_what_will_not_be_asked(url: str) -> None:
    """Spanish on ketamine-iv-6 (PHQ-9 + GAD-7 baseline): GAD-7 named on stderr and in the
    JSON; PHQ-9 is Spanish now, so it is not named; English: nothing."""
    spanish, stderr = add(url, "es", "--protocol", "ketamine-iv-6")
    assert spanish["no_wording"] == ["gad7"]
    assert f"warning: patient {spanish['id']}: {WARNING}" in stderr
    english, stderr = add(url, "en", "--protocol", "ketamine-iv-6")
    assert english["no_wording"] == [] and "warning" not in stderr
    plain, _ = add(url, "es")
    assert "no_wording" not in plain  # no protocol, nothing to say


def test_schedule_assign_and_preview_mark_what_will_not_be_asked(url: str) -> None:
    """assign says which instruments; preview marks each row holding one."""
    patient, _ = add(url, "es")
    pid = str(patient["id"])
    weekly = checkin(url, "schedule", "assign", pid, "weekly-phq9", "--json")
    assert ok_json(weekly)["no_wording"] == [] and "warning" not in weekly.stderr
    series = checkin(url, "schedule", "assign", pid, "ketamine-iv-6", "--json")
    assert ok_json(series)["no_wording"] == ["gad7"]
    assert f"warning: patient {pid}: gad7 has no wording in the patient's language" in (
        series.stderr
    )

    rows = ok_json(checkin(url, "schedule", "preview", pid, "--json"))
    marked = [(r["instruments"], r["no_wording"]) for r in rows if "gad7" in r["instruments"]]
    assert marked and all(missing == ["gad7"] for _, missing in marked)
    assert all(r["no_wording"] == [] for r in rows if "gad7" not in r["instruments"])
    text = checkin(url, "schedule", "preview", pid).stdout
    lines = [line for line in text.splitlines() if "gad7" in line]
    assert lines and all(line.endswith("[NOT ASKED, no wording: gad7]") for line in lines)

"""`checkin export` run as an operator runs it, on a SQLite clinic seeded through Services."""

from __future__ import annotations

import asyncio
import csv
import json
from pathlib import Path

import pytest
from fhir.resources.R4B.bundle import Bundle

from bot.storage.database import Database
from tests.test_cli_service import checkin, ok_json
from tests.test_exports import seed


async def _seed(url: str) -> None:
    async with Database(url) as db:
        await seed(db)


@pytest.fixture
def clinic(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'clinic.db'}"
    assert checkin(url, "db", "upgrade").returncode == 0
    asyncio.run(_seed(url))
    return url


def test_export_csv_and_fhir_from_the_command_line(clinic: str, tmp_path: Path) -> None:
    """CSV and FHIR exports print their counts as JSON on stdout and leave an audit trail."""
    done = ok_json(
        checkin(clinic, "export", "--format", "csv", "--out", str(tmp_path / "csv"), "--json")
    )
    assert (done["answers"], done["scores"]) == (21, 3)
    with (tmp_path / "csv" / "answers.csv").open() as fh:
        assert len(list(csv.DictReader(fh))) == 21
    out = tmp_path / "one.json"
    done = ok_json(checkin(
        clinic, "export", "--format", "fhir", "--out", str(out), "--patient", "2",
        "--since", "2026-05-05", "--json",
    ))  # fmt: skip
    assert (done["questionnaire_responses"], done["observations"], done["patients"]) == (1, 2, 0)
    Bundle.model_validate(json.loads(out.read_text()))
    text = checkin(clinic, "export", "--format", "fhir", "--out", str(out), "--include-identifiers")
    assert text.returncode == 0 and "3 questionnaire responses" in text.stdout
    assert '"resourceType": "Patient"' in out.read_text()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--format", "csv", "--out", "x", "--include-identifiers"], "--include-identifiers is for --format fhir"),
        (["--format", "fhir", "--out", "x.json", "--since", "last week"], "--since 'last week' is not a date"),
        (["--format", "fhir", "--out", "x.json", "--patient", "99"], "no patient with id 99"),
        (["--format", "fhir", "--out", "missing/x.json"], "--out missing/x.json: the directory missing does not exist"),
    ],
)  # fmt: skip
def test_export_mistakes_get_one_line(clinic: str, args: list[str], message: str) -> None:
    """Each mistake exits 2 with one line naming it and how to fix it."""
    result = checkin(clinic, "export", *args)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().startswith(f"error: {message}"), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1

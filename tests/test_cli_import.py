"""`checkin patient import FILE.csv`, run as an operator runs it (real processes on a SQLite
file): every row checked first, errors by line with nothing written, idempotent by
external_id, Telegram rows with their links, progress for long files."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlmodel import select

from bot.storage.database import Database
from bot.storage.tables import PatientExternalId
from tests.standins.twilio import TwilioStandIn
from tests.test_cli_ops import _redeem, add_clinician, telegram_config, url
from tests.test_cli_service import checkin, ok_json

__all__ = ["telegram_config", "url"]  # fixtures


def _csv(tmp_path: Path, text: str) -> str:
    path = tmp_path / "patients.csv"
    path.write_text(text, encoding="utf-8")
    return str(path)


def _names(url: str) -> list[str]:
    return [p["name"] for p in ok_json(checkin(url, "patient", "list", "--json"))]  # type: ignore[index]


async def _hashes(url: str) -> list[str]:
    async with Database(url) as db, db.transaction() as session:
        return [r.external_id_hash for r in (await session.exec(select(PatientExternalId))).all()]


def test_import_enrols_once_per_external_id(url: str, tmp_path: Path) -> None:
    """A dry run enrols no one; the import enrols every row with its settings; importing the
    file again (one row added) enrols only the new row. The external id is stored hashed."""
    doctor = add_clinician(url)
    rows = (f"name,channel,timezone,language,clinician,external_id\n"
            f"P-A,console,Europe/Madrid,es,{doctor},MRN-001\n\"P-B\",console,,,,MRN-002\n")  # fmt: skip
    path = _csv(tmp_path, rows)
    dry = ok_json(checkin(url, "patient", "import", path, "--dry-run", "--json"))
    assert (dry["dry_run"], dry["created"], dry["existing"], _names(url)) == (True, 2, 0, [])
    done = ok_json(checkin(url, "patient", "import", path, "--json"))
    assert [(r["line"], r["external_id"], r["existing"]) for r in done["rows"]] == [
        (2, "MRN-001", False), (3, "MRN-002", False)]  # fmt: skip
    shown = ok_json(checkin(url, "patient", "show", str(done["rows"][0]["id"]), "--json"))
    assert (shown["timezone"], shown["language"], shown["clinician_id"]) == (
        "Europe/Madrid",
        "es",
        doctor,
    )
    again = _csv(tmp_path, rows + "P-C,console,,,,MRN-003\n")
    second = ok_json(checkin(url, "patient", "import", again, "--json"))
    assert (second["created"], second["existing"]) == (1, 2)
    assert second["rows"][1]["id"] == done["rows"][1]["id"]
    assert _names(url) == ["P-A", "P-B", "P-C"]
    hashes = asyncio.run(_hashes(url))
    assert len(hashes) == 3 and not any("MRN" in h for h in hashes)
    text = checkin(url, "patient", "import", again).stdout
    assert text.strip() == "enrolled 0 patient(s); 3 imported before, left alone"


def test_one_bad_row_enrols_no_one(url: str, tmp_path: Path) -> None:
    """Every problem is named by its line, on stderr and in --json; nothing is written."""
    path = _csv(tmp_path, "name,channel,timezone,language,external_id\n"
                "Good,console,,,X1\n,console,,,X2\nBad,fax,Mars/Base,de,X1\n")  # fmt: skip
    result = checkin(url, "patient", "import", path, "--json")
    assert result.returncode == 2
    assert ok_json_errors(result.stdout) == [
        (3, "name is empty"),
        (4, "channel 'fax' is not one of telegram, sms, console, whatsapp"),
        (4, "timezone 'Mars/Base' is not an IANA time zone"),
        (4, "language 'de' is not one of en, es"),
        (4, "external_id repeats line 2"),
    ]
    lines = result.stderr.strip().splitlines()
    assert lines[0] == "error: line 3: name is empty"
    assert lines[-1] == "error: 5 problem(s) in the file; nothing was imported"
    assert _names(url) == []
    header = checkin(url, "patient", "import", _csv(tmp_path, "name,chanel\nA,console\n"))
    assert "error: line 1: column 'channel' is missing" in header.stderr


def ok_json_errors(stdout: str) -> list[tuple[int, str]]:
    import json

    return [(e["line"], e["problem"]) for e in json.loads(stdout)["errors"]]


def test_telegram_rows_get_links_and_long_files_show_progress(
    url: str, tmp_path: Path, telegram_config: Path
) -> None:
    """A Telegram row gets a working single-use link in the output; a 60-row file counts its
    rows on stderr, never on stdout (which stays one JSON document)."""
    rows = "name,channel,external_id\n" + "".join(f"P{n},console,E{n}\n" for n in range(59))
    rows += "T,telegram,E-T\n"
    result = checkin(
        url, "patient", "import", _csv(tmp_path, rows), "--json", config=telegram_config
    )
    data = ok_json(result)
    assert data["created"] == 60 and "rows 60/60" in result.stderr
    (link,) = [r for r in data["rows"] if "enroll_code" in r]
    assert link["line"] == 61
    assert asyncio.run(_redeem(url, link["enroll_code"], "4242")) is True


def test_erasing_a_patient_forgets_their_external_id(url: str, tmp_path: Path) -> None:
    """`patient delete` removes the hashed external id with the rest of the identifiers."""
    path = _csv(tmp_path, "name,channel,external_id\nP-E,console,MRN-9\nP-F,console,MRN-8\n")
    done = ok_json(checkin(url, "patient", "import", path, "--json"))
    erased = checkin(url, "patient", "delete", str(done["rows"][0]["id"]), "--yes")
    assert erased.returncode == 0, erased.stderr
    assert len(asyncio.run(_hashes(url))) == 1


def test_sms_rows_are_invited_and_bad_numbers_refused_unechoed(url: str, tmp_path: Path) -> None:
    """Without [sms] an SMS row is refused; with it, a national number becomes E.164 and the
    patient is invited; a bad number is refused by line without repeating the number."""
    rows = "name,channel,phone,external_id\nS-1,sms,(212) 555-0123,S1\n"
    path = _csv(tmp_path, rows)
    refused = checkin(url, "patient", "import", path)
    assert "error: line 2: channel sms: SMS is not configured" in refused.stderr
    fake = TwilioStandIn()
    config = tmp_path / "sms.toml"
    config.write_text(f'[server]\npublic_url = "https://clinic.example"\n[sms]\n'
                      f'account_sid = "{fake.account_sid}"\nauth_token = "{fake.auth_token}"\n'
                      'from_number = "+15005550006"\n')  # fmt: skip
    bad = checkin(url, "patient", "import", _csv(tmp_path, rows + "S-2,sms,12,S2\n"), config=config)
    assert bad.stderr.splitlines()[0] == "error: line 3: phone is not a valid phone number"
    done = ok_json(checkin(url, "patient", "import", _csv(tmp_path, rows), "--json", config=config))
    assert done["rows"][0]["invited"] is True
    listed = ok_json(checkin(url, "patient", "list", "--status", "invited", "--json"))
    assert [p["name"] for p in listed] == ["S-1"]  # type: ignore[index]

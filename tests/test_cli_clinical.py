"""The clinical commands of the CLI: instruments list / show and score, a public interface."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from bot.cli import app
from tests.domain.conftest import fixture_wording

runner = CliRunner()


def checkin(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the real command in a child process, as an operator would."""
    return subprocess.run(
        [sys.executable, "-m", "bot", *args], capture_output=True, text=True, check=False
    )


def test_score_json_public_fields() -> None:
    """--json carries instrument, total, band, valid, prorated and flags."""
    result = runner.invoke(app, ["score", "phq9", "1,2,0,1,1,3,0,1,2", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert {k: data[k] for k in ("instrument", "total", "band", "valid", "prorated", "flags")} == {
        "instrument": "phq9",
        "total": 11,
        "band": "moderate",
        "valid": True,
        "prorated": False,
        "flags": ["suicidality"],
    }


def test_score_empty_field_is_missing_and_prorated() -> None:
    """An empty field is a missing answer; two missing PHQ-9 items are prorated."""
    result = runner.invoke(app, ["score", "phq9", "1,1,,1,1,,1,1,1", "--json"])
    data = json.loads(result.stdout)
    assert (data["total"], data["prorated"], data["missing"]) == (9, True, ["phq9.q3", "phq9.q6"])


def test_score_invalid_total_is_null() -> None:
    """Without item 9 the total is null, valid false, and the flag says why."""
    data = json.loads(runner.invoke(app, ["score", "phq9", "0,0,0,0,0,0,0,0,", "--json"]).stdout)
    assert (data["total"], data["valid"], data["flags"]) == (None, False, ["safety_item_missing"])


def test_score_accepts_the_unscored_tenth_item() -> None:
    """PHQ-9 takes 9 values, or 10 with the difficulty item, which never changes the total."""
    nine = json.loads(runner.invoke(app, ["score", "phq9", "3,3,3,3,3,3,3,3,3", "--json"]).stdout)
    ten = json.loads(runner.invoke(app, ["score", "phq9", "3,3,3,3,3,3,3,3,3,3", "--json"]).stdout)
    assert nine["total"] == ten["total"] == 27


def test_score_text_output() -> None:
    """Without --json the result is one readable line."""
    result = runner.invoke(app, ["score", "gad7", "3,3,3,3,3,0,0"])
    assert result.stdout.strip() == "GAD-7 total 15 of 21: Severe"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["score", "phq9", "1,2,3"], "error: phq9 takes 9 to 10 comma-separated values in item order; got 3"),
        (["score", "phq9", "1,2,3,4,0,0,0,0,0"], "error: phq9.q4: '4' is not a valid answer (0, 1, 2, 3)"),
        (["score", "phq9", "1,x,0,0,0,0,0,0,0"], "error: phq9.q2: 'x' is not a valid answer (0, 1, 2, 3)"),
        (["score", "phq9", "back,0,0,0,0,0,0,0,0"], "error: phq9.q1: 'back' is not a valid answer"),
        (["score", "phq9", "a,1,1,1,1,1,1,1,1"], "error: phq9.q1: 'a' is not a valid answer"),
        (["score", "phq9", "several days,1,1,1,1,1,1,1,1"], "error: phq9.q1: 'several days' is not a valid answer"),
        (["score", "bdi", "1"], "error: unknown instrument 'bdi'; known: gad7, madrs_s, phq2, phq9, qids_sr16, side_effects"),
        (["score", "qids_sr16", "1"], "error: qids_sr16.toml: wording: qids_sr16 is a licensed instrument"),
        (["--config", "/nonexistent/checkin.toml", "instruments", "list"], "error: /nonexistent/checkin.toml: does not exist"),
    ],
)  # fmt: skip
def test_bad_input_exits_2_with_one_line(args: list[str], message: str) -> None:
    """Bad input exits with status 2 and one line on stderr naming the problem, no traceback."""
    result = checkin(*args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), result.stderr
    assert result.stdout == ""


def test_instruments_list_json() -> None:
    """The listing names every instrument and marks the licensed ones as needing wording."""
    rows = json.loads(runner.invoke(app, ["instruments", "list", "--json"]).stdout)
    status = {r["key"]: r["status"] for r in rows}
    assert status == {
        "gad7": "available", "phq2": "available", "phq9": "available", "side_effects": "available",
        "madrs_s": "needs wording", "qids_sr16": "needs wording",
    }  # fmt: skip


def test_instruments_show() -> None:
    """show prints the items with their options and marks the safety item."""
    result = runner.invoke(app, ["instruments", "show", "phq9"])
    assert "9. phq9.q9  [safety]" in result.stdout
    assert "3 = Nearly every day" in result.stdout
    detail = json.loads(runner.invoke(app, ["instruments", "show", "phq9", "--json"]).stdout)
    assert detail["items"][8]["safety"] is True and detail["loinc_total"] == "44261-6"


def test_config_adds_an_instruments_directory(tmp_path: Path) -> None:
    """[instruments] dirs in the configuration makes a licensed instrument usable."""
    (tmp_path / "licensed").mkdir()
    (tmp_path / "licensed" / "qids_sr16.wording.toml").write_text(fixture_wording("qids_sr16"))
    config = tmp_path / "clinic.toml"
    config.write_text('[instruments]\ndirs = ["licensed"]\n')
    answers = ",".join(["1"] * 16)
    result = runner.invoke(app, ["--config", str(config), "score", "qids_sr16", answers, "--json"])
    assert json.loads(result.stdout)["total"] == 9


def test_config_errors_name_the_key(tmp_path: Path) -> None:
    """A wrong type in the configuration is reported with the file and key."""
    config = tmp_path / "clinic.toml"
    config.write_text('[instruments]\ndirs = "licensed"\n')
    result = checkin("--config", str(config), "instruments", "list")
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {config}: instruments.dirs: must be a list of paths"


def _command_paths(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every command and group under `command`, as the words an operator types (Typer
    vendors its own click, so a group is found by its `commands`, not by its class)."""
    yield path
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        yield from _command_paths(sub, (*path, name))


def test_every_command_has_help() -> None:
    """Every command and group in the tree (walked, not listed by hand) has help text of its
    own and answers --help; each option and argument is explained too."""
    root = typer.main.get_command(app)
    paths = list(_command_paths(root))
    assert len(paths) > 40 and ("report",) in paths and ("checkins", "cancel") in paths
    for path in paths:
        command = root
        for name in path:
            command = command.commands[name]
        assert (command.help or "").strip(), f"`checkin {' '.join(path)}` has no help text"
        for param in command.params:
            if param.name not in ("help", "ctx"):
                assert getattr(param, "help", None), f"{' '.join(path)} {param.name}: no help"
        result = runner.invoke(app, [*path, "--help"])
        assert result.exit_code == 0 and "Usage" in result.stdout, (path, result.stdout)


def test_config_example_is_valid_and_complete() -> None:
    """config.example.toml loads, and sets every section the settings know."""
    from bot.config import SECTIONS, load_settings

    example = Path(__file__).resolve().parent.parent / "config.example.toml"
    settings = load_settings(example)
    assert settings.clinic.name == "Lakeside Mood Clinic"
    assert settings.database_url.endswith("/checkin.db") and settings.server.port == 8080
    text = example.read_text()
    for section in SECTIONS:
        shown = f"[{section}]" in text or f"[{section}." in text
        assert shown, f"config.example.toml does not show [{section}]"

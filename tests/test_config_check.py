"""`checkin config check`: a configuration seeded with many problems reports all of them,
each with its file and key; a clean one prints one OK line. Run as the operator runs it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from bot.app.operator.config_check import check
from bot.rendering.renderer import TEMPLATES_DIR
from tests.test_cli_service import checkin

BROKEN = """
[clinic]
quiet_hours_start_local = "25:00"
name = 42

[scheduler]
tick_s = -1

[server]
port = "eighty"

[bogus]
x = 1

[instruments]
dirs = ["extra"]

[alerts.rules.severe_score]
instruments.phq9 = { urgent = "high" }

[alerts.rules.nonsense]
enabled = true

[protocols.ketamine]
[protocols.ketamine.rules.baseline]
instruments = ["phq9", "bdi2"]
from_enrollment = "0h"
[protocols.ketamine.rules.weekly]
instruments = ["qids_sr16"]
weekdays = ["mon"]
at = "09:00"
[protocols.ketamine.rules.later]
instruments = ["gad7"]
from_enrollment = "2 days"
"""

EXPECTED = [  # (file suffix, key, words in the problem)
    ("config.toml", "clinic.quiet_hours_start_local", "local time"),
    ("config.toml", "clinic.name", "must be text"),
    ("config.toml", "scheduler.tick_s", "positive number"),
    ("config.toml", "server.port", "integer"),
    ("config.toml", "bogus", "unknown section"),
    ("config.toml", "alerts.rules.severe_score.instruments.phq9.urgent", ""),
    ("config.toml", "alerts.rules.nonsense", "unknown rule"),
    ("config.toml", "protocols.ketamine.rules.baseline.instruments", "bdi2"),
    ("config.toml", "protocols.ketamine.rules.weekly.instruments", "qids_sr16 is unavailable"),
    ("config.toml", "protocols.ketamine.rules.later.from_enrollment", "duration"),
    ("broken.toml", "", "not valid TOML"),
    ("en/sms/ask.j2", "line", ""),
    ("en/telegram/help.j2", "Help (telegram, en)", "'no_such_value' is undefined"),
    ("es/console/paused.j2", "", "is missing"),
]


def seeded(tmp_path: Path) -> tuple[Path, Path]:
    """A config with problems in every part, and a template copy broken three ways."""
    (tmp_path / "extra").mkdir()
    (tmp_path / "extra" / "broken.toml").write_text("key = 'x\n")
    path = tmp_path / "config.toml"
    path.write_text(BROKEN)
    templates = tmp_path / "templates"
    shutil.copytree(TEMPLATES_DIR, templates)
    ask = templates / "en" / "sms" / "ask.j2"
    ask.write_text("{% if item_text %}\n{{ item_text }}\n")  # never closed
    help_ = templates / "en" / "telegram" / "help.j2"
    help_.write_text(help_.read_text() + "{{ no_such_value }}\n")
    (templates / "es" / "console" / "paused.j2").unlink()
    return path, templates


def test_every_seeded_problem_is_reported_with_its_file_and_key(tmp_path: Path) -> None:
    """Fourteen problems in five places: all reported, none twice, nothing else."""
    path, templates = seeded(tmp_path)
    report = check(path, templates)
    found = [(p.file, p.key, p.problem) for p in report.problems]
    for suffix, key, words in EXPECTED:
        assert any(
            f.endswith(suffix) and k.startswith(key) and words in problem for f, k, problem in found
        ), (suffix, key, words, found)
    assert len(found) == len(set(found)) == len(EXPECTED), found


def test_the_command_lists_every_problem_and_exits_1(tmp_path: Path) -> None:
    """Text: one line per problem; --json: a list of {file, key, problem}; exit status 1."""
    path, templates = seeded(tmp_path)
    url = f"sqlite:///{tmp_path / 'unused.db'}"
    text = checkin(url, "config", "check", "--templates", str(templates), config=path)
    assert text.returncode == 1, text.stderr
    assert len(text.stdout.strip().splitlines()) == len(EXPECTED)
    assert f"{path}: scheduler.tick_s: must be a positive number" in text.stdout
    assert f"{len(EXPECTED)} problems" in text.stderr
    as_json = checkin(url, "config", "check", "--templates", str(templates), "--json", config=path)
    assert as_json.returncode == 1
    problems = json.loads(as_json.stdout)["problems"]
    assert len(problems) == len(EXPECTED) and set(problems[0]) == {"file", "key", "problem"}


def test_the_example_configuration_is_clean(tmp_path: Path) -> None:
    """config.example.toml and the shipped templates: exit 0, one OK line, an empty JSON list."""
    example = Path(__file__).resolve().parent.parent / "config.example.toml"
    url = f"sqlite:///{tmp_path / 'unused.db'}"
    text = checkin(url, "config", "check", config=example)
    assert text.returncode == 0, text.stdout + text.stderr
    assert text.stdout.startswith("OK: configuration, ") and len(text.stdout.splitlines()) == 1
    as_json = checkin(url, "config", "check", "--json", config=example)
    assert as_json.returncode == 0 and json.loads(as_json.stdout)["problems"] == []


def test_a_wording_file_adding_a_language_is_checked(tmp_path: Path) -> None:
    """The clinic's gad7.wording.toml: a complete one is clean (GAD-7 is Spanish then); one
    missing an item, with an unknown key or with wrong option values is reported, named."""
    from tests.domain.test_languages import gad7_spanish

    (tmp_path / "clinic").mkdir()
    wording = tmp_path / "clinic" / "gad7.wording.toml"
    path = tmp_path / "config.toml"
    path.write_text('[instruments]\ndirs = ["clinic"]\n')
    wording.write_text(gad7_spanish(), encoding="utf-8")
    assert check(path).problems == []
    for text, key, words in [
        (gad7_spanish(skip_item="gad7.q5"), "es", "no 'es' text for gad7.q5 text"),
        (gad7_spanish(extra='stem = { es = "x" }'), "stem", "unknown key"),
        (gad7_spanish(values=(0, 1, 2)), "option_sets.frequency", "values must be exactly"),
    ]:
        wording.write_text(text, encoding="utf-8")
        found = [(p.file, p.key, p.problem) for p in check(path).problems]
        assert len(found) == 1 and found[0][:2] == ("gad7.wording.toml", key), found
        assert words in found[0][2]


def test_quiet_hours_starting_when_they_end_are_a_warning(tmp_path: Path) -> None:
    """Equal start and end load (quiet hours off) but are warned about, naming
    quiet_hours = "none", which says it explicitly and is not warned about."""
    path = tmp_path / "config.toml"
    path.write_text(
        '[clinic]\nquiet_hours_start_local = "22:00"\nquiet_hours_end_local = "22:00"\n'
    )
    report = check(path)
    assert report.problems == []
    [warning] = report.warnings
    assert warning.key == "clinic.quiet_hours_start_local" and 'quiet_hours = "none"' in (
        warning.problem
    )
    path.write_text('[clinic]\nquiet_hours = "none"\n')
    assert check(path).problems == [] and check(path).warnings == []
    from bot.config import load_settings

    clinic = load_settings(path).clinic
    assert clinic.quiet_hours_start_local == clinic.quiet_hours_end_local
    path.write_text('[clinic]\nquiet_hours = "none"\nquiet_hours_end_local = "08:00"\n')
    assert [p.key for p in check(path).problems] == ["clinic.quiet_hours_end_local"]


def test_the_same_rule_twice_is_a_warning(tmp_path: Path) -> None:
    """Two rules with the same instruments and timing under two names: a warning naming
    both, text and JSON, and the exit status stays 0."""
    path = tmp_path / "config.toml"
    path.write_text(
        "[protocols.weekly.rules.monday]\n"
        'instruments = ["phq9", "gad7"]\nweekdays = ["mon"]\nat = "09:00"\n'
        "[protocols.weekly.rules.again]\n"
        'instruments = ["gad7", "phq9"]\nweekdays = ["mon"]\nat = "09:00"\nexpires_after = "2d"\n'
        "[protocols.weekly.rules.later]\n"
        'instruments = ["phq9", "gad7"]\nweekdays = ["mon"]\nat = "10:00"\n'
    )
    report = check(path)
    assert report.problems == []
    [warning] = report.warnings
    assert warning.key == "protocols.weekly.rules.again"
    assert "protocols.weekly.rules.monday" in warning.problem
    url = f"sqlite:///{tmp_path / 'unused.db'}"
    text = checkin(url, "config", "check", config=path)
    assert text.returncode == 0 and "warning: " in text.stderr, text.stderr
    data = json.loads(checkin(url, "config", "check", "--json", config=path).stdout)
    assert data["problems"] == [] and data["warnings"][0]["key"] == warning.key


def test_an_instrument_asked_within_its_recall_window_is_a_warning(tmp_path: Path) -> None:
    """The example ketamine-iv-6 asks the PHQ-9 26 h apart around each infusion: warned,
    naming QIDS-SR16's wording file; once that wording is supplied, QIDS-SR16 is named as
    configured. The exit status stays 0."""
    from tests.domain.conftest import fixture_wording

    example = Path(__file__).resolve().parent.parent / "config.example.toml"
    [warning] = check(example).warnings
    assert warning.key == "protocols.ketamine-iv-6.rules.before_session"
    assert "phq9 asks about the last 14 days but is asked 1d2h apart" in warning.problem
    assert "qids_sr16.wording.toml" in warning.problem
    (tmp_path / "clinic").mkdir()
    (tmp_path / "clinic" / "qids_sr16.wording.toml").write_text(fixture_wording("qids_sr16"))
    path = tmp_path / "config.toml"
    text = example.read_text().replace("dirs = []", 'dirs = ["clinic"]')
    path.write_text(text)
    [warning] = check(path).warnings
    assert "shorter-recall instruments configured: QIDS-SR16 (7 days)" in warning.problem

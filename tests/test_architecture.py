"""The import rules (tests/architecture.py): the real tree keeps them, and each rule catches
a violation planted in a tiny fake tree, without reporting what it must allow."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.architecture import MAX_LINES, check, main

ROOT = Path(__file__).resolve().parent.parent


def tree(root: Path, files: dict[str, str]) -> Path:
    """Write ``files`` (path -> source) under ``root``, plus an empty ``__init__.py`` in
    every folder that has none, so each folder is a package."""
    (root / "bot").mkdir()
    for name, source in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source, encoding="utf-8")
    for folder in {(root / name).parent for name in files} | {root / "bot"}:
        for package in (folder, *folder.parents):
            if package == root:
                break
            (package / "__init__.py").touch()
    return root


def report(root: Path, files: dict[str, str]) -> list[str]:
    """The checker's lines for a fake tree of ``files``."""
    return [str(violation) for violation in check(tree(root, files))]


# (a) the real tree


def test_the_real_tree_keeps_the_rules() -> None:
    """bot/ and scheduler/ as they are: no circle, no layer breach, no private name, no
    unplaced or oversized module."""
    violations = check(ROOT)
    assert violations == [], "\n" + "\n".join(map(str, violations))


# (b) planted violations


def test_a_two_module_circle(tmp_path: Path) -> None:
    """Two modules importing each other are one circle, reported once."""
    files = {"bot/app/a.py": "from bot.app import b\n", "bot/app/b.py": "import bot.app.a\n"}
    assert report(tmp_path, files) == [
        "bot/app/a.py:1: circle: bot.app.a -> bot.app.b -> bot.app.a"
    ]


def test_a_three_module_circle(tmp_path: Path) -> None:
    """A circle through three modules (one link a relative import) is reported once, whole."""
    files = {
        "bot/app/a.py": "import json\n\nfrom bot.app import b\n",
        "bot/app/b.py": "from bot.app.c import run\n",
        "bot/app/c.py": "from . import a\n\nrun = a\n",
    }
    assert report(tmp_path, files) == [
        "bot/app/a.py:3: circle: bot.app.a -> bot.app.b -> bot.app.c -> bot.app.a"
    ]


def test_a_circle_through_a_package_init(tmp_path: Path) -> None:
    """Importing ``bot.app.ports`` runs ``bot/app/__init__.py`` first, so that is a link."""
    files = {
        "bot/app/__init__.py": "from bot.app.inbound import handle\n",
        "bot/app/inbound.py": "import bot.channels.telegram\n\nhandle = 1\n",
        "bot/app/ports.py": "",
        "bot/channels/telegram.py": "from bot.app.ports import Channel\n",
    }
    assert report(tmp_path, files) == [
        "bot/app/__init__.py:1: circle: bot.app -> bot.app.inbound -> bot.channels.telegram"
        " -> bot.app",
        "bot/app/inbound.py:1: layer: bot.app must not import bot.channels"
        " (imports bot.channels.telegram)",
    ]


def test_a_domain_module_importing_a_third_party_package(tmp_path: Path) -> None:
    """The domain imports only the standard library: ``import sqlmodel`` is a breach."""
    files = {"bot/domain/model.py": "import json\nimport sqlmodel\n"}
    assert report(tmp_path, files) == [
        "bot/domain/model.py:2: layer: bot.domain imports only the standard library, not sqlmodel"
    ]


def test_a_domain_module_importing_storage(tmp_path: Path) -> None:
    """The domain imports nothing else of bot: ``bot.storage`` is a breach."""
    files = {"bot/domain/model.py": "from bot.storage import tables\n", "bot/storage/tables.py": ""}
    assert report(tmp_path, files) == [
        "bot/domain/model.py:1: layer: bot.domain must not import bot.storage"
        " (imports bot.storage.tables)"
    ]


def test_a_relative_import_is_resolved_before_the_rules(tmp_path: Path) -> None:
    """``from ..storage import tables`` in the domain is the same breach as the absolute one."""
    files = {"bot/domain/model.py": "from ..storage import tables\n", "bot/storage/tables.py": ""}
    assert report(tmp_path, files) == [
        "bot/domain/model.py:1: layer: bot.domain must not import bot.storage"
        " (imports bot.storage.tables)"
    ]


def test_a_command_importing_storage(tmp_path: Path) -> None:
    """An entrypoint calls use cases; importing ``bot.storage.tables`` is a breach."""
    files = {
        "bot/commands/records.py": "from bot.storage.tables import Patient\n",
        "bot/storage/tables.py": "Patient = object\n",
    }
    assert report(tmp_path, files) == [
        "bot/commands/records.py:1: layer: bot.commands must not import bot.storage"
        " (imports bot.storage.tables)"
    ]


@pytest.mark.parametrize(
    ("entrypoint", "layer"),
    [("bot/web/sms.py", "bot.web"), ("scheduler/loop.py", "scheduler")],
)
def test_a_webhook_or_the_tick_importing_storage(
    tmp_path: Path, entrypoint: str, layer: str
) -> None:
    """The webhooks and the tick are entrypoints too: they reach storage through use cases."""
    files = {
        entrypoint: "from bot.storage.repository import Repository\n",
        "bot/storage/repository.py": "Repository = object\n",
    }
    assert report(tmp_path, files) == [
        f"{entrypoint}:1: layer: {layer} must not import bot.storage"
        " (imports bot.storage.repository)"
    ]


def test_a_use_case_importing_a_channel(tmp_path: Path) -> None:
    """Use cases never name a concrete channel: ``bot.channels.telegram`` is a breach."""
    files = {
        "bot/app/inbound.py": "from bot.channels.telegram import TelegramChannel\n",
        "bot/channels/telegram.py": "TelegramChannel = object\n",
    }
    assert report(tmp_path, files) == [
        "bot/app/inbound.py:1: layer: bot.app must not import bot.channels"
        " (imports bot.channels.telegram)"
    ]


def test_a_channel_importing_a_command(tmp_path: Path) -> None:
    """Nothing below the entrypoints imports them: a channel importing a command is a breach."""
    files = {
        "bot/channels/sms.py": "from bot.commands import common\n",
        "bot/commands/common.py": "",
    }
    assert report(tmp_path, files) == [
        "bot/channels/sms.py:1: layer: bot.channels must not import bot.commands"
        " (imports bot.commands.common)"
    ]


def test_a_lazy_import_counts(tmp_path: Path) -> None:
    """An import inside a function runs when it is called, so it is held to the rules."""
    files = {
        "bot/rendering/chart.py": "def draw():\n    from bot.storage import tables\n    return tables\n",
        "bot/storage/tables.py": "",
    }
    assert report(tmp_path, files) == [
        "bot/rendering/chart.py:2: layer: bot.rendering must not import bot.storage"
        " (imports bot.storage.tables, inside a function)"
    ]


def test_importing_another_modules_private_name(tmp_path: Path) -> None:
    """``from bot.app.services import _update_checkin`` in another module is reported."""
    files = {
        "bot/app/services.py": "def _update_checkin():\n    pass\n",
        "bot/app/starting.py": "from bot.app.services import _update_checkin\n",
    }
    assert report(tmp_path, files) == [
        "bot/app/starting.py:1: private: imports bot.app.services._update_checkin,"
        " private to bot.app.services"
    ]


def test_reading_another_modules_private_name(tmp_path: Path) -> None:
    """``config._with_environment`` through ``from bot import config`` is reported too."""
    files = {
        "bot/config.py": "def _with_environment():\n    pass\n",
        "bot/app/check.py": "from bot import config\n\nconfig._with_environment()\n",
    }
    assert report(tmp_path, files) == [
        "bot/app/check.py:3: private: uses bot.config._with_environment, private to bot.config"
    ]


def test_an_unplaced_top_level_module(tmp_path: Path) -> None:
    """A new module of bot that the layer table does not name must be placed deliberately."""
    assert report(tmp_path, {"bot/utils.py": ""}) == [
        "bot/utils.py:1: unplaced: bot.utils is in no layer: add it to LAYERS"
    ]


def test_a_module_over_the_line_limit(tmp_path: Path) -> None:
    """A module of 401 lines is one line too long."""
    files = {"bot/domain/big.py": "x = 1\n" * (MAX_LINES + 1)}
    assert report(tmp_path, files) == [
        "bot/domain/big.py:401: size: 401 lines, over the 400 allowed"
    ]


def test_nine_modules_directly_in_bot(tmp_path: Path) -> None:
    """Nine .py files directly in bot/ are one too many (the three new ones also unplaced)."""
    names = ("__main__", "bootstrap", "cli", "config", "logs", "a", "b", "c")
    lines = report(tmp_path, {f"bot/{name}.py": "" for name in names})
    assert lines == [
        *(
            f"bot/{name}.py:1: unplaced: bot.{name} is in no layer: add it to LAYERS"
            for name in "abc"
        ),
        "bot/: size: 9 modules directly in bot/, over the 8 allowed (__init__.py, __main__.py,"
        " a.py, b.py, bootstrap.py, c.py, cli.py, config.py, logs.py)",
    ]


# (c) what must not be reported


def test_imports_under_type_checking_are_left_out(tmp_path: Path) -> None:
    """Imports under ``if TYPE_CHECKING:`` never run: they make no circle and no breach."""
    guarded = "from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n    {}\n"
    files = {
        "bot/app/alerting.py": "from bot.app import desk\n",
        "bot/app/desk.py": guarded.format("from bot.app.alerting import Alerting"),
        "bot/domain/model.py": guarded.format("import sqlmodel\n    from bot.storage import x"),
        "bot/storage/x.py": "",
    }
    assert report(tmp_path, files) == []


def test_the_domain_importing_itself_and_the_standard_library(tmp_path: Path) -> None:
    """A domain module may import ``bot.domain.*`` and the standard library."""
    files = {
        "bot/domain/scoring.py": (
            "from __future__ import annotations\n\nimport json\nfrom datetime import UTC\n\n"
            "from bot.domain import errors\nfrom bot.domain.instruments import Instrument\n"
        ),
        "bot/domain/errors.py": "",
        "bot/domain/instruments.py": "Instrument = object\n",
    }
    assert report(tmp_path, files) == []


def test_relative_imports_within_a_package(tmp_path: Path) -> None:
    """``from . import ports`` and ``from .ports import Clock`` inside bot.app are fine."""
    files = {
        "bot/app/__init__.py": "from .ports import Clock\n",
        "bot/app/inbound.py": "from . import ports\nfrom .ports import Clock\n",
        "bot/app/ports.py": "Clock = object\n",
    }
    assert report(tmp_path, files) == []


def test_dunder_names_and_own_private_names(tmp_path: Path) -> None:
    """A dunder is not private, and a module may use its own private names."""
    files = {
        "bot/app/a.py": "__version__ = '1'\n_cache = {}\n",
        "bot/app/b.py": "from bot.app.a import __version__\n",
    }
    assert report(tmp_path, files) == []


def test_the_limits_themselves_pass(tmp_path: Path) -> None:
    """A 400-line module and eight modules directly in bot/ are within the limits."""
    names = ("__main__", "bootstrap", "cli", "config", "logs")
    files = {f"bot/{name}.py": "" for name in names} | {"bot/web.py": "x = 1\n" * MAX_LINES}
    files["bot/rendering.py"] = ""
    assert report(tmp_path, files) == []


# python -m tests.architecture

CLEAN = {
    "bot/cli.py": "import bot.config\nimport bot.logs\n",
    "bot/config.py": "",
    "bot/logs.py": "",
}


@pytest.mark.parametrize(
    ("files", "code", "output"),
    [
        ({"bot/utils.py": ""}, 1, "bot/utils.py:1: unplaced: bot.utils is in no layer"),
        (CLEAN, 0, "architecture: 4 modules, 2 imports checked; no circles"),
    ],
    ids=["violations", "clean"],
)
def test_the_command_line(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    files: dict[str, str],
    code: int,
    output: str,
) -> None:
    """The command prints each violation and exits 1, or prints a summary and exits 0."""
    assert main([str(tree(tmp_path, files))]) == code
    assert capsys.readouterr().out.startswith(output)

"""The core stays pure: bot/domain imports the standard library and itself, nothing else."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import bot.domain

DOMAIN = Path(bot.domain.__file__).parent


def imported_roots(path: Path) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            roots.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module)
    return roots


def test_domain_imports_only_stdlib_and_itself() -> None:
    """No module under bot/domain imports a third-party package or another part of bot."""
    offenders = {}
    for path in sorted(DOMAIN.rglob("*.py")):
        bad = {
            name
            for name in imported_roots(path)
            if name.split(".")[0] not in sys.stdlib_module_names
            and not (name == "bot.domain" or name.startswith("bot.domain."))
        }
        if bad:
            offenders[path.name] = sorted(bad)
    assert offenders == {}


def test_the_check_itself_catches_a_violation(tmp_path: Path) -> None:
    """The checker reports third-party and shell imports (so the test above can fail)."""
    sample = tmp_path / "bad.py"
    sample.write_text("import sqlmodel\nfrom bot.storage import x\nimport json\n", encoding="utf-8")
    assert imported_roots(sample) == {"sqlmodel", "bot.storage", "json"}

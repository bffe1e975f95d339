"""Shared fixtures for the pure-core tests: the shipped catalog, plus fixture wording for
the licensed instruments (placeholder words, never the licensed text)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.instruments import BUILTIN_DIR, Catalog, load_catalog, read_toml


def fixture_wording(key: str) -> str:
    """A wording file for a structure-only instrument, with placeholder words."""
    structure = read_toml(BUILTIN_DIR / f"{key}.toml")
    lines = [f'key = "{key}"', 'intro = { en = "Fixture introduction." }', ""]
    for item in structure["items"]:
        lines.append(f'[items."{item["key"]}"]')
        lines.append(f'text = {{ en = "Fixture wording for {item["key"]}" }}')
        options = ", ".join(
            f'{{ value = {v}, label = {{ en = "Fixture option {v}" }} }}' for v in item["values"]
        )
        lines.append(f"options = [{options}]")
        lines.append("")
    return "\n".join(lines)


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    return load_catalog()


@pytest.fixture(scope="session")
def licensed_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("licensed")
    for key in ("qids_sr16", "madrs_s"):
        (directory / f"{key}.wording.toml").write_text(fixture_wording(key), encoding="utf-8")
    return directory


@pytest.fixture(scope="session")
def full_catalog(licensed_dir: Path) -> Catalog:
    return load_catalog([licensed_dir])

"""Configuration: one TOML file read into one frozen settings object.

Where the file comes from: the global ``--config PATH`` option, else ``CHECKIN_CONFIG``,
else ``config.toml`` in the working directory. The default path may be absent (every
setting has a working default); a path someone asked for by name must exist. Every error
names the file and the key: ``config.toml: instruments.dirs: must be a list of paths``.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.domain.errors import ConfigError

DEFAULT_PATH = Path("config.toml")
ENV_PATH = "CHECKIN_CONFIG"
_SECTIONS = {"instruments"}


@dataclass(frozen=True)
class Settings:
    source: str = "(defaults)"
    instruments_dirs: tuple[Path, ...] = ()


def config_path(explicit: Path | None) -> tuple[Path, bool]:
    """The path to read and whether someone asked for it by name."""
    if explicit is not None:
        return explicit, True
    from_env = os.environ.get(ENV_PATH)
    if from_env:
        return Path(from_env), True
    return DEFAULT_PATH, False


def load_settings(explicit: Path | None = None) -> Settings:
    path, required = config_path(explicit)
    if not path.exists():
        if required:
            raise ConfigError(str(path), "", "does not exist")
        return Settings()
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), "", f"is not valid TOML ({exc})") from None
    return settings_from_mapping(data, path)


def settings_from_mapping(data: Mapping[str, Any], path: Path) -> Settings:
    source = str(path)
    for section in data:
        if section not in _SECTIONS:
            known = ", ".join(sorted(_SECTIONS))
            raise ConfigError(source, section, f"unknown section (known: {known})")
    instruments = _table(data, "instruments", source)
    dirs = instruments.get("dirs", [])
    if not isinstance(dirs, list) or not all(isinstance(d, str) for d in dirs):
        raise ConfigError(source, "instruments.dirs", "must be a list of paths")
    base = path.resolve().parent
    return Settings(source=source, instruments_dirs=tuple(base / d for d in dirs))


def _table(data: Mapping[str, Any], name: str, source: str) -> Mapping[str, Any]:
    value = data.get(name, {})
    if not isinstance(value, dict):
        raise ConfigError(source, name, "must be a table")
    return value

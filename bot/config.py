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
_SECTIONS = {"instruments", "clinic"}


@dataclass(frozen=True)
class Clinic:
    """What patients are told about the clinic: its name, how to reach it, crisis lines."""

    name: str = "your clinic"
    contact: str = ""
    urgent_line: str = ""
    show_scores: bool = False
    # Empty: the templates' US defaults in the patient's language (988 call or text, 911;
    # instruments.md section 7). A clinic elsewhere lists its own lines.
    crisis_lines: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Settings:
    source: str = "(defaults)"
    instruments_dirs: tuple[Path, ...] = ()
    clinic: Clinic = Clinic()


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
    return Settings(
        source=source,
        instruments_dirs=tuple(base / d for d in dirs),
        clinic=_clinic(_table(data, "clinic", source), source),
    )


def _clinic(raw: Mapping[str, Any], source: str) -> Clinic:
    known = {"name", "contact", "urgent_line", "show_scores", "crisis_lines"}
    for key in raw:
        if key not in known:
            raise ConfigError(
                source, f"clinic.{key}", f"unknown key (known: {', '.join(sorted(known))})"
            )
    texts = {k: raw.get(k, getattr(Clinic, k)) for k in ("name", "contact", "urgent_line")}
    for key, value in texts.items():
        if not isinstance(value, str):
            raise ConfigError(source, f"clinic.{key}", "must be text")
    show = raw.get("show_scores", False)
    if not isinstance(show, bool):
        raise ConfigError(source, "clinic.show_scores", "must be true or false")
    return Clinic(**texts, show_scores=show, crisis_lines=_crisis_lines(raw, source))


def _crisis_lines(raw: Mapping[str, Any], source: str) -> tuple[tuple[str, str], ...]:
    lines = raw.get("crisis_lines")
    if lines is None:
        return ()
    if not isinstance(lines, list) or not lines:
        raise ConfigError(source, "clinic.crisis_lines", "must be a non-empty list of {name, how}")
    parsed = []
    for n, line in enumerate(lines):
        if not isinstance(line, dict) or not all(
            isinstance(line.get(k), str) for k in ("name", "how")
        ):
            raise ConfigError(source, f"clinic.crisis_lines[{n}]", "needs name and how, both text")
        parsed.append((line["name"], line["how"]))
    return tuple(parsed)


def _table(data: Mapping[str, Any], name: str, source: str) -> Mapping[str, Any]:
    value = data.get(name, {})
    if not isinstance(value, dict):
        raise ConfigError(source, name, "must be a table")
    return value

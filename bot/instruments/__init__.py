"""Instrument definition files and the loader that turns them into a catalog.

The files beside this module ship with the project. Operators add their own instruments,
and the wording of licensed ones (``<key>.wording.toml``), in extra directories. Every
file is validated at start-up; a malformed one stops start-up with an error naming the
file and the field. A licensed instrument whose wording is missing does not stop start-up:
it is listed as unavailable, with the reason, and refuses to be used.

Imports ``bot.domain`` (and may import ``bot.config``); every layer above uses the catalog.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.domain.definitions import instrument_from_mapping, merge_wording, needs_wording
from bot.domain.errors import DefinitionError, UnknownInstrument, WordingRequired
from bot.domain.instruments import Instrument

BUILTIN_DIR = Path(__file__).resolve().parent
WORDING_SUFFIX = ".wording.toml"


@dataclass(frozen=True)
class Catalog:
    instruments: dict[str, Instrument]
    unavailable: dict[str, WordingRequired] = field(default_factory=dict)

    def get(self, key: str) -> Instrument:
        if key in self.instruments:
            return self.instruments[key]
        if key in self.unavailable:
            raise self.unavailable[key]
        raise UnknownInstrument(key, self.keys)

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(sorted({*self.instruments, *self.unavailable}))

    def __iter__(self) -> Iterator[Instrument]:
        return iter(self.instruments[k] for k in sorted(self.instruments))


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise DefinitionError(path.name, "", f"is not valid TOML ({exc})") from None
    except OSError as exc:
        raise DefinitionError(str(path), "", f"cannot be read ({exc.strerror})") from None


def load_catalog(extra_dirs: Iterable[Path] = ()) -> Catalog:
    """Load the shipped definitions plus every operator directory, validating all of them."""
    dirs = [BUILTIN_DIR, *(Path(d) for d in extra_dirs)]
    for directory in dirs[1:]:
        if not directory.is_dir():
            raise DefinitionError(str(directory), "", "is not a directory")
    wordings = _wordings(dirs)
    instruments: dict[str, Instrument] = {}
    unavailable: dict[str, WordingRequired] = {}
    origin: dict[str, str] = {}
    for path in _definition_files(dirs):
        data = read_toml(path)
        key = data.get("key")
        if isinstance(key, str) and key in origin:
            raise DefinitionError(path.name, "key", f"{key!r} is already defined in {origin[key]}")
        if needs_wording(data) and isinstance(key, str) and key in wordings:
            wording_path = wordings[key]
            data = merge_wording(data, read_toml(wording_path), wording_path.name)
        try:
            instrument = instrument_from_mapping(data, path.name)
        except WordingRequired as missing:
            unavailable[str(key)] = missing
            origin[str(key)] = path.name
            continue
        instruments[instrument.key] = instrument
        origin[instrument.key] = path.name
    return Catalog(instruments, unavailable)


def _definition_files(dirs: Iterable[Path]) -> list[Path]:
    return [
        path
        for directory in dirs
        for path in sorted(directory.glob("*.toml"))
        if not path.name.endswith(WORDING_SUFFIX)
    ]


def _wordings(dirs: Iterable[Path]) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for directory in dirs:
        for path in sorted(directory.glob(f"*{WORDING_SUFFIX}")):
            found[path.name.removesuffix(WORDING_SUFFIX)] = path
    return found

"""Instrument definition files and the loader that turns them into a catalog.

The files beside this module ship with the project. Operators add their own instruments,
the wording of licensed ones (``<key>.wording.toml``), and languages for any instrument
(the same file name, for an instrument that has its words: the clinic's Spanish GAD-7)
in extra directories. A language a wording file adds must be complete, and a wording
file naming no instrument is refused rather than ignored. Every file is validated at
start-up; a malformed one stops start-up with an error naming the file and the field.
A licensed instrument whose wording is missing does not stop start-up: it is listed as
unavailable, with the reason, and refuses to be used.

Imports ``bot.domain`` (and may import ``bot.config``); every layer above uses the catalog.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.domain.definitions import (
    add_languages,
    instrument_from_mapping,
    merge_wording,
    needs_wording,
)
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

    def no_wording(self, keys: Iterable[str], language: str) -> tuple[str, ...]:
        """Of `keys` (in order, once each), those that cannot be asked in `language`: no
        wording in it, or a licensed instrument still waiting for its wording. A key the
        catalog does not know at all is not among them: that is a fault, not a language."""
        return tuple(
            key
            for key in dict.fromkeys(keys)
            if key in self.unavailable
            or (key in self.instruments and language not in self.instruments[key].languages)
        )

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
        added: frozenset[str] = frozenset()
        wording_path = wordings.get(key) if isinstance(key, str) else None
        if wording_path is not None and needs_wording(data):
            data = merge_wording(data, read_toml(wording_path), wording_path.name)
        elif wording_path is not None:
            data, added = add_languages(data, read_toml(wording_path), wording_path.name)
        try:
            instrument = instrument_from_mapping(data, path.name)
        except WordingRequired as missing:
            unavailable[str(key)] = missing
            origin[str(key)] = path.name
            continue
        if wording_path is not None and added:
            _check_complete(instrument, added, wording_path.name)
        instruments[instrument.key] = instrument
        origin[instrument.key] = path.name
    for key, wording_path in wordings.items():
        if key not in origin:
            raise DefinitionError(
                wording_path.name, "key", f"no instrument {key!r} is defined to take this wording"
            )
    return Catalog(instruments, unavailable)


def _check_complete(instrument: Instrument, languages: Iterable[str], source: str) -> None:
    """Each language a wording file adds has every text, or the file is refused."""
    for language in sorted(languages):
        missing = instrument.missing_texts(language)
        if missing:
            raise DefinitionError(
                source,
                language,
                f"is incomplete: no {language!r} text for {', '.join(missing[:3])}"
                f"{' and more' if len(missing) > 3 else ''} (a wording file that adds a "
                "language gives every text in it: intro, items, options, bands)",
            )


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

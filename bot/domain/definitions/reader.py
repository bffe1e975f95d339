"""Typed reading of untrusted definition data: :class:`Reader` reports the file and the
field on any problem (``gad7.toml: items[2].key: is missing``)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, cast

from bot.domain.errors import DefinitionError
from bot.domain.instruments import Localized

_LOINC = re.compile(r"^(?:LA)?\d{1,6}-\d$")


class Reader:
    """Typed access to untrusted mappings that reports file and field on any problem."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, path: str, problem: str) -> DefinitionError:
        return DefinitionError(self.source, path, problem)

    def get(
        self, data: Mapping[str, Any], name: str, path: str, kind: type, default: Any = ...
    ) -> Any:
        where = f"{path}.{name}" if path else name
        if name not in data:
            if default is ...:
                raise self.fail(where, "is missing")
            return default
        value = data[name]
        if kind is int and isinstance(value, bool):
            raise self.fail(where, f"must be an integer, not {value!r}")
        if not isinstance(value, kind):
            raise self.fail(where, f"must be {_kind_name(kind)}, not {type(value).__name__}")
        return value

    def text(
        self, data: Mapping[str, Any], name: str, path: str, required: bool = True
    ) -> Localized | None:
        where = f"{path}.{name}" if path else name
        raw = data.get(name)
        if raw is None:
            if required:
                raise self.fail(where, "is missing")
            return None
        if isinstance(raw, str):
            raw = {"en": raw}
        if not isinstance(raw, dict) or not raw:
            raise self.fail(where, "must be a string or a table of language = text")
        for lang, text in raw.items():
            if not isinstance(text, str) or not text.strip():
                raise self.fail(f"{where}.{lang}", "must be non-empty text")
        return Localized(dict(raw))

    def loinc(self, data: Mapping[str, Any], name: str, path: str) -> str | None:
        code = self.get(data, name, path, str, None)
        if code is not None and not _LOINC.match(code):
            raise self.fail(f"{path}.{name}" if path else name, f"{code!r} is not a LOINC code")
        return cast("str | None", code)


def _kind_name(kind: type) -> str:
    return {
        str: "text",
        int: "an integer",
        bool: "true or false",
        list: "a list",
        dict: "a table",
    }.get(kind, kind.__name__)


def choice(
    r: Reader, data: Mapping[str, Any], name: str, path: str, allowed: Sequence[str], default: str
) -> Any:
    value = r.get(data, name, path, str, default)
    if value not in allowed:
        raise r.fail(
            f"{path}.{name}" if path else name, f"{value!r} is not one of {', '.join(allowed)}"
        )
    return value


def check_unique(r: Reader, keys: Sequence[object], path: str) -> None:
    seen: set[object] = set()
    for key in keys:
        if key in seen:
            raise r.fail(path, f"{key!r} appears twice")
        seen.add(key)

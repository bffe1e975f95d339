"""``[panel] locale``: a BCP 47 name (``en-US``, ``en-GB``, ``es-ES``, ``es-MX``) that the
CLDR data shipped with Babel knows. Checked when the settings load, so a name CLDR does
not know is a configuration error naming the key, never a failure on the first page."""

from __future__ import annotations

from babel import Locale, UnknownLocaleError


def parse_locale(name: str) -> Locale:
    """The CLDR locale for a BCP 47 name (``es_ES`` is taken as ``es-ES``);
    ``ValueError`` when CLDR does not know it."""
    try:
        return Locale.parse(name.strip().replace("_", "-"), sep="-")
    except (UnknownLocaleError, ValueError, TypeError) as exc:
        raise ValueError(f"unknown locale {name!r}") from exc


def bcp47(name: str) -> str:
    """The name as written in the settings: hyphenated (``es-ES``), checked."""
    parse_locale(name)
    return name.strip().replace("_", "-")

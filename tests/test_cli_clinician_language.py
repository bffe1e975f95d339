"""`clinician add --language` and `clinician language`: the language a clinician's alerts,
digests and answers are worded in, set when they are added and changed later, a bad one
refused in one line naming it. Real processes, a SQLite file."""

from __future__ import annotations

import asyncio

from tests.test_cli_ops import _actions, one_line_error, url  # noqa: F401  (url: a fixture)
from tests.test_cli_service import checkin, ok_json


def languages(url: str) -> dict[int, str]:  # noqa: F811
    listed = ok_json(checkin(url, "clinician", "list", "--json"))
    return {c["id"]: c["language"] for c in listed}  # type: ignore[attr-defined]


def test_a_clinician_is_added_in_spanish_and_changed_to_english(url: str) -> None:  # noqa: F811
    """--language es is kept and listed; `clinician language ID en` changes it, audited;
    a clinician added without it is English."""
    args = ("clinician", "add", "--name", "Dra. R", "--channel", "console")
    added = ok_json(checkin(url, *args, "--language", "es", "--json"))
    other = ok_json(checkin(url, *args, "--json"))["id"]
    assert added["language"] == "es"
    assert languages(url) == {added["id"]: "es", other: "en"}
    changed = checkin(url, "clinician", "language", str(added["id"]), "en")
    assert changed.returncode == 0, changed.stderr
    assert changed.stdout.strip() == f"clinician {added['id']} is told in en now"
    assert languages(url) == {added["id"]: "en", other: "en"}
    back = ok_json(checkin(url, "clinician", "language", str(other), "es", "--json"))
    assert back == {"id": other, "language": "es"}
    assert asyncio.run(_actions(url)).count("clinician_language_set") == 2


def test_a_language_the_renderer_lacks_is_refused_naming_it(url: str) -> None:  # noqa: F811
    """fr on add and on change, and an unknown clinician, fail in one line; nothing changes."""
    args = ("clinician", "add", "--name", "Dr", "--channel", "console", "--language", "fr")
    one_line_error(checkin(url, *args), "--language 'fr' is not one of en, es")
    assert languages(url) == {}
    clinician = ok_json(checkin(url, *args[:-2], "--json"))["id"]
    one_line_error(checkin(url, "clinician", "language", str(clinician), "fr"),
                   "LANGUAGE 'fr' is not one of en, es")  # fmt: skip
    one_line_error(checkin(url, "clinician", "language", "99", "es"), "no clinician with id 99")
    assert languages(url) == {clinician: "en"}

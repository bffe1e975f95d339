"""`checkin keys` as an operator runs it: status, rotate, retire, generate, with the key
file `db upgrade` made beside a SQLite database (the suite's environment key removed)."""

from __future__ import annotations

import json
from pathlib import Path

from bot.storage.crypto import parse_keys
from tests.test_encryption import _checkin


def _json(result: object) -> object:
    assert result.returncode == 0, result.stderr  # type: ignore[attr-defined]
    return json.loads(result.stdout)  # type: ignore[attr-defined]


def test_rotate_then_retire_keeps_every_record_readable(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'clinic.db'}"
    assert _checkin(url, "db", "upgrade").returncode == 0
    for n in range(3):
        added = _checkin(url, "patient", "add", "--name", f"Keyed {n}", "--channel", "console")
        assert added.returncode == 0, added.stderr
    before = _json(_checkin(url, "keys", "status", "--json"))
    assert isinstance(before, dict)
    (old,) = [k["key_id"] for k in before["keys"]]
    rotated = _checkin(url, "keys", "rotate")
    assert rotated.returncode == 0, rotated.stderr
    after = _json(_checkin(url, "keys", "status", "--json"))
    assert isinstance(after, dict)
    ids = [k["key_id"] for k in after["keys"]]
    assert len(ids) == 2 and old in ids
    counts = {k["key_id"]: k["values"] for k in after["keys"]}
    assert counts[old] == 0 and sum(counts.values()) > 0  # everything under the new key
    retired = _checkin(url, "keys", "retire", old)
    assert retired.returncode == 0, retired.stderr
    listed = _json(_checkin(url, "patient", "list", "--json"))
    assert sorted(p["name"] for p in listed) == ["Keyed 0", "Keyed 1", "Keyed 2"]  # type: ignore[index, union-attr]
    final = _json(_checkin(url, "keys", "status", "--json"))
    assert [k["key_id"] for k in final["keys"]] == [i for i in ids if i != old]  # type: ignore[index]


def test_retire_refuses_a_key_still_in_use_and_generate_prints_a_key(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'clinic.db'}"
    assert _checkin(url, "db", "upgrade").returncode == 0
    assert (
        _checkin(url, "patient", "add", "--name", "Keyed", "--channel", "console").returncode == 0
    )
    status = _json(_checkin(url, "keys", "status", "--json"))
    (current,) = [k["key_id"] for k in status["keys"]]  # type: ignore[index]
    refused = _checkin(url, "keys", "retire", current)
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1
    generated = _checkin(url, "keys", "generate")
    assert generated.returncode == 0
    (key,) = parse_keys(generated.stdout.strip(), "keys generate")
    assert key.key_id not in (current,)

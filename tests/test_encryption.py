"""Encryption at rest, shown on the bytes: after a full SMS check-in the canary name, number
and words are nowhere in the SQLite file or its WAL, nor in any PostgreSQL table's data; a
patient texting back is found by the keyed hash; rotation re-encrypts every row while the
service keeps working; migration 0007 leaves no plaintext behind."""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import os
import stat
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlmodel import SQLModel

import tests.test_sms as sms
from bot.config import Security, Settings
from bot.storage import crypto, migrate
from bot.storage.crypto import (
    ENV_KEY,
    KeyProblem,
    KeyRing,
    active_ring,
    new_key,
    parse_keys,
    use_keys,
)
from bot.storage.database import Database
from bot.storage.keys import install_keys, write_key_file
from bot.storage.repository import Repository
from bot.storage.rotation import key_usage, rotate
from bot.storage.tables import Answer, InboundMessage, OutboundMessage, Patient
from scheduler.loop import tick
from tests.conftest import TEST_RING
from tests.test_services import add_patient, rows, said, started, wire
from tests.test_sms import Rig, rig  # noqa: F401  (the SMS rig fixture)

NAME = "Zebediah Quux"
PHONE = "+15005550199"
WORDS = "quuxcanary mellow giraffe 4471"
CANARIES = [NAME.encode(), b"Zebediah", b"Quux", PHONE.encode(), b"5005550199", WORDS.encode()]
ROOT = Path(__file__).resolve().parent.parent


def leaks(data: bytes) -> list[bytes]:
    return [c for c in CANARIES if c in data]


async def sms_check_in(sms_rig: Rig, monkeypatch: pytest.MonkeyPatch) -> int:
    """The canary patient: invited by SMS, says YES, answers a PHQ-2 with free text between."""
    monkeypatch.setattr(sms, "PATIENT", PHONE)
    async with sms_rig.app.db.transaction() as session:
        patient = Patient(
            display_name=NAME, timezone="America/New_York", channel="sms", address=PHONE
        )
        await Repository(session).add(patient)
    assert patient.id is not None
    await sms_rig.app.services.consent.invite(patient.id)
    await sms_rig.text("YES")
    await sms_rig.app.services.asking.ask(patient.id, ["phq2"])
    await tick(sms_rig.app)
    for reply in (WORDS, "2", "3"):
        assert (await sms_rig.text(reply)).status_code == 200
    return patient.id


async def test_canaries_are_nowhere_in_the_stored_bytes(
    rig: Rig,  # noqa: F811
    db: Database,
    dialect: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A full check-in by SMS; then every byte the database holds is searched for the canaries.

    SQLite: the database file and its WAL, read as bytes while the service's connections
    are open (nothing checkpointed) and again after closing (checkpointed). PostgreSQL: its
    files belong to the server, so every table is dumped with COPY ... TO STDOUT, the form
    ``pg_dump`` backs up; the server's WAL is out of reach of a test and is not searched.
    """
    patient_id = await sms_check_in(rig, monkeypatch)
    answers = await rows(db, Answer)
    assert [(a.value_int, a.raw_text) for a in answers] == [(2, "2"), (3, "3")]
    (patient,) = await rows(db, Patient)
    assert (patient.id, patient.display_name, patient.address) == (patient_id, NAME, PHONE)
    assert WORDS in [m.text for m in await rows(db, InboundMessage)]  # stored, readable
    assert PHONE in {m.address for m in await rows(db, OutboundMessage)}
    if dialect == "sqlite":
        path = Path(str(make_url(db.url).database))
        wal = path.with_name(path.name + "-wal")
        assert wal.stat().st_size > 0  # the check-in is (at least partly) only in the WAL
        assert leaks(path.read_bytes()) == [] and leaks(wal.read_bytes()) == []
        await rig.app.db.dispose()
        await db.dispose()
        data = path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")
        assert leaks(data) == []
    else:
        dump = await _copy_every_table(db)
        assert b"enc1:" in dump and leaks(dump) == []


async def _copy_every_table(db: Database) -> bytes:
    url = make_url(db.url).set(drivername="postgresql").render_as_string(hide_password=False)
    connection = await asyncpg.connect(url)
    try:
        out = io.BytesIO()
        for table in SQLModel.metadata.sorted_tables:
            await connection.copy_from_table(table.name, output=out)
        return out.getvalue()
    finally:
        await connection.close()


async def test_a_patient_texting_back_is_found_by_the_keyed_hash(
    rig: Rig,  # noqa: F811
    db: Database,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The number is stored only encrypted and hashed, yet each reply reaches its patient."""
    patient_id = await sms_check_in(rig, monkeypatch)
    (patient,) = await rows(db, Patient)
    assert patient.address_hash == TEST_RING.lookup_hash(PHONE)
    async with db.engine.connect() as connection:
        stored = (await connection.execute(text("SELECT address FROM patient"))).scalar_one()
    assert stored.startswith(TEST_RING.prefix) and PHONE not in stored
    assert len(await rows(db, Answer)) == 2  # both replies were the patient's
    inbound = await rows(db, InboundMessage)
    assert all(m.sender_hash == TEST_RING.lookup_hash(PHONE) for m in inbound)
    assert patient.id == patient_id and patient.status == "active"


async def test_rotation_re_encrypts_every_row_and_the_service_keeps_working(
    db: Database,
) -> None:
    """A completed check-in, a rotation (a crash half way, then a second run finishing it),
    then the old rows read back and a new check-in by the same address works."""
    w = wire(db)
    patient_id = await add_patient(db, address="pat-rot")
    await started(w, patient_id, ["phq2"])
    for n, reply in enumerate(["1", "2"]):
        assert await w.services.inbox.handle_inbound(said("pat-rot", reply, n))
    await w.deliverer.drain()
    newer = KeyRing((*TEST_RING.keys, new_key()))
    use_keys(newer)

    def crash(table: str, done: int, total: int) -> None:
        raise RuntimeError("killed mid-rotation")

    with pytest.raises(RuntimeError):
        await rotate(db, newer, batch=1, progress=crash)
    ids = [TEST_RING.current.key_id, newer.current.key_id]
    half = await key_usage(db, ids)
    assert half[ids[0]] > 0 and half[ids[1]] > 0  # part done: both keys in use, all readable
    assert [a.raw_text for a in await rows(db, Answer)] == ["1", "2"]
    report = await rotate(db, newer, batch=2)
    assert report.remaining == 0 and sum(report.rotated.values()) > 0
    done = await key_usage(db, ids)
    assert done[ids[0]] == 0 and done["other"] == 0 and done[ids[1]] == half[ids[1]] + half[ids[0]]
    use_keys(KeyRing(newer.keys[-1:]))  # the old key retired: everything still reads
    assert [a.raw_text for a in await rows(db, Answer)] == ["1", "2"]
    await started(w, patient_id, ["phq2"])
    for n, reply in enumerate(["3", "0"], start=2):
        assert await w.services.inbox.handle_inbound(said("pat-rot", reply, n))
    assert [a.value_int for a in await rows(db, Answer)] == [1, 2, 3, 0]


async def test_a_value_moved_to_another_column_or_altered_does_not_decrypt() -> None:
    """The column name is bound to each value; any change to a stored value is detected."""
    token = TEST_RING.encrypt("patient.display_name", NAME)
    assert TEST_RING.decrypt("patient.display_name", token) == NAME
    with pytest.raises(KeyProblem):
        TEST_RING.decrypt("outbound_message.body", token)
    altered = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    with pytest.raises(KeyProblem):
        TEST_RING.decrypt("patient.display_name", altered)
    with pytest.raises(KeyProblem):
        KeyRing([new_key()]).decrypt("patient.display_name", token)  # a key not in the ring


async def test_migration_0007_encrypts_existing_plaintext_and_leaves_no_copy(
    sqlite_url: str, tmp_path: Path
) -> None:
    """A database at 0004 with plaintext rows: `db upgrade` creates a key file beside it
    (0600), encrypts every row in the migration, and compacts the file and WAL."""
    await migrate.upgrade_async(sqlite_url, "0006")
    async with Database(sqlite_url) as old, old.engine.begin() as connection:
        await connection.execute(
            text(
                "INSERT INTO patient (display_name, timezone, language, channel, address, status,"
                " created_at, updated_at) VALUES (:n, 'UTC', 'en', 'sms', :p, 'active',"
                " '2026-01-01 00:00:00.000000', '2026-01-01 00:00:00.000000')"
            ),
            {"n": NAME, "p": PHONE},
        )
    path = Path(str(make_url(sqlite_url).database))
    assert leaks(path.read_bytes() + _wal(path)) != []
    os.environ.pop(ENV_KEY)
    try:
        use_keys(None)
        created = await migrate.upgrade_with_keys(Settings(database_url=sqlite_url))
    finally:
        os.environ[ENV_KEY] = TEST_RING.keys[0].line
    assert created == tmp_path / "checkin.key"
    assert stat.S_IMODE(created.stat().st_mode) == 0o600
    assert leaks(path.read_bytes() + _wal(path)) == []
    async with Database(sqlite_url) as db:
        (patient,) = await rows(db, Patient)
    assert (patient.display_name, patient.address) == (NAME, PHONE)
    assert patient.address_hash is not None


async def test_migration_0007_without_a_key_stops_and_changes_nothing(db_url: str) -> None:
    """Plaintext rows and no key: the migration names what to set, and the database stays at
    0004 with its rows as they were (never half encrypted)."""
    await migrate.upgrade_async(db_url, "0006")
    async with Database(db_url) as old, old.engine.begin() as connection:
        await connection.execute(
            text(
                "INSERT INTO clinician (display_name, channel, active, created_at)"
                " VALUES (:n, 'console', true, '2026-01-01 00:00:00+00')"
            ),
            {"n": NAME},
        )
    use_keys(None)
    with pytest.raises(KeyProblem, match="CHECKIN_ENCRYPTION_KEY"):
        await migrate.upgrade_async(db_url)
    assert await migrate.current_revision_async(db_url) == "0006"
    async with Database(db_url) as old, old.engine.connect() as connection:
        names = (await connection.execute(text("SELECT display_name FROM clinician"))).all()
    assert names == [(NAME,)]


def _wal(path: Path) -> bytes:
    wal = path.with_name(path.name + "-wal")
    return wal.read_bytes() if wal.exists() else b""


def _checkin(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, CHECKIN_DATABASE_URL=url)
    env.pop(ENV_KEY)
    env.pop("CHECKIN_CONFIG", None)
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=120, check=False,
    )  # fmt: skip


def test_the_cli_makes_a_key_file_and_refuses_to_run_without_it(tmp_path: Path) -> None:
    """`db upgrade` makes and announces the key file; without it, commands stop in one line."""
    url = f"sqlite:///{tmp_path / 'clinic.db'}"
    upgraded = _checkin(url, "db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    key_file = tmp_path / "clinic.key"
    assert f"created the encryption key file {key_file} (mode 0600)" in upgraded.stdout
    added = _checkin(url, "patient", "add", "--name", NAME, "--channel", "console")
    assert added.returncode == 0, added.stderr
    key_file.rename(tmp_path / "elsewhere.key")
    listed = _checkin(url, "patient", "list")
    assert listed.returncode == 2
    assert listed.stderr.startswith("error: the database holds encrypted data but no key")
    assert len(listed.stderr.splitlines()) == 1
    again = _checkin(url, "db", "upgrade")
    assert again.returncode == 2 and "key file" in again.stderr and "missing" in again.stderr
    assert not key_file.exists()  # a new key that could not open the data was not made


async def test_a_running_service_learns_a_key_another_process_added(
    sqlite_db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Keys from a key file: `checkin keys rotate` elsewhere adds a key and re-encrypts; this
    process opens the re-encrypted rows at once and then writes under the new key."""
    monkeypatch.delenv(ENV_KEY)
    key_file = tmp_path / "clinic.key"
    write_key_file(key_file, TEST_RING.keys)
    settings = Settings(database_url=str(sqlite_db.url), security=Security(key_file=key_file))
    assert install_keys(settings) is not None
    await add_patient(sqlite_db, address="pat-file")
    newer = KeyRing((*TEST_RING.keys, new_key()))
    write_key_file(key_file, newer.keys)  # what `checkin keys rotate` does, in another process
    await rotate(sqlite_db, newer)
    (patient,) = await rows(sqlite_db, Patient)  # sealed under a key this process never read
    assert patient.address == "pat-file"
    assert active_ring().current == newer.current
    await add_patient(sqlite_db, address="pat-new")
    usage = await key_usage(sqlite_db, [k.key_id for k in newer.keys])
    assert usage[TEST_RING.current.key_id] == 0 and usage["other"] == 0


def test_keys_that_are_not_keys_are_refused_with_the_source_named() -> None:
    """A malformed CHECKIN_ENCRYPTION_KEY or key file line says where and how to make one."""
    good = new_key().line
    assert [k.line for k in parse_keys(f"# comment, with a comma\n{good}\n", "f")] == [good]
    for text_, problem in [("", "holds no key"), ("k1:short", "entry 1 is not a key")]:
        with pytest.raises(KeyProblem, match=problem):
            parse_keys(text_, "clinic.key")


@pytest.mark.parametrize("size", [0, 1, 2, 3, 28, 29, 30, 31, 64, 255])
def test_the_short_encodings_are_the_standard_ones(size: int) -> None:
    """What values are sealed and hashed with gives the standard library's bytes: URL-safe
    base64 without padding, HMAC-SHA256 in hex (hashes stored by earlier code still match)."""
    data = bytes(range(256))[::-1][:size] + b"\xfb\xff\xfe"[: size % 3]
    assert crypto._b64(data) == base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")
    text = data.decode("latin-1")
    expected = hmac.new(data or b"k", text.encode("utf-8"), hashlib.sha256).hexdigest()
    assert crypto._hmac(data or b"k", text) == expected

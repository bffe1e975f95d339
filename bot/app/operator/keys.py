"""The encryption key ring as an operator manages it: whether this process can use the
encrypted columns at all, where the keys come from, how many stored values each key
encrypts, a new key, rotation (every value re-encrypted under the newest key, in
batches), and retiring an old key nothing uses any more.

Keys come from ``CHECKIN_ENCRYPTION_KEY`` or a key file (:mod:`bot.storage.keys`); only a
key file is ever written here. Each step that reads the database opens its own
connection to it and closes it again.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.exc import OperationalError, ProgrammingError

from bot.app.operator.refusals import Refused
from bot.config import Settings
from bot.storage.crypto import Key, KeyRing, active_ring, installed_ring, new_key
from bot.storage.crypto import NoKey as NoKey
from bot.storage.database import Database
from bot.storage.keys import KeySource, install_keys, key_source, write_key_file
from bot.storage.rotation import Progress, compact_sqlite, encrypted_data_exists, key_usage
from bot.storage.rotation import rotate as rotate_ring


async def key_problem(settings: Settings, db: Database) -> str | None:
    """Why this process cannot read or write the encrypted columns (one line), or None."""
    if installed_ring() is not None:
        return None
    source = key_source(settings)
    where = f" (expected at {source.where})" if source is not None else ""
    try:
        sealed = await encrypted_data_exists(db)
    except (OperationalError, ProgrammingError, OSError):
        sealed = False  # the database problem is reported where it is used
    if sealed:
        return (
            f"the database holds encrypted data but no key is available{where}: restore the key "
            "file from your backup, or set CHECKIN_ENCRYPTION_KEY"
        )
    return (
        f"no encryption key{where}: run `checkin db upgrade` (on SQLite it creates one), or set "
        "CHECKIN_ENCRYPTION_KEY or [security] key_file"
    )


def generate() -> Key:
    """A new random key (``key.line`` is ``<id>:<base64url>``); nothing is stored."""
    return new_key()


@dataclass(frozen=True)
class Keys:
    """The installed key ring and where it came from."""

    source: KeySource
    ring: KeyRing

    @property
    def where(self) -> str:
        return self.source.where

    @property
    def ids(self) -> list[str]:
        """Every key id, oldest first; the last is current."""
        return [k.key_id for k in self.ring.keys]

    @property
    def current(self) -> str:
        return self.ring.current.key_id


class KeysFromEnvironment(Refused):
    def __init__(self) -> None:
        super().__init__("the keys come from CHECKIN_ENCRYPTION_KEY")


class UnknownKey(Refused):
    def __init__(self, key_id: str, where: str) -> None:
        super().__init__(f"no key {key_id!r} in {where}")


class CurrentKey(Refused):
    def __init__(self, key_id: str) -> None:
        super().__init__(f"key {key_id} is the current key")


class KeyInUse(Refused):
    def __init__(self, key_id: str, values: int) -> None:
        super().__init__(f"{values} stored values are still under key {key_id}")


def installed(settings: Settings) -> Keys:
    """Install this configuration's key ring; raises ``NoKey`` when there is none."""
    source = install_keys(settings)
    if source is None:
        raise NoKey()
    return Keys(source, active_ring())


async def usage(settings: Settings, keys: Keys) -> dict[str, int]:
    """How many stored values each key encrypts, plus ``"other"``: values under a key not
    in the ring (or not encrypted)."""
    async with Database(settings.database_url) as db:
        return await key_usage(db, keys.ids)


def add_key(settings: Settings, keys: Keys) -> Keys:
    """Append a new key to the key file: it becomes current. Keys from the environment are
    the operator's to extend (``KeysFromEnvironment``)."""
    if keys.source.path is None:
        raise KeysFromEnvironment()
    write_key_file(keys.source.path, (*keys.ring.keys, new_key()))
    return installed(settings)


@dataclass(frozen=True)
class Rotation:
    rotated: dict[str, int]  # table: rows re-encrypted
    remaining: int  # values still under an older key (run again)


async def rotate(settings: Settings, keys: Keys, batch: int, progress: Progress) -> Rotation:
    """Re-encrypt every stored value not under the current key, `batch` rows a
    transaction; on SQLite the file is compacted after, so no old copy lingers."""
    async with Database(settings.database_url) as db:
        report = await rotate_ring(db, keys.ring, batch, progress)
        await compact_sqlite(db)
    return Rotation(report.rotated, report.remaining)


async def retire(settings: Settings, keys: Keys, key_id: str) -> str | None:
    """Remove an old key from the key file once no stored value uses it. With keys from
    the environment nothing is written: the value to set instead is returned."""
    if key_id not in keys.ids:
        raise UnknownKey(key_id, keys.where)
    if key_id == keys.current:
        raise CurrentKey(key_id)
    in_use = (await usage(settings, keys))[key_id]
    if in_use:
        raise KeyInUse(key_id, in_use)
    remaining = tuple(k for k in keys.ring.keys if k.key_id != key_id)
    if keys.source.path is None:
        return ",".join(k.line for k in remaining)
    write_key_file(keys.source.path, remaining)
    return None

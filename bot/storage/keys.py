"""Where the key ring comes from: ``CHECKIN_ENCRYPTION_KEY``, else a key file, never the database.

The key file is ``[security] key_file``, else (SQLite only) ``<database>.key`` beside the
database file: one ``<id>:<base64url>`` key a line, the last one current. It is written
atomically with mode 0600, and refused when other users may read it.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

from bot.config import Settings
from bot.storage.crypto import ENV_KEY, Key, KeyProblem, KeyRing, new_key, parse_keys, use_keys

HEADER = (
    "# mbc-checkin encryption keys: <id>:<base64url key>, one a line, the last one current.\n"
    "# Back this file up apart from the database: without it the data cannot be read.\n"
)


@dataclass(frozen=True)
class KeySource:
    """The environment variable (`path` None) or a key file."""

    where: str
    path: Path | None

    @property
    def exists(self) -> bool:
        return self.path is None or self.path.exists()


def key_source(settings: Settings) -> KeySource | None:
    """Where this configuration's keys are; None on PostgreSQL with nothing configured."""
    if os.environ.get(ENV_KEY):
        return KeySource(ENV_KEY, None)
    path = settings.security.key_file or default_key_file(settings.database_url)
    return KeySource(str(path), path) if path is not None else None


def default_key_file(database_url: str) -> Path | None:
    """``<database>.key`` beside a SQLite database file; None for other databases."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return Path(str(url.database)).with_suffix(".key")


def read_ring(source: KeySource) -> KeyRing:
    if source.path is None:
        return KeyRing(parse_keys(os.environ.get(ENV_KEY, ""), ENV_KEY))
    try:
        mode = source.path.stat().st_mode
        text = source.path.read_text(encoding="utf-8")
    except OSError as exc:
        raise KeyProblem(f"{source.where}: cannot read the key file ({exc.strerror})") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyProblem(
            f"{source.where}: other users may read this key file "
            f"(mode {stat.S_IMODE(mode):04o}); run `chmod 600 {source.where}`"
        )
    return KeyRing(parse_keys(text, source.where))


class _FileKeys:
    """Re-reads a key file when it changed (its size or modification time)."""

    def __init__(self, source: KeySource, ring: KeyRing) -> None:
        self.source, self.ring = source, ring
        self.stamp = _stamp(source)

    def __call__(self) -> KeyRing:
        stamp = _stamp(self.source)
        if stamp != self.stamp:
            self.ring, self.stamp = read_ring(self.source), stamp
        return self.ring


def _stamp(source: KeySource) -> tuple[int, int]:
    assert source.path is not None
    info = source.path.stat()
    return info.st_mtime_ns, info.st_size


def install_keys(settings: Settings) -> KeySource | None:
    """Install this configuration's key ring process-wide; the source it came from, or None
    (and no ring installed) when there is no key yet."""
    source = key_source(settings)
    if source is None or not source.exists:
        use_keys(None)
        return None
    ring = read_ring(source)
    use_keys(ring, reload=_FileKeys(source, ring) if source.path is not None else None)
    return source


def write_key_file(path: Path, keys: tuple[Key, ...]) -> None:
    """Write `keys` to `path` atomically (a temporary file, fsync, rename), mode 0600."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.unlink(missing_ok=True)
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(HEADER + "".join(f"{key.line}\n" for key in keys))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(temporary, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def create_key_file(path: Path) -> Key:
    """A new key file holding one new key."""
    key = new_key()
    write_key_file(path, (key,))
    return key


async def ensure_key_file(settings: Settings) -> Path | None:
    """Before `checkin db upgrade`: create the key file this configuration names (or, on
    SQLite, the one beside the database) when it does not exist yet; the path if created.

    Refused when the database already holds encrypted values: a new key would not open
    them, and the operator has to restore the lost file instead.
    """
    from bot.storage.database import Database
    from bot.storage.rotation import encrypted_data_exists

    source = key_source(settings)
    if source is None or source.path is None or source.exists:
        return None
    async with Database(settings.database_url) as db:
        if await encrypted_data_exists(db):
            raise KeyProblem(
                f"the database holds encrypted data but the key file {source.where} is missing: "
                "restore it from your backup (a new key would not open that data)"
            )
    create_key_file(source.path)
    return source.path

"""The database as an operator sets it up: create or upgrade the schema (making the key file
first when this configuration names one and there is none yet), and whether a database is
ready for the service to start on.

Failures to reach or read the database are left to propagate as the driver raised them
(an ``OperationalError``, an ``OSError``, a ``ValueError`` for an unsupported URL): the
entry point says in one line what is wrong with which database.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

from bot.config import Settings
from bot.storage import migrate
from bot.storage.keys import key_source


@dataclass(frozen=True)
class Upgraded:
    revision: str | None  # the schema's revision now (the newest)
    key_file_created: Path | None  # the encryption key file this upgrade made, if any
    key_configured: bool  # whether the configuration names a key (else none exists yet)


async def upgrade(settings: Settings) -> Upgraded:
    """Create the schema, or bring it up to date; safe to run again."""
    created = await migrate.upgrade_with_keys(settings)
    return Upgraded(migrate.head_revision(), created, key_source(settings) is not None)


def missing_sqlite_file(url: str) -> bool:
    """Whether `url` names a SQLite file that does not exist (never created by upgrade)."""
    parsed = make_url(url)
    database = parsed.database or ""
    return (
        parsed.get_backend_name() == "sqlite"
        and database not in ("", ":memory:")
        and not Path(database).exists()
    )


async def schema_is_current(url: str) -> bool:
    """Whether the database at `url` is at the newest revision the code knows."""
    return await migrate.current_revision_async(url) == migrate.head_revision()

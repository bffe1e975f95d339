"""Alembic environment for mbc-checkin.

Migrations run through ``bot.storage.migrate`` (``upgrade(url)``), which opens the
connection, takes the migration lock and hands the connection over in
``config.attributes["connection"]``; there is no alembic.ini. Offline mode
(``--sql``) renders SQL for the URL in ``sqlalchemy.url``.
"""

from alembic import context
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel

import bot.storage.tables  # noqa: F401  (puts every table on SQLModel.metadata)

config = context.config
target_metadata = SQLModel.metadata


def run_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        render_as_batch=True,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_offline()
else:
    connection = config.attributes.get("connection")
    if connection is None:
        raise RuntimeError(
            "run migrations with bot.storage.migrate.upgrade(url); it supplies the connection"
        )
    run_online(connection)

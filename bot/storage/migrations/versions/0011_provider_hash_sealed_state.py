"""provider message ids kept as keyed hashes only; check-in conversation state encrypted

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05 06:00:00

``inbound_message.provider_id`` (a Telegram one is ``m<chat id>:<message id>``) becomes
``provider_hash``, the id's keyed hash (``bot.storage.crypto.provider_text`` under the
current key), unique per channel as before; the plaintext column is dropped.
``checkin.state`` (the conversation, answers so far included) becomes a text column holding
its JSON encrypted (label ``checkin.state``). Both in this one transaction, like 0007: the
whole database is converted or nothing is. Existing rows need the key ring; without one the
migration stops, naming what to set.

Downgrading decrypts the state; the plaintext provider ids cannot come back, so
``provider_id`` gets the hashes (redeliveries of messages recorded before are then not
recognised).
"""

from collections.abc import Callable, Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

from bot.storage.crypto import KeyProblem, KeyRing, NoKey, active_ring, is_encrypted, provider_text

revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATE = "checkin.state"
CHUNK = 1000
_INBOUND = sa.table(
    "inbound_message",
    sa.column("id"),
    sa.column("channel"),
    sa.column("provider_id"),
    sa.column("provider_hash"),
)
_CHECKIN = sa.table("checkin", sa.column("id"), sa.column("state"))


def upgrade() -> None:
    with op.batch_alter_table("inbound_message", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("provider_hash", sqlmodel.sql.sqltypes.AutoString(), nullable=True)
        )
    _each(_INBOUND, ("channel", "provider_id"), _hashed)
    with op.batch_alter_table("inbound_message", schema=None) as batch_op:
        batch_op.drop_constraint("uq_inbound_message_channel_provider_id", type_="unique")
        batch_op.drop_column("provider_id")
        batch_op.alter_column(
            "provider_hash", existing_type=sqlmodel.sql.sqltypes.AutoString(), nullable=False
        )
        batch_op.create_unique_constraint(
            "uq_inbound_message_channel_provider_hash", ["channel", "provider_hash"]
        )
    with op.batch_alter_table("checkin", schema=None) as batch_op:
        batch_op.alter_column(
            "state",
            existing_type=sa.JSON(),
            type_=sa.Text(),
            existing_nullable=False,
            postgresql_using="state::text",
        )
    _each(_CHECKIN, ("state",), _sealed)


def downgrade() -> None:
    _each(_CHECKIN, ("state",), _opened)
    with op.batch_alter_table("checkin", schema=None) as batch_op:
        batch_op.alter_column(
            "state",
            existing_type=sa.Text(),
            type_=sa.JSON(),
            existing_nullable=False,
            postgresql_using="state::json",
        )
    with op.batch_alter_table("inbound_message", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("provider_id", sqlmodel.sql.sqltypes.AutoString(), nullable=True)
        )
    op.execute("UPDATE inbound_message SET provider_id = provider_hash")
    with op.batch_alter_table("inbound_message", schema=None) as batch_op:
        batch_op.drop_constraint("uq_inbound_message_channel_provider_hash", type_="unique")
        batch_op.drop_column("provider_hash")
        batch_op.alter_column(
            "provider_id", existing_type=sqlmodel.sql.sqltypes.AutoString(), nullable=False
        )
        batch_op.create_unique_constraint(
            "uq_inbound_message_channel_provider_id", ["channel", "provider_id"]
        )


def _each(
    table: sa.TableClause, columns: tuple[str, ...], convert: Callable[..., dict[str, str]]
) -> None:
    """Update every row of `table` by id chunks with what `convert(ring, *values)` returns."""
    connection = op.get_bind()
    after = 0
    while True:
        rows = connection.execute(
            sa.select(table.c.id, *(table.c[c] for c in columns))
            .where(table.c.id > after)
            .order_by(table.c.id)
            .limit(CHUNK)
        ).all()
        if not rows:
            return
        ring = _ring(table.name)
        for row in rows:
            values = convert(ring, *row[1:])
            if values:
                connection.execute(sa.update(table).where(table.c.id == row.id).values(**values))
        after = rows[-1].id


def _hashed(ring: KeyRing, channel: str, provider_id: str) -> dict[str, str]:
    return {"provider_hash": ring.lookup_hash(provider_text(channel, provider_id))}


def _sealed(ring: KeyRing, state: str | None) -> dict[str, str]:
    if state is None or is_encrypted(state):
        return {}
    return {"state": ring.encrypt(STATE, state)}


def _opened(ring: KeyRing, state: str | None) -> dict[str, str]:
    if state is None or not is_encrypted(state):
        return {}
    return {"state": ring.decrypt(STATE, state)}


def _ring(name: str) -> KeyRing:
    try:
        return active_ring()
    except NoKey:
        raise KeyProblem(
            f"migration 0011 hashes the message ids and encrypts the check-in state already "
            f"stored (table {name} has some) and needs a key: set CHECKIN_ENCRYPTION_KEY or "
            "[security] key_file, then run `checkin db upgrade` again"
        ) from None

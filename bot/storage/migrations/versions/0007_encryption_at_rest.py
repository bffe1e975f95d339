"""encryption at rest: lookup hash columns; existing names, numbers and texts encrypted

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26 10:00:00

Adds the keyed-hash columns lookups use (patient.address_hash, clinician.address_hash,
inbound_message.sender_hash) and encrypts, in this same transaction, every value already
stored in a column that is now encrypted: the migration either leaves the whole database
encrypted or changes nothing. It needs the key ring when such values exist and stops,
naming what to set, when there is none. The column list is frozen here, as of this
revision, so the script never depends on later table definitions.
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

from bot.storage.crypto import KeyProblem, KeyRing, NoKey, active_ring, is_encrypted

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# table: (encrypted columns, (plaintext column, its hash column) or None)
ENCRYPTED: dict[str, tuple[tuple[str, ...], tuple[str, str] | None]] = {
    "clinician": (("display_name", "address"), ("address", "address_hash")),
    "patient": (("display_name", "address"), ("address", "address_hash")),
    "answer": (("value_text", "raw_text"), None),
    "inbound_message": (("sender", "text"), ("sender", "sender_hash")),
    "outbound_message": (("address", "body"), None),
}
CHUNK = 1000


def upgrade() -> None:
    for name, (_, hashed) in ENCRYPTED.items():
        if hashed is None:
            continue
        with op.batch_alter_table(name, schema=None) as batch_op:
            batch_op.add_column(
                sa.Column(hashed[1], sqlmodel.sql.sqltypes.AutoString(), nullable=True)
            )
            batch_op.create_index(batch_op.f(f"ix_{name}_{hashed[1]}"), [hashed[1]], unique=False)
    for name in ENCRYPTED:
        _convert(name, seal=True)


def downgrade() -> None:
    for name in ENCRYPTED:
        _convert(name, seal=False)
    for name, (_, hashed) in ENCRYPTED.items():
        if hashed is None:
            continue
        with op.batch_alter_table(name, schema=None) as batch_op:
            batch_op.drop_index(batch_op.f(f"ix_{name}_{hashed[1]}"))
            batch_op.drop_column(hashed[1])


def _convert(name: str, *, seal: bool) -> None:
    """Encrypt (seal) or decrypt every value of the table's encrypted columns, by id chunks."""
    columns, hashed = ENCRYPTED[name]
    extra = (hashed[1],) if hashed is not None and seal else ()
    table = sa.table(name, sa.column("id"), *(sa.column(c) for c in (*columns, *extra)))
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
        ring = _ring(name)
        for row in rows:
            values = _sealed(ring, name, row, hashed) if seal else _opened(ring, name, row)
            if values:
                connection.execute(sa.update(table).where(table.c.id == row.id).values(**values))
        after = rows[-1].id


def _sealed(
    ring: KeyRing, name: str, row: sa.Row[Any], hashed: tuple[str, str] | None
) -> dict[str, str]:
    columns, _ = ENCRYPTED[name]
    plain: dict[str, str] = {}
    values: dict[str, str] = {}
    for column in columns:
        value = getattr(row, column)
        if value is None:
            continue
        if is_encrypted(value):
            plain[column] = ring.decrypt(f"{name}.{column}", value)
        else:
            plain[column] = value
            values[column] = ring.encrypt(f"{name}.{column}", value)
    if hashed is not None and hashed[0] in plain:
        values[hashed[1]] = ring.lookup_hash(plain[hashed[0]])
    return values


def _opened(ring: KeyRing, name: str, row: sa.Row[Any]) -> dict[str, str]:
    columns, _ = ENCRYPTED[name]
    return {
        c: ring.decrypt(f"{name}.{c}", getattr(row, c))
        for c in columns
        if getattr(row, c) is not None and is_encrypted(getattr(row, c))
    }


def _ring(name: str) -> KeyRing:
    try:
        return active_ring()
    except NoKey:
        raise KeyProblem(
            f"migration 0006 encrypts the names, numbers and messages already stored (table "
            f"{name} has some) and needs a key: set CHECKIN_ENCRYPTION_KEY or [security] "
            "key_file, then run `checkin db upgrade` again"
        ) from None

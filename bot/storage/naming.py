"""Constraint and index names for every table, set on SQLModel's metadata at import.

Kept apart from the table modules so each of them can import it first: a constraint takes
its name when it is attached to its table, so the convention must be in place before any
table class is defined. Later migrations (SQLite batch mode included) refer to these names.
"""

from sqlmodel import SQLModel

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
SQLModel.metadata.naming_convention = NAMING_CONVENTION

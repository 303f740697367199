"""keyfob's SQL schema, as SQLAlchemy 2 Core metadata, and the migration steps between versions.

SQLAlchemy is used for what it is best at — dialect-correct DDL and SQL text — and not on the
per-request path: :mod:`keyfob.stores.sql._statements` renders each statement once per dialect and
the backends run it on the raw driver (see :mod:`keyfob.stores.sql` for why).

Times are stored as double-precision epoch seconds (``REAL`` on SQLite, ``DOUBLE PRECISION`` on
PostgreSQL); ``data`` is JSON text, encoded and decoded by the store.

Versioning: ``<prefix>meta`` holds ``schema_version``. :data:`MIGRATIONS` maps a version to the
statements that upgrade the previous version to it (``ALTER TABLE ... ADD COLUMN`` and the like;
never a drop of user rows). ``migrate`` creates missing tables, runs the steps past the recorded
version, then creates missing indexes (an index may name a column a step adds).

* 1: sessions, user_versions, revocations, meta.
* 2: the change log (``<prefix>changes``, a table: created as missing) and the version horizons
  (``user_versions.until``, ``user_versions.live``: 0 once the horizon passed and
  ``delete_expired`` took the version out of ``user_versions()``; the number stays).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine.interfaces import Dialect
from sqlalchemy.schema import CreateColumn, CreateIndex, CreateTable

__all__ = [
    "MIGRATIONS", "SCHEMA_VERSION", "Tables", "create_statements", "index_statements", "make_tables",
    "table_statements",
]  # fmt: skip

SCHEMA_VERSION = 2


Step = Callable[["Tables", Dialect], list[str]]


def _add_columns(table_of: Callable[[Tables], sa.Table], *names: str) -> Step:
    def step(tables: Tables, dialect: Dialect) -> list[str]:
        # Idempotent (a process of an older keyfob may write its older schema_version back):
        # IF NOT EXISTS on PostgreSQL; on SQLite the store skips "duplicate column name".
        table = table_of(tables)
        add = "ADD COLUMN IF NOT EXISTS" if dialect.name == "postgresql" else "ADD COLUMN"
        return [f"ALTER TABLE {table.name} {add} {CreateColumn(table.c[n]).compile(dialect=dialect)}"
                for n in names]  # fmt: skip

    return step


#: version → function(tables, dialect) returning the SQL statements that upgrade version-1 to it.
MIGRATIONS: dict[int, Callable[[Tables, Dialect], list[str]]] = {
    2: _add_columns(lambda t: t.user_versions, "until", "live"),
}


@dataclass(frozen=True)
class Tables:
    """The keyfob tables of one schema (one table-name prefix)."""

    metadata: sa.MetaData
    sessions: sa.Table
    user_versions: sa.Table
    revocations: sa.Table
    meta: sa.Table
    changes: sa.Table


def make_tables(prefix: str = "keyfob_") -> Tables:
    """Build the metadata for keyfob's tables, named ``<prefix>sessions`` etc."""
    md = sa.MetaData()
    sessions = sa.Table(
        f"{prefix}sessions",
        md,
        sa.Column("token_hash", sa.LargeBinary(32), primary_key=True),
        sa.Column("id", sa.String(64), nullable=False, index=True),
        sa.Column("user_id", sa.String(255), nullable=False, index=True),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.Column("last_seen_at", sa.Double, nullable=False),
        sa.Column("expires_at", sa.Double, nullable=False, index=True),
        sa.Column("absolute_expires_at", sa.Double, nullable=True),
        sa.Column("authenticated_at", sa.Double, nullable=True),
        sa.Column("ip", sa.String(64), nullable=True),
        sa.Column("user_agent", sa.Text, nullable=True),
        sa.Column("data", sa.Text, nullable=False, server_default="{}"),
        sa.Column("retired_at", sa.Double, nullable=True),
        sa.Column("generation", sa.Integer, nullable=False, server_default="0"),
    )
    user_versions = sa.Table(
        f"{prefix}user_versions",
        md,
        sa.Column("user_id", sa.String(255), primary_key=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("until", sa.Double, nullable=True, index=True),  # the horizon; NULL: forever
        sa.Column("live", sa.Integer, nullable=False, server_default="1"),  # in user_versions()
    )
    revocations = sa.Table(
        f"{prefix}revocations",
        md,
        sa.Column("session_id", sa.String(64), primary_key=True),
        sa.Column("until", sa.Double, nullable=False, index=True),
    )
    meta = sa.Table(
        f"{prefix}meta",
        md,
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    changes = sa.Table(
        f"{prefix}changes",
        md,
        # AUTOINCREMENT on SQLite: a sequence number is never reused, even after every row is pruned
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
                  autoincrement=True),
        sa.Column("kind", sa.String(3), nullable=False),  # "sid" or "ver"
        sa.Column("key", sa.String(255), nullable=False),  # the session id or the user id
        sa.Column("ver", sa.Integer, nullable=True),
        sa.Column("until", sa.Double, nullable=True, index=True),
        sqlite_autoincrement=True,
    )  # fmt: skip
    return Tables(md, sessions, user_versions, revocations, meta, changes)


def table_statements(tables: Tables, dialect: Dialect) -> list[str]:
    """``CREATE TABLE IF NOT EXISTS`` for every table, rendered for ``dialect``."""
    return [
        str(CreateTable(table, if_not_exists=True).compile(dialect=dialect)).strip()
        for table in tables.metadata.sorted_tables
    ]


def index_statements(tables: Tables, dialect: Dialect) -> list[str]:
    """``CREATE INDEX IF NOT EXISTS`` for every index, rendered for ``dialect``."""
    return [
        str(CreateIndex(index, if_not_exists=True).compile(dialect=dialect)).strip()
        for table in tables.metadata.sorted_tables
        for index in sorted(table.indexes, key=lambda i: str(i.name))
    ]


def create_statements(tables: Tables, dialect: Dialect) -> list[str]:
    """Every table, then every index (a fresh schema at :data:`SCHEMA_VERSION`)."""
    return table_statements(tables, dialect) + index_statements(tables, dialect)

"""keyfob's SQL schema, as SQLAlchemy 2 Core metadata, and the migration steps between versions.

SQLAlchemy is used for what it is best at — dialect-correct DDL and SQL text — and not on the
per-request path: :mod:`keyfob.stores.sql` renders each statement once per dialect and runs it
on the raw driver (see that module's docstring for why).

Times are stored as double-precision epoch seconds (``REAL`` on SQLite, ``DOUBLE PRECISION`` on
PostgreSQL); ``data`` is JSON text, encoded and decoded by the store.

Versioning: ``<prefix>meta`` holds ``schema_version``. :data:`MIGRATIONS` maps a version to the
statements that upgrade the previous version to it (``ALTER TABLE ... ADD COLUMN`` and the like;
never a drop of user rows). Version 1 is the first, so it has no steps yet.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine.interfaces import Dialect
from sqlalchemy.schema import CreateIndex, CreateTable

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "Tables", "create_statements", "make_tables"]

SCHEMA_VERSION = 1

#: version → function(tables, dialect) returning the SQL statements that upgrade version-1 to it.
MIGRATIONS: dict[int, Callable[[Tables, Dialect], list[str]]] = {}


@dataclass(frozen=True)
class Tables:
    """The four keyfob tables of one schema (one table-name prefix)."""

    metadata: sa.MetaData
    sessions: sa.Table
    user_versions: sa.Table
    revocations: sa.Table
    meta: sa.Table


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
    return Tables(md, sessions, user_versions, revocations, meta)


def create_statements(tables: Tables, dialect: Dialect) -> list[str]:
    """``CREATE TABLE/INDEX IF NOT EXISTS`` for every table, rendered for ``dialect``."""
    out: list[str] = []
    for table in tables.metadata.sorted_tables:
        out.append(str(CreateTable(table, if_not_exists=True).compile(dialect=dialect)).strip())
        for index in sorted(table.indexes, key=lambda i: str(i.name)):
            out.append(str(CreateIndex(index, if_not_exists=True).compile(dialect=dialect)).strip())
    return out

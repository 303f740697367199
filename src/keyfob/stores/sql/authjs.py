"""Auth.js compatibility: keyfob sessions in Auth.js's own ``sessions`` table.

``open_store(url, authjs_compat=True)`` (options ``authjs_table``, ``authjs_max_age``) reads and
writes Auth.js's own ``sessions`` table (the
``@auth/pg-adapter`` shape: ``id serial``, ``"userId" integer``, ``expires timestamptz``,
``"sessionToken" varchar``; on SQLite any table with those four columns, ``expires`` as ISO-8601
text or epoch milliseconds). Auth.js stores the **raw** session token, so in this mode
``stores_raw_tokens`` is True and ``SessionRecord.token_hash`` carries the raw token's UTF-8 bytes
(the strategy must not hash it). Columns Auth.js lacks come back derived: ``created_at`` and
``last_seen_at`` are ``expires - authjs_max_age`` (when Auth.js last extended it), ``ip``,
``user_agent`` and ``absolute_expires_at`` are None and ``data`` is ``{}``; writes drop them.
The public ``id`` is the table's ``id`` column as text; where that column is an integer (serial,
SQLite ``INTEGER PRIMARY KEY``) or uuid and ``record.id`` does not fit it, the database assigns
the id: re-read the row with ``get`` (the database strategy does, so ``create()`` returns it).
Retired rows cannot be represented, so ``replace(..., keep_old=True)`` raises ConfigError (use the
``database`` strategy, not ``hybrid``, on an Auth.js table). User versions and revocations live in
keyfob's own tables next to it, which ``migrate`` creates; ``migrate`` creates the Auth.js table
only if it is missing and never alters it.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from ..._clock import iso
from ...errors import ConfigError
from .._protocol import LiveRow, SessionRecord, live_row
from ._driver import Duplicate, Ops, Row
from .store import SQLStore

__all__ = ["AuthjsSQLStore"]


def _epoch(value: Any) -> float:
    """Auth.js ``expires`` → epoch seconds (datetime, ISO text, epoch ms or seconds)."""
    if isinstance(value, datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return float(aware.timestamp())
    if isinstance(value, int | float):
        return float(value) / 1000 if value > 1e11 else float(value)
    text = str(value).strip()
    if re.fullmatch(r"-?\d+(\.\d+)?", text):
        return _epoch(float(text))
    dt = datetime.fromisoformat(text.replace("Z", "+00:00").replace(" ", "T", 1))
    return _epoch(dt)


def _iso(ts: float) -> str:
    return iso(ts)


def _fits(value: str, udt: str) -> bool:
    """Whether ``value`` can be cast to the PostgreSQL column type ``udt`` without an error."""
    if udt in ("int2", "int4", "int8"):
        return value.isascii() and value.isdigit() and len(value) < 19
    if udt == "uuid":
        try:
            uuid.UUID(value)
        except ValueError:
            return False
    return True


class AuthjsSQLStore(SQLStore):
    """Auth.js's ``sessions`` table (``open_store(url, authjs_compat=True)``; see the module docstring).

    Statements are written PostgreSQL-style (``$1``, ``::text::{column}`` casts to the column's
    reflected type) and adapted for SQLite (``?1``, no casts) by :meth:`_prep`.
    """

    stores_raw_tokens = True

    def __init__(self, url: str, *, authjs_table: str = "sessions", authjs_max_age: float = 30 * 86400,
                 **options: Any) -> None:  # fmt: skip
        super().__init__(url, **options)
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", authjs_table):
            raise ConfigError(f"bad authjs_table {authjs_table!r}", hint="use letters, digits and _")
        self._table_name = authjs_table
        self._max_age = float(authjs_max_age)
        self._types: dict[str, str] | None = None
        self._lock_key = authjs_table
        pg = self._driver.postgres
        self._id_text = "id::text" if pg else "CAST(id AS TEXT)"
        self._sel = (
            'SELECT "sessionToken", id::text, "userId"::text, extract(epoch from expires)::float8 FROM {t}'
            if pg
            else 'SELECT "sessionToken", CAST(id AS TEXT), CAST("userId" AS TEXT), expires FROM {t}'
        )

    def _prep(self, sql: str, types: Mapping[str, str] | None = None) -> str:
        sql = sql.replace("{t}", f'"{self._table_name}"')
        if self._driver.postgres:
            sql = sql.replace("to_ts(", "to_timestamp(")
            return re.sub(r"\{(\w+)\}", lambda m: (types or {})[m.group(1)], sql)
        sql = re.sub(r"::text::\{\w+\}", "", sql).replace("to_ts(", "(")
        return re.sub(r"\$(\d+)", r"?\1", sql)

    def _ts(self, ts: float) -> Any:
        return ts if self._driver.postgres else _iso(ts)

    async def _udt(self) -> dict[str, str]:
        """The table's column types (PostgreSQL ``udt_name``), reflected once."""
        if self._types is None:
            if self._driver.postgres:
                rows = await self._driver.all(
                    "SELECT column_name, udt_name FROM information_schema.columns "
                    "WHERE table_name = $1 AND table_schema = current_schema()",
                    (self._table_name,),
                )
                types = {str(r[0]): str(r[1]) for r in rows}
            else:
                rows = await self._driver.all(f'PRAGMA table_info("{self._table_name}")', ())
                # SQLite affinity: an INT-typed column (INTEGER PRIMARY KEY above all) holds integers only
                types = {str(r[1]): "int8" if "INT" in str(r[2]).upper() else "text" for r in rows}
            missing = {"id", "userId", "expires", "sessionToken"} - set(types)
            if missing:
                raise ConfigError(
                    f"the Auth.js table {self._table_name!r} is missing or lacks {sorted(missing)}",
                    hint="run `keyfob migrate` or set authjs_table to the table Auth.js uses",
                )
            self._types = types
        return self._types

    def _fits(self, value: str, column: str, types: Mapping[str, str]) -> bool:
        return _fits(value, types[column])

    def _rec(self, row: Row) -> SessionRecord:
        exp = _epoch(row[3])
        start = exp - self._max_age
        return SessionRecord(str(row[0]).encode(), row[1], row[2], start, start, exp)

    # sessions ------------------------------------------------------------------------------------

    async def get(self, token_hash: bytes) -> SessionRecord | None:
        try:
            token = token_hash.decode()
        except UnicodeDecodeError:
            return None
        row = await self._driver.one(self._prep(self._sel + ' WHERE "sessionToken" = $1'), (token,))
        return None if row is None else self._rec(row)

    async def get_live(self, token_hash: bytes) -> LiveRow | None:
        return live_row(await self.get(token_hash))  # Auth.js rows are never retired

    async def _exists(self, ops: Ops, token_hash: bytes) -> bool:
        sql = self._prep('SELECT 1 FROM {t} WHERE "sessionToken" = $1')
        return await ops.one(sql, (token_hash.decode(errors="replace"),)) is not None

    async def _insert(self, ops: Ops, r: SessionRecord) -> None:
        types = await self._udt()
        if not self._fits(r.user_id, "userId", types):
            raise ValueError(
                f"the Auth.js table's userId column is {types['userId']}; the user id does not fit"
            )
        cols = '"sessionToken", "userId", expires'
        vals = "$1, $2::text::{userId}, to_ts($3)"
        params: list[Any] = [r.token_hash.decode(), r.user_id, self._ts(r.expires_at)]
        if self._fits(r.id, "id", types):
            cols += ", id"
            vals += ", $4::text::{id}"
            params.append(r.id)
        try:
            await ops.execute(self._prep(f"INSERT INTO {{t}} ({cols}) VALUES ({vals})", types), params)
        except Duplicate as exc:
            raise ValueError("a session with this token already exists") from exc

    async def add(self, record: SessionRecord) -> None:
        await self._insert(self._driver, record)

    async def add_limited(self, record: SessionRecord, *, limit: int, evict: bool, now: float,
                          idle_timeout: float | None) -> tuple[bool, list[str]]:
        await self._udt()  # reflect the column types before the transaction holds a connection
        return await super().add_limited(record, limit=limit, evict=evict, now=now, idle_timeout=idle_timeout)

    async def touch(self, token_hash: bytes, *, seen: float, expires: float) -> None:
        sql = self._prep('UPDATE {t} SET expires = to_ts($2) WHERE "sessionToken" = $1')
        await self._driver.execute(sql, (token_hash.decode(), self._ts(expires)))

    async def set_data(self, token_hash: bytes, data: Mapping[str, Any]) -> bool:
        raise ConfigError(
            "the Auth.js sessions table has no data column, so a session's data cannot be updated",
            hint="keep the data in your users table (Auth.js's session callback), or use keyfob's own schema",
        )

    async def replace(self, old_hash: bytes, new: SessionRecord, *, now: float, keep_old: bool) -> bool:
        if keep_old:
            raise ConfigError(
                "the Auth.js sessions table cannot keep retired refresh tokens",
                hint="use the database strategy with authjs_compat, or keyfob's own schema for hybrid",
            )
        # In place, like SQLStore.replace: the row (and its id) stays, so a concurrent delete(id)
        # that waited on the row lock deletes the rotated session too.
        sql = self._prep('UPDATE {t} SET "sessionToken" = $2, expires = to_ts($3) WHERE "sessionToken" = $1')
        try:
            params = (old_hash.decode(), new.token_hash.decode(), self._ts(new.expires_at))
            n = await self._driver.execute(sql, params)
        except Duplicate:
            return False
        return n == 1

    async def delete(self, session_id: str) -> int:
        return await self._delete_in(self._driver, session_id)

    async def _delete_in(self, ops: Ops, session_id: str) -> int:
        types = await self._udt()
        if not self._fits(session_id, "id", types):
            return 0
        sql = self._prep("DELETE FROM {t} WHERE id = $1::text::{id}", types)
        return await ops.execute(sql, (session_id,))

    async def get_by_id(self, session_id: str) -> SessionRecord | None:
        types = await self._udt()
        if not self._fits(session_id, "id", types):
            return None
        row = await self._driver.one(
            self._prep(self._sel + " WHERE id = $1::text::{id}", types), (session_id,)
        )
        return None if row is None else self._rec(row)

    async def list_user(self, user_id: str) -> Sequence[SessionRecord]:
        return await self._user_rows(self._driver, user_id)

    async def _user_rows(self, ops: Ops, user_id: str) -> list[SessionRecord]:
        types = await self._udt()
        if not self._fits(user_id, "userId", types):
            return []
        sql = self._prep(self._sel + ' WHERE "userId" = $1::text::{userId} ORDER BY expires, id', types)
        return [self._rec(r) for r in await ops.all(sql, (user_id,))]

    async def delete_user(self, user_id: str, *, keep: str | None = None) -> list[str]:
        types = await self._udt()
        if not self._fits(user_id, "userId", types):
            return []
        sql = 'DELETE FROM {t} WHERE "userId" = $1::text::{userId}'
        params: list[Any] = [user_id]
        if keep is not None:
            sql += f" AND {self._id_text} <> $2"
            params.append(keep)
        rows = await self._driver.all(self._prep(f"{sql} RETURNING {self._id_text}, expires", types), params)
        return [r[0] for r in sorted(rows, key=lambda r: (_epoch(r[1]), r[0]))]

    async def _delete_expired_sessions(self, tx: Ops, now: float, batch: int) -> int:
        if self._driver.postgres:
            sql = "DELETE FROM {t} WHERE id IN (SELECT id FROM {t} WHERE expires < to_ts($1) LIMIT $2)"
            params: tuple[Any, ...] = (now, batch)
        else:  # Prisma keeps epoch milliseconds, the Kysely/pg-style adapters ISO-8601 text
            sql = (
                "DELETE FROM {t} WHERE rowid IN (SELECT rowid FROM {t} WHERE "
                "(typeof(expires) = 'text' AND expires < $1) OR "
                "(typeof(expires) IN ('integer', 'real') AND expires < $2) LIMIT $3)"
            )
            params = (_iso(now), now * 1000, batch)
        return await tx.execute(self._prep(sql), params)

    async def count(self) -> int:
        row = await self._driver.one(self._prep("SELECT count(*) FROM {t}"), ())
        return int(row[0]) if row else 0

    async def _migrate_extra(self, tx: Ops) -> None:
        if self._driver.postgres:  # @auth/pg-adapter's schema
            ddl = (
                'CREATE TABLE IF NOT EXISTS {t} (id SERIAL, "userId" INTEGER NOT NULL, '
                'expires TIMESTAMPTZ NOT NULL, "sessionToken" VARCHAR(255) NOT NULL, PRIMARY KEY (id))'
            )
        else:
            ddl = (
                'CREATE TABLE IF NOT EXISTS {t} (id TEXT PRIMARY KEY, "userId" TEXT NOT NULL, '
                'expires TEXT NOT NULL, "sessionToken" TEXT NOT NULL UNIQUE)'
            )
        await tx.execute(self._prep(ddl), ())
        # Lookups are by token; the pg-adapter schema has no index on it. Adding one changes no row.
        await tx.execute(
            self._prep(
                f'CREATE INDEX IF NOT EXISTS "{self._table_name}_sessionToken_kf" ON {{t}} ("sessionToken")'
            ),
            (),
        )
        self._types = None

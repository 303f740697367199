"""``SQLStore``: keyfob's own schema on SQLite or PostgreSQL (the drivers are in ``sqlite``/``postgres``).

* ``replace`` rewrites the live row in place with a conditional
  ``UPDATE ... WHERE token_hash = :old AND retired_at IS NULL`` (plus, with ``keep_old``, a
  ``SELECT ... FOR UPDATE`` first and an insert of the retired copy, in one transaction): the row
  lock (PostgreSQL) or the write lock (SQLite) makes a second concurrent call see zero rows and
  return False, and a concurrent ``delete(id)`` that waited on the lock deletes the new version.
* ``add_limited`` (``max_sessions_per_user``) counts, evicts and inserts in one transaction that
  first takes a per-user lock: ``pg_advisory_xact_lock`` on (table, user) on PostgreSQL, the
  ``BEGIN IMMEDIATE`` write lock on SQLite.
* The change log (``<prefix>changes``) gets a row in the same transaction as each revocation and
  version bump. On PostgreSQL that transaction first takes an advisory lock on the log, so
  sequence numbers commit in order and a reader paging by ``seq > cursor`` never skips a row that
  commits late; SQLite's write lock does the same.
* ``migrate`` is one transaction, serialized by ``pg_advisory_xact_lock`` (PostgreSQL) or
  ``BEGIN IMMEDIATE`` (SQLite): any number of processes may run it at once on a fresh database.
"""

from __future__ import annotations

import functools
import secrets
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.dialects.postgresql import asyncpg as asyncpg_dialect
from sqlalchemy.engine.interfaces import Dialect

from ...errors import ConfigError, StoreUnavailable
from .. import _schema
from .._protocol import ChangePage, LiveRow, SessionRecord, over_limit
from ._driver import Driver, Duplicate, Ops, Row
from ._options import SQLOptions, parse
from ._statements import FIELDS, Statements, dumps, live, params, record

if TYPE_CHECKING:
    from .feed import PostgresFeed

__all__ = ["SQLStore", "open_driver"]


def open_driver(opts: SQLOptions) -> Driver:
    if not opts.postgres:
        from .sqlite import SqliteDriver, sqlite_path

        return SqliteDriver(sqlite_path(opts.url), busy_timeout=opts.busy_timeout)
    try:
        import asyncpg  # noqa: F401  (fail early, in open_store, when the driver is missing)
    except ImportError as exc:
        raise ConfigError(
            "the PostgreSQL store needs asyncpg", hint="pip install 'keyfob[postgres]'"
        ) from exc
    from .postgres import PgDriver, pg_dsn

    return PgDriver(pg_dsn(opts.url), min_size=opts.pool_min, max_size=opts.pool_size,
                    connect_timeout=opts.connect_timeout, pgbouncer=opts.pgbouncer)  # fmt: skip


@functools.lru_cache(maxsize=32)
def _rendered(table_prefix: str, postgres: bool) -> tuple[_schema.Tables, Statements, Dialect]:
    """The tables and statements of one prefix and dialect, rendered once per process (rendering
    takes tens of milliseconds; stores opened on many files or URLs share it)."""
    dialect: Dialect
    if postgres:
        dialect = asyncpg_dialect.dialect()  # type: ignore[no-untyped-call]
    else:
        dialect = sqlite_dialect.dialect(paramstyle="qmark")
    tables = _schema.make_tables(table_prefix)
    return tables, Statements(tables, dialect, postgres=postgres), dialect


def _missing_table(exc: BaseException) -> bool:
    """The store's tables are not there (never migrated, or dropped)."""
    cause = exc.__cause__
    return "no such table" in str(cause) or type(cause).__name__ == "UndefinedTableError"


class _Lost(Exception):
    """``replace`` found no live old row (internal)."""


class SQLStore:
    """:class:`~keyfob.stores.SessionStore` on SQLite or PostgreSQL.

    Options (``?name=value`` in the URL, or keyword arguments): ``table_prefix`` (default
    ``"keyfob_"``: the namespace), ``busy_timeout`` (SQLite, seconds), ``pool_size`` (PostgreSQL,
    default 8), ``pool_min``, ``connect_timeout``, ``pgbouncer`` (the URL is a PgBouncer in
    transaction mode), ``listen_url`` (a direct connection for the feed's LISTEN). For Auth.js's
    ``sessions`` table, ``open_store(url, authjs_compat=True)`` gives an
    :class:`~keyfob.stores.sql.AuthjsSQLStore`.
    """

    stores_raw_tokens: bool = False

    def __init__(self, url: str, **options: Any) -> None:
        if options.pop("authjs_compat", False):
            raise ConfigError(
                "SQLStore does not read Auth.js tables",
                hint="use open_store(url, authjs_compat=True) or AuthjsSQLStore(url)",
            )
        self._opts = parse(url, options)
        #: the table prefix in use ("" for the default ``keyfob_``)
        self.namespace = self._opts.namespace
        self._driver: Driver = open_driver(self._opts)
        self._tables, self._q, dialect = _rendered(self._opts.table_prefix, self._driver.postgres)
        self._get_sql = self._q.get.sql
        self._get_live_sql = self._q.get_live.sql
        self._one_now: Callable[[str, Sequence[Any]], Row | None] | None = getattr(
            self._driver, "one_now", None
        )
        self._dialect = dialect
        self._lock_key = self._tables.sessions.name  # add_limited's advisory lock: (table, user)
        #: SQLite only (None elsewhere): ``get`` as a plain call, for callers that cannot await
        #: (keyfob.django's session backend) — the statement runs on the held connection anyway.
        #: Not offered by subclasses that override get. (The async ``get`` awaits the driver like
        #: every other method: skipping that one await saved ~1k instructions a request, <1%.)
        self.get_sync: Callable[[bytes], SessionRecord | None] | None = None
        if self._one_now is not None and type(self).get is SQLStore.get:
            self.get_sync = self._get_sync

    def get_statement(self) -> tuple[str, Callable[[Row], SessionRecord]] | None:
        """PostgreSQL only (None on SQLite, and in subclasses that override ``get``): ``get``'s SQL
        (one ``$1`` parameter, the token hash) and the row codec, for a caller that runs the lookup
        on a connection of its own to the same database (keyfob.django: Django's connection, which
        saves the event loop that this store's asyncpg pool needs)."""
        if not self._driver.postgres or type(self).get is not SQLStore.get:
            return None
        return self._get_sql, record

    def _get_sync(self, token_hash: bytes) -> SessionRecord | None:
        one_now = self._one_now
        assert one_now is not None
        row = one_now(self._get_sql, (token_hash,))
        return None if row is None else record(row)

    # -- sessions ------------------------------------------------------------------------------

    async def get(self, token_hash: bytes) -> SessionRecord | None:
        row = await self._driver.one(self._get_sql, (token_hash,))
        return None if row is None else record(row)

    async def get_live(self, token_hash: bytes) -> LiveRow | None:
        """The live row with this hash, as a :class:`~keyfob.stores.LiveRow` (only its columns are read)."""
        row = await self._driver.one(self._get_live_sql, (token_hash,))
        return None if row is None else live(row)

    async def add(self, record: SessionRecord) -> None:
        try:
            await self._driver.execute(self._q.insert.sql, params(record))
        except Duplicate as exc:
            raise ValueError("a session with this token hash already exists") from exc

    async def add_limited(self, record: SessionRecord, *, limit: int, evict: bool, now: float,
                          idle_timeout: float | None) -> tuple[bool, list[str]]:
        """``add`` under a per-user limit (see ``SessionStore``), in one transaction holding a
        per-user lock (PostgreSQL: advisory lock; SQLite: the write lock ``BEGIN IMMEDIATE`` takes)."""
        try:
            async with self._driver.transaction() as tx:
                if self._driver.postgres:
                    await tx.execute("SELECT pg_advisory_xact_lock(hashtext($1), hashtext($2))",
                                     (self._lock_key, record.user_id))
                if await self._exists(tx, record.token_hash):
                    raise Duplicate("token hash")  # before any eviction: this call changes nothing
                evicted = over_limit(await self._user_rows(tx, record.user_id),
                                     limit=limit, now=now, idle_timeout=idle_timeout)
                if evicted is not None and not evict:
                    return False, []
                for sid in evicted or ():
                    await self._delete_in(tx, sid)
                await self._insert(tx, record)
        except Duplicate as exc:
            raise ValueError("a session with this token hash already exists") from exc
        return True, evicted or []

    async def _exists(self, ops: Ops, token_hash: bytes) -> bool:
        return await ops.one(self._get_sql, (token_hash,)) is not None

    async def _insert(self, ops: Ops, r: SessionRecord) -> None:
        await ops.execute(self._q.insert.sql, params(r))

    async def _user_rows(self, ops: Ops, user_id: str) -> list[SessionRecord]:
        return [record(r) for r in await ops.all(self._q.list_user.sql, (user_id,))]

    async def _delete_in(self, ops: Ops, session_id: str) -> int:
        rows = await ops.all(self._q.delete_id.sql, (session_id,))
        return sum(1 for r in rows if r[0] is None)

    async def touch(self, token_hash: bytes, *, seen: float, expires: float) -> None:
        await self._driver.execute(
            self._q.touch.sql, self._q.touch.bind(h=token_hash, seen=seen, exp=expires)
        )

    async def set_data(self, token_hash: bytes, data: Mapping[str, Any]) -> bool:
        q = self._q.set_data
        return await self._driver.execute(q.sql, q.bind(h=token_hash, d=dumps(data))) == 1

    async def replace(self, old_hash: bytes, new: SessionRecord, *, now: float, keep_old: bool) -> bool:
        # The live row is rewritten in place (its token_hash changes), never deleted and re-inserted:
        # a concurrent ``delete(id)`` waiting on the row lock then re-checks the *new* version and
        # deletes it (PostgreSQL READ COMMITTED), so a revoke racing a rotation cannot miss the new
        # token. With ``keep_old`` a retired copy of the old row is inserted next to it.
        q = self._q
        values = {f"new_{f}": v for f, v in zip(FIELDS, params(new), strict=True)}
        swap = q.swap.bind(old=old_hash, **values)
        try:
            if not keep_old:
                return await self._driver.execute(q.swap.sql, swap) == 1
            async with self._driver.transaction() as tx:
                old = await tx.one(q.lock_live.sql, (old_hash,))
                if old is None or await tx.execute(q.swap.sql, swap) != 1:
                    raise _Lost
                retired = list(old)
                retired[FIELDS.index("retired_at")] = now
                await tx.execute(q.insert.sql, retired)
        except (_Lost, Duplicate):
            return False
        return True

    async def delete(self, session_id: str) -> int:
        return await self._delete_in(self._driver, session_id)

    async def get_by_id(self, session_id: str) -> SessionRecord | None:
        row = await self._driver.one(self._q.get_by_id.sql, self._q.get_by_id.bind(sid=session_id))
        return None if row is None else record(row)

    async def list_user(self, user_id: str) -> Sequence[SessionRecord]:
        rows = await self._driver.all(self._q.list_user.sql, (user_id,))
        return [record(r) for r in rows]

    async def delete_user(self, user_id: str, *, keep: str | None = None) -> list[str]:
        if keep is None:
            rows = await self._driver.all(self._q.delete_user.sql, (user_id,))
        else:
            rows = await self._driver.all(
                self._q.delete_user_keep.sql, self._q.delete_user_keep.bind(uid=user_id, keep=keep)
            )
        return list(dict.fromkeys(r[0] for r in sorted(rows, key=lambda r: (r[1], r[0]))))

    async def delete_expired(self, now: float, *, batch: int = 1000) -> int:
        """Up to ``batch`` expired sessions, and up to ``batch`` each of expired revocations,
        version horizons and change-log entries, in one transaction; returns the sessions deleted."""
        async with self._driver.transaction() as tx:
            n = await self._delete_expired_sessions(tx, now, batch)
            q = self._q
            for stmt in (q.delete_revocations, q.prune_versions, q.prune_changes):
                await tx.execute(stmt.sql, stmt.bind(now=now, batch=batch))
        return n

    async def _delete_expired_sessions(self, tx: Ops, now: float, batch: int) -> int:
        q = self._q.delete_expired
        return await tx.execute(q.sql, q.bind(now=now, batch=batch))

    async def count(self) -> int:
        row = await self._driver.one(self._q.count.sql, ())
        return int(row[0]) if row else 0

    async def sessions_page(
        self, cursor: str | None, *, limit: int = 500
    ) -> tuple[list[SessionRecord], str | None]:
        """Every row (live, expired, retired), ``limit`` at a time in token-hash order, for admin
        listings (``keyfob sessions list --all``). Pass the cursor back; None means done."""
        after = bytes.fromhex(cursor) if cursor else b""
        rows = await self._driver.all(self._q.page.sql, self._q.page.bind(after=after, n=limit))
        records = [record(r) for r in rows]
        return records, (records[-1].token_hash.hex() if len(records) == limit else None)

    # -- versions, revocations and the change log -------------------------------------------------

    async def _lock_log(self, tx: Ops) -> None:
        """PostgreSQL: commit change-log rows in sequence order (see the module docstring)."""
        if self._driver.postgres:
            await tx.execute("SELECT pg_advisory_xact_lock(hashtext($1))", (self._tables.changes.name,))

    async def _log(self, tx: Ops, kind: str, key: str, ver: int | None, until: float | None) -> None:
        q = self._q.append_change
        await tx.execute(q.sql, q.bind(kind=kind, key=key, ver=ver, until=until))

    async def get_user_version(self, user_id: str) -> int:
        row = await self._driver.one(self._q.get_version.sql, (user_id,))
        return int(row[0]) if row else 0

    async def bump_user_version(self, user_id: str, *, until: float | None = None) -> int:
        q = self._q.bump_version
        async with self._driver.transaction() as tx:  # a write: never retried like reads are
            await self._lock_log(tx)
            row = await tx.one(q.sql, q.bind(uid=user_id, until=until, until2=until))
            assert row is not None
            version = int(row[0])
            await self._log(tx, "ver", user_id, version, until)
        return version

    async def user_versions(self) -> Mapping[str, int]:
        rows = await self._driver.all(self._q.versions.sql, self._q.versions.bind())
        return {r[0]: int(r[1]) for r in rows}

    async def add_revocation(self, session_id: str, *, until: float) -> None:
        q = self._q.add_revocation
        async with self._driver.transaction() as tx:
            await self._lock_log(tx)
            await tx.execute(q.sql, q.bind(sid=session_id, until=until))
            await self._log(tx, "sid", session_id, None, until)

    async def revocations(self, now: float) -> Mapping[str, float]:
        rows = await self._driver.all(self._q.revocations.sql, (now,))
        return {r[0]: float(r[1]) for r in rows}

    async def is_revoked(self, session_id: str, *, now: float) -> bool:
        q = self._q.is_revoked
        return await self._driver.one(q.sql, q.bind(sid=session_id, now=now)) is not None

    async def changes(self, cursor: str | None, *, now: float, limit: int = 1000) -> ChangePage:
        after = 0
        if cursor is not None:
            if not cursor.isdigit():
                raise ValueError(f"not a cursor of this store: {cursor!r}")
            after = int(cursor)
        q = self._q.changes
        rows = await self._driver.all(q.sql, q.bind(after=after, now=now, n=limit + 1))
        more = len(rows) > limit
        events: list[dict[str, Any]] = []
        for seq, kind, key, ver, until in rows[:limit]:
            after = int(seq)
            if kind == "sid":
                events.append({"t": "sid", "sid": key, "until": float(until)})
            else:
                events.append({"t": "ver", "user": key, "ver": int(ver),
                               "until": None if until is None else float(until)})  # fmt: skip
        return ChangePage(events, str(after), more)

    # -- epoch, feed, lifecycle -----------------------------------------------------------------

    async def epoch(self) -> str | None:
        try:
            row = await self._driver.one(self._q.get_meta.sql, ("epoch",))
        except StoreUnavailable as exc:
            if _missing_table(exc):
                return None
            raise
        return None if row is None else str(row[0])

    def feed(self) -> PostgresFeed | None:
        """PostgreSQL: a LISTEN/NOTIFY feed on this namespace's channel (LISTEN on ``listen_url``
        when given, publishing through this store's pool). SQLite: None (the engine polls)."""
        if not self._driver.postgres:
            return None
        from .feed import PostgresFeed, channel_for

        opts = self._opts
        if opts.pgbouncer and opts.listen_url is None:
            raise ConfigError(
                "LISTEN does not work through PgBouncer in transaction mode, so this store has no feed",
                hint="add ?listen_url=postgresql://… (a direct connection to the database) to the store URL",
            )
        return PostgresFeed(opts.listen_url or opts.url, channel=channel_for(self.namespace),
                            publisher=self._driver)  # fmt: skip

    async def schema_version(self) -> int | None:
        """The schema version recorded in the meta table, or None before the first ``migrate``."""
        try:
            row = await self._driver.one(self._q.get_meta.sql, ("schema_version",))
        except StoreUnavailable as exc:
            if _missing_table(exc):
                return None
            raise
        return int(row[0]) if row else None

    async def migrate(self) -> None:
        """Create missing tables, run every migration step past the recorded version, create missing
        indexes and the epoch; one serialized transaction (see the module docstring)."""
        q = self._q
        async with self._driver.transaction() as tx:
            if self._driver.postgres:
                await tx.execute("SELECT pg_advisory_xact_lock(hashtext('keyfob:migrate'), hashtext($1))",
                                 (self._opts.table_prefix,))  # fmt: skip
            for ddl in q.create_tables:
                await tx.execute(ddl, ())
            await self._migrate_extra(tx)
            row = await tx.one(q.get_meta.sql, ("schema_version",))
            # No meta row means the tables were created just now, at the current version
            # (every keyfob version that creates tables also writes the row).
            target = _schema.SCHEMA_VERSION
            current = int(row[0]) if row else target
            for version in range(current + 1, target + 1):
                for ddl in _schema.MIGRATIONS[version](self._tables, self._dialect):
                    try:
                        await tx.execute(ddl, ())
                    except StoreUnavailable as exc:  # SQLite: the column is there already
                        if "duplicate column name" not in str(exc.__cause__):
                            raise
            for ddl in q.create_indexes:
                await tx.execute(ddl, ())
            recorded = str(max(current, target))  # a newer keyfob's schema is left as it is
            await tx.execute(q.set_meta.sql, q.set_meta.bind(k="schema_version", val=recorded))
            await tx.execute(q.add_meta.sql, q.add_meta.bind(k="epoch", val=secrets.token_urlsafe(12)))

    async def _migrate_extra(self, tx: Ops) -> None:
        """Hook for subclasses (Auth.js mode creates its table here)."""

    async def close(self) -> None:
        await self._driver.close()



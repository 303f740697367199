"""SQL session store (SQLite, PostgreSQL) and the PostgreSQL LISTEN/NOTIFY revocation feed.

```python
store = SQLStore("sqlite:///keyfob.db")                 # also sqlite+aiosqlite:///
store = SQLStore("postgresql://postgres@127.0.0.1/app")  # also postgresql+asyncpg://
await store.migrate()
```

Why SQLAlchemy only for the schema
----------------------------------
The store is read on every request of the ``database`` strategy, so its ``get`` is measured
against the raw drivers (``docs/BASELINES``): a stdlib ``sqlite3`` SHA-256 + primary-key lookup
costs ≈13 µs, an ``asyncpg`` ``fetchrow`` on a held connection ≈110 µs, while the same lookup
through SQLAlchemy's async ORM/Core costs 240-650 µs. So:

* SQLAlchemy 2 Core (:mod:`keyfob.stores._schema`) defines the tables, renders the DDL and renders
  every statement **once per dialect** into a plain SQL string; nothing from SQLAlchemy runs per
  call.
* **SQLite** statements run on one held stdlib ``sqlite3`` connection (WAL, ``synchronous=NORMAL``,
  ``busy_timeout``, ``check_same_thread=False``) **directly in the event loop**: a primary-key
  lookup is cheaper than the hop to a worker thread. Writes are short ``BEGIN IMMEDIATE``
  transactions on the same connection under an ``asyncio.Lock`` (and a ``threading.RLock``, for
  apps that share a store between threads). Nothing inside a transaction yields to the event loop,
  so no other coroutine can interleave with it. Trade-off: if *another process* holds SQLite's
  write lock, a write blocks the loop for up to ``busy_timeout`` (3 s by default).
* **PostgreSQL** statements run on ``asyncpg`` connections from a small pool of our own (min 1,
  max 8): ``asyncpg.Pool.acquire``/``release`` alone cost ≈150 µs per call here (reset query,
  timeouts), our pool's fast path is a ``list.pop``. asyncpg caches the prepared statements per
  connection. A connection that raised anything is discarded, never reused; reads that fail on a
  connection that had been idle are retried once on a fresh one, so a restarted server or killed
  backend costs no failed request when the server is back.
* ``replace`` rewrites the live row in place with a conditional
  ``UPDATE ... WHERE token_hash = :old AND retired_at IS NULL`` (plus, with ``keep_old``, a
  ``SELECT ... FOR UPDATE`` first and an insert of the retired copy, in one transaction): the row
  lock (PostgreSQL) or the write lock (SQLite) makes a second concurrent call see zero rows and
  return False, and a concurrent ``delete(id)`` that waited on the lock deletes the new version.

* ``add_limited`` (``max_sessions_per_user``) counts, evicts and inserts in one transaction that
  first takes a per-user lock: ``pg_advisory_xact_lock`` on (table, user) on PostgreSQL, the
  ``BEGIN IMMEDIATE`` write lock on SQLite. Concurrent sign-ins of one user, on any node, queue
  behind each other, so none of them counts rows another one is about to change.

Every driver or OS error becomes :class:`~keyfob.StoreUnavailable` (``from`` the driver error).

Auth.js compatibility mode
--------------------------
``SQLStore(url, authjs_compat=True)`` reads and writes Auth.js's own ``sessions`` table (the
``@auth/pg-adapter`` shape: ``id serial``, ``"userId" integer``, ``expires timestamptz``,
``"sessionToken" varchar``; on SQLite any table with those four columns, ``expires`` as ISO-8601
text or epoch milliseconds). Auth.js stores the **raw** session token, so in this mode
``stores_raw_tokens`` is True and ``SessionRecord.token_hash`` carries the raw token's UTF-8 bytes
(the strategy must not hash it). Columns Auth.js lacks come back derived: ``created_at`` and
``last_seen_at`` are ``expires - authjs_max_age`` (when Auth.js last extended it), ``ip``,
``user_agent`` and ``absolute_expires_at`` are None and ``data`` is ``{}``; writes drop them.
The public ``id`` is the table's ``id`` column as text; where that column is an integer (serial)
or uuid and ``record.id`` does not fit it, the database assigns the id (re-read it with ``get``).
Retired rows cannot be represented, so ``replace(..., keep_old=True)`` raises ConfigError (use the
``database`` strategy, not ``hybrid``, on an Auth.js table). User versions and revocations live in
keyfob's own tables next to it, which ``migrate`` creates; ``migrate`` creates the Auth.js table
only if it is missing and never alters it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import sqlite3
import threading
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.dialects.postgresql import asyncpg as asyncpg_dialect
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine.interfaces import Dialect

from .._frozen import fast_constructor
from .._json import loads as _json_loads
from ..errors import ConfigError, StoreUnavailable
from ._feedloop import ReconnectingFeed, deliver
from ._protocol import FeedHandler, SessionRecord, eviction_key, is_live
from ._schema import MIGRATIONS, SCHEMA_VERSION, Tables, create_statements, make_tables

if TYPE_CHECKING:
    import asyncpg

__all__ = ["PostgresFeed", "SQLStore"]

Row = Sequence[Any]
_MISSING: Any = object()


class _Duplicate(Exception):
    """A unique constraint refused an insert (turned into ValueError by ``add``)."""


# ---------------------------------------------------------------------------------------------
# statements rendered once per dialect


@dataclass(frozen=True, slots=True)
class _Q:
    """A statement rendered for one driver: SQL text and how to order its parameters."""

    sql: str
    names: tuple[str, ...]
    defaults: tuple[Any, ...]

    def bind(self, **params: Any) -> tuple[Any, ...]:
        return tuple(params[n] if n in params else d for n, d in zip(self.names, self.defaults, strict=True))


def _render(stmt: sa.ClauseElement, dialect: Dialect, column_keys: list[str] | None = None) -> _Q:
    compiled = stmt.compile(dialect=dialect, column_keys=column_keys)
    names = tuple(getattr(compiled, "positiontup", None) or ())
    values = compiled.params
    return _Q(str(compiled), names, tuple(values.get(n, _MISSING) for n in names))


_FIELDS = (
    "token_hash", "id", "user_id", "created_at", "last_seen_at", "expires_at", "absolute_expires_at",
    "authenticated_at", "ip", "user_agent", "data", "retired_at", "generation",
)  # fmt: skip


class _Statements:
    """Every statement the keyfob schema needs, rendered for one dialect."""

    def __init__(self, tables: Tables, dialect: Dialect, *, postgres: bool) -> None:
        t, v, r, m = tables.sessions, tables.user_versions, tables.revocations, tables.meta
        bp = sa.bindparam
        cols = [t.c[f] for f in _FIELDS]
        live = t.c.retired_at.is_(None)
        ins: Any = pg_insert if postgres else sqlite_insert
        greatest = sa.func.greatest if postgres else sa.func.max

        def q(stmt: sa.ClauseElement, column_keys: list[str] | None = None) -> _Q:
            return _render(stmt, dialect, column_keys)

        self.get = q(sa.select(*cols).where(t.c.token_hash == bp("h")))
        self.get_by_id = q(sa.select(*cols).where(t.c.id == bp("sid"), live).limit(1))
        self.list_user = q(
            sa.select(*cols).where(t.c.user_id == bp("uid"), live).order_by(t.c.created_at, t.c.id)
        )
        self.insert = q(sa.insert(t), list(_FIELDS))
        self.touch = q(
            sa.update(t)
            .where(t.c.token_hash == bp("h"), live)
            .values(last_seen_at=bp("seen"), expires_at=bp("exp"))
        )
        self.lock_live = q(sa.select(*cols).where(t.c.token_hash == bp("h"), live).with_for_update())
        self.swap = q(
            sa.update(t)
            .where(t.c.token_hash == bp("old"), live)
            .values({f: bp(f"new_{f}") for f in _FIELDS})
        )
        self.delete_id = q(sa.delete(t).where(t.c.id == bp("sid")).returning(t.c.retired_at))
        deleted = (t.c.id, t.c.created_at)
        self.delete_user = q(sa.delete(t).where(t.c.user_id == bp("uid")).returning(*deleted))
        self.delete_user_keep = q(
            sa.delete(t).where(t.c.user_id == bp("uid"), t.c.id != bp("keep")).returning(*deleted)
        )
        past = sa.or_(t.c.expires_at < bp("now"), t.c.absolute_expires_at < bp("now"))
        doomed = sa.select(t.c.token_hash).where(past).limit(bp("batch", type_=sa.Integer))
        self.delete_expired = q(sa.delete(t).where(t.c.token_hash.in_(doomed.scalar_subquery())))
        self.delete_revocations = q(sa.delete(r).where(r.c.until < bp("now")))
        self.count = q(sa.select(sa.func.count()).select_from(t))
        self.get_version = q(sa.select(v.c.version).where(v.c.user_id == bp("uid")))
        self.bump_version = q(
            ins(v)
            .values(user_id=bp("uid"), version=1)
            .on_conflict_do_update(index_elements=[v.c.user_id], set_={"version": v.c.version + 1})
            .returning(v.c.version)
        )
        self.versions = q(sa.select(v.c.user_id, v.c.version).where(v.c.version != 0))
        up = ins(r).values(session_id=bp("sid"), until=bp("until"))
        self.add_revocation = q(
            up.on_conflict_do_update(
                index_elements=[r.c.session_id], set_={"until": greatest(r.c.until, up.excluded.until)}
            )
        )
        self.revocations = q(sa.select(r.c.session_id, r.c.until).where(r.c.until > bp("now")))
        self.get_meta = q(sa.select(m.c.value).where(m.c.key == bp("k")))
        mi = ins(m).values(key=bp("k"), value=bp("val"))
        self.set_meta = q(
            mi.on_conflict_do_update(index_elements=[m.c.key], set_={"value": mi.excluded.value})
        )
        self.create = create_statements(tables, dialect)


def _loads(text: str | None) -> dict[str, Any]:
    if not text or text == "{}":
        return {}
    value = _json_loads(text)  # json.loads, minus its Python wrapper (per-request read path)
    return value if isinstance(value, dict) else {}


def _dumps(data: Mapping[str, Any]) -> str:
    if not data:
        return "{}"
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


_new_record = fast_constructor(SessionRecord)  # per-request reads: see keyfob._frozen


def _record(row: Row) -> SessionRecord:
    return _new_record(
        row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], row[8], row[9],
        _loads(row[10]), row[11], row[12],
    )  # fmt: skip


def _params(r: SessionRecord) -> tuple[Any, ...]:
    return (
        r.token_hash, r.id, r.user_id, r.created_at, r.last_seen_at, r.expires_at,
        r.absolute_expires_at, r.authenticated_at, r.ip, r.user_agent, _dumps(r.data), r.retired_at,
        r.generation,
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------
# drivers: the same three primitives over sqlite3 and asyncpg


class _Ops(Protocol):
    async def one(self, sql: str, params: Sequence[Any]) -> Row | None: ...
    async def all(self, sql: str, params: Sequence[Any]) -> list[Row]: ...
    async def execute(self, sql: str, params: Sequence[Any]) -> int: ...


class _Driver(_Ops, Protocol):
    postgres: bool

    def transaction(self) -> contextlib.AbstractAsyncContextManager[_Ops]: ...
    async def close(self) -> None: ...


def _sqlite_error(exc: sqlite3.Error) -> Exception:
    if isinstance(exc, sqlite3.IntegrityError):
        return _Duplicate(str(exc))
    return StoreUnavailable(f"the SQLite store failed: {type(exc).__name__}: {exc}")


class _SqliteDriver:
    """One held stdlib ``sqlite3`` connection, used directly in the event loop."""

    postgres = False

    def __init__(self, path: str, *, busy_timeout: float = 3.0) -> None:
        self._path = path
        self._busy_ms = int(busy_timeout * 1000)
        self._db: sqlite3.Connection | None = None
        self._tlock = threading.RLock()
        self._alock: asyncio.Lock | None = None
        self._closed = False

    def _conn(self) -> sqlite3.Connection:
        db = self._db
        if db is None:
            if self._closed:
                raise sqlite3.ProgrammingError("the store is closed")
            db = sqlite3.connect(
                self._path, check_same_thread=False, isolation_level=None, timeout=self._busy_ms / 1000
            )
            try:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
                db.execute(f"PRAGMA busy_timeout={self._busy_ms}")
            except BaseException:
                db.close()
                raise
            self._db = db
        return db

    def one_now(self, sql: str, params: Sequence[Any]) -> Row | None:
        """``one`` without the coroutine: the ``get`` hot path calls it directly."""
        try:
            with self._tlock:
                row: Row | None = self._conn().execute(sql, params).fetchone()
                return row
        except sqlite3.Error as exc:
            raise _sqlite_error(exc) from exc

    async def one(self, sql: str, params: Sequence[Any]) -> Row | None:
        return self.one_now(sql, params)

    async def all(self, sql: str, params: Sequence[Any]) -> list[Row]:
        try:
            with self._tlock:
                return self._conn().execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise _sqlite_error(exc) from exc

    async def execute(self, sql: str, params: Sequence[Any]) -> int:
        try:
            with self._tlock:
                return self._conn().execute(sql, params).rowcount
        except sqlite3.Error as exc:
            raise _sqlite_error(exc) from exc

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[_Ops]:
        if self._alock is None:
            self._alock = asyncio.Lock()
        async with self._alock:
            with self._tlock:
                try:
                    db = self._conn()
                    db.execute("BEGIN IMMEDIATE")
                except sqlite3.Error as exc:
                    raise _sqlite_error(exc) from exc
                try:
                    yield self
                except BaseException:
                    with contextlib.suppress(sqlite3.Error):
                        db.execute("ROLLBACK")
                    raise
                try:
                    db.execute("COMMIT")
                except sqlite3.Error as exc:
                    with contextlib.suppress(sqlite3.Error):
                        db.execute("ROLLBACK")
                    raise _sqlite_error(exc) from exc

    async def close(self) -> None:
        with self._tlock:
            self._closed = True
            if self._db is not None:
                self._db.close()
                self._db = None


def _pg_error(exc: BaseException) -> Exception:
    import asyncpg

    if isinstance(exc, asyncpg.UniqueViolationError):
        return _Duplicate(type(exc).__name__)
    if isinstance(exc, StoreUnavailable):
        return exc
    return StoreUnavailable(f"the PostgreSQL store failed: {type(exc).__name__}: {exc}")


def _pg_dsn(url: str) -> str:
    scheme, rest = url.split("://", 1)
    if scheme.startswith("postgresql+") or scheme.startswith("postgres+"):
        scheme = "postgresql"
    return f"{scheme}://{rest}"


class _PgOps:
    """The primitives on one connection inside a transaction."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def one(self, sql: str, params: Sequence[Any]) -> Row | None:
        row: Row | None = await self._conn.fetchrow(sql, *params)
        return row

    async def all(self, sql: str, params: Sequence[Any]) -> list[Row]:
        rows: list[Row] = await self._conn.fetch(sql, *params)
        return rows

    async def execute(self, sql: str, params: Sequence[Any]) -> int:
        status: str = await self._conn.execute(sql, *params)
        tail = status.rsplit(" ", 1)[-1]
        return int(tail) if tail.isdigit() else 0


class _PgDriver:
    """A minimal asyncpg connection pool: ``list.pop`` on the fast path, broken connections dropped.

    ``_size`` counts open connections plus slots reserved for a waiter that is about to open one.
    """

    postgres = True

    def __init__(self, dsn: str, *, min_size: int = 1, max_size: int = 8, connect_timeout: float = 5.0,
                 command_timeout: float | None = 10.0) -> None:  # fmt: skip
        self._dsn = dsn
        self._min = min_size
        self._max = max(1, max_size)
        self._connect_timeout = connect_timeout
        self._command_timeout = command_timeout
        self._idle: list[asyncpg.Connection] = []
        self._size = 0
        self._waiters: deque[asyncio.Future[asyncpg.Connection | None]] = deque()
        self._closed = False

    async def _connect(self) -> asyncpg.Connection:
        import asyncpg

        try:
            conn: asyncpg.Connection = await asyncpg.connect(
                self._dsn, timeout=self._connect_timeout, command_timeout=self._command_timeout
            )
        except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise StoreUnavailable(f"cannot connect to PostgreSQL: {type(exc).__name__}: {exc}") from exc
        return conn

    async def _acquire(self) -> tuple[asyncpg.Connection, bool]:
        """A connection, and whether it was opened just now (vs reused)."""
        if self._closed:
            raise StoreUnavailable("the PostgreSQL store is closed", hint="open a new store")
        while self._idle:
            conn = self._idle.pop()
            if not conn.is_closed():
                return conn, False
            self._size -= 1
        if self._size >= self._max:
            fut: asyncio.Future[asyncpg.Connection | None] = asyncio.get_running_loop().create_future()
            self._waiters.append(fut)
            try:
                got = await fut
            except BaseException:
                if fut.done() and not fut.cancelled() and fut.exception() is None:
                    handed = fut.result()
                    if handed is not None:
                        self._release(handed)
                    else:
                        self._size -= 1
                        self._wake()
                raise
            if got is not None:
                if not got.is_closed():
                    return got, False
                got.terminate()
            # the slot (a closed connection's, or one reserved by _wake) is ours: open a connection
        else:
            self._size += 1
        try:
            return await self._connect(), True
        except BaseException:
            self._size -= 1
            self._wake()
            raise

    def _wake(self) -> None:
        """A slot freed up: hand it to the first waiter, which opens a connection of its own."""
        while self._waiters and self._size < self._max:
            fut = self._waiters.popleft()
            if not fut.done():
                self._size += 1
                fut.set_result(None)
                return

    def _release(self, conn: asyncpg.Connection) -> None:
        if self._closed or conn.is_closed() or conn.is_in_transaction():
            self._discard(conn)
            return
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(conn)
                return
        self._idle.append(conn)

    def _discard(self, conn: asyncpg.Connection) -> None:
        self._size -= 1
        conn.terminate()
        self._wake()

    def _purge_idle(self) -> None:
        """After a connection-level failure the idle ones are probably dead too (server restart)."""
        idle, self._idle = self._idle, []
        for conn in idle:
            self._discard(conn)

    @staticmethod
    def _retryable(exc: BaseException) -> bool:
        import asyncpg

        return isinstance(
            exc,
            OSError | asyncpg.InterfaceError | asyncpg.PostgresConnectionError
            | asyncpg.exceptions.OperatorInterventionError
            # a FATAL that arrived while the connection sat idle leaves the protocol in this state
            | asyncpg.exceptions.InternalClientError,
        )  # fmt: skip

    async def _read_again(self, fetch: str, sql: str, params: Sequence[Any]) -> Any:
        """Second attempt of a read that failed on a reused connection: fresh connection, no retry."""
        self._purge_idle()
        conn, _ = await self._acquire()
        try:
            result = await getattr(conn, fetch)(sql, *params)
        except BaseException as exc:
            self._discard(conn)
            if not isinstance(exc, Exception):
                raise
            raise _pg_error(exc) from exc
        self._release(conn)
        return result

    async def one(self, sql: str, params: Sequence[Any]) -> Row | None:
        conn, fresh = await self._acquire()
        try:
            row: Row | None = await conn.fetchrow(sql, *params)
        except BaseException as exc:
            self._discard(conn)
            if not isinstance(exc, Exception):
                raise
            if not fresh and self._retryable(exc):
                row = await self._read_again("fetchrow", sql, params)
                return row
            raise _pg_error(exc) from exc
        self._release(conn)
        return row

    async def all(self, sql: str, params: Sequence[Any]) -> list[Row]:
        conn, fresh = await self._acquire()
        try:
            rows: list[Row] = await conn.fetch(sql, *params)
        except BaseException as exc:
            self._discard(conn)
            if not isinstance(exc, Exception):
                raise
            if not fresh and self._retryable(exc):
                rows = await self._read_again("fetch", sql, params)
                return rows
            raise _pg_error(exc) from exc
        self._release(conn)
        return rows

    async def execute(self, sql: str, params: Sequence[Any]) -> int:
        # Writes are not retried: the statement may have run before the connection broke.
        conn, _ = await self._acquire()
        try:
            n = await _PgOps(conn).execute(sql, params)
        except BaseException as exc:
            self._discard(conn)
            if not isinstance(exc, Exception):
                raise
            if self._retryable(exc):
                self._purge_idle()
            raise _pg_error(exc) from exc
        self._release(conn)
        return n

    async def _begin(self) -> tuple[asyncpg.Connection, Any]:
        """A connection with a transaction started; BEGIN is retried once on a fresh connection."""
        for attempt in (0, 1):
            conn, fresh = await self._acquire()
            tr = conn.transaction()
            try:
                await tr.start()
            except BaseException as exc:
                self._discard(conn)
                if not isinstance(exc, Exception):
                    raise
                if attempt == 0 and not fresh and self._retryable(exc):
                    self._purge_idle()
                    continue
                raise _pg_error(exc) from exc
            return conn, tr
        raise AssertionError("unreachable")  # pragma: no cover

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[_Ops]:
        conn, tr = await self._begin()
        try:
            yield _PgOps(conn)
        except BaseException as exc:
            try:
                await tr.rollback()
            except BaseException:
                self._discard(conn)
            else:
                self._release(conn)
            if _is_driver_error(exc):
                raise _pg_error(exc) from exc
            raise
        try:
            await tr.commit()
        except BaseException as exc:
            self._discard(conn)
            if _is_driver_error(exc):
                raise _pg_error(exc) from exc
            raise
        self._release(conn)

    async def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            self._size -= 1
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), 2)
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_exception(StoreUnavailable("the PostgreSQL store is closed"))


def _is_driver_error(exc: BaseException) -> bool:
    return isinstance(exc, OSError | TimeoutError) or type(exc).__module__.startswith("asyncpg")


def _sqlite_path(url: str) -> str:
    rest = url.split("://", 1)[1]
    if not rest.startswith("/"):
        raise ConfigError(
            f"bad SQLite URL {url!r}", hint="use sqlite:///relative.db or sqlite:////abs/path.db"
        )
    path = rest[1:]
    return path or ":memory:"


def _open_driver(url: str, options: Mapping[str, Any]) -> _Driver:
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme in ("sqlite", "sqlite+aiosqlite"):
        return _SqliteDriver(_sqlite_path(url), busy_timeout=float(options.get("busy_timeout", 3.0)))
    if scheme in ("postgresql", "postgresql+asyncpg", "postgres"):
        import asyncpg  # noqa: F401  (fail early, in open_store, when the driver is missing)

        return _PgDriver(
            _pg_dsn(url),
            min_size=int(options.get("pool_min", 1)),
            max_size=int(options.get("pool_max", 8)),
            connect_timeout=float(options.get("connect_timeout", 5.0)),
        )
    raise ConfigError(f"SQLStore cannot open {scheme!r} URLs", hint="use sqlite:/// or postgresql://")


# ---------------------------------------------------------------------------------------------
# the store


class SQLStore:
    """:class:`~keyfob.stores.SessionStore` on SQLite or PostgreSQL (see the module docstring).

    Options: ``table_prefix`` (default ``"keyfob_"``), ``busy_timeout`` (SQLite, seconds),
    ``pool_min``/``pool_max``/``connect_timeout`` (PostgreSQL), ``authjs_compat`` (+
    ``authjs_table``, ``authjs_max_age``) for Auth.js's ``sessions`` table.
    """

    stores_raw_tokens: bool = False

    def __new__(cls, url: str, *, authjs_compat: bool = False, **options: Any) -> SQLStore:
        if authjs_compat and cls is SQLStore:
            cls = AuthjsSQLStore
        return super().__new__(cls)

    def __init__(self, url: str, *, authjs_compat: bool = False, table_prefix: str = "keyfob_",
                 **options: Any) -> None:  # fmt: skip
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", table_prefix):
            raise ConfigError(f"bad table_prefix {table_prefix!r}", hint="use letters, digits and _")
        self._driver: _Driver = _open_driver(url, options)
        self._options = options
        dialect: Dialect
        if self._driver.postgres:
            dialect = asyncpg_dialect.dialect()  # type: ignore[no-untyped-call]
        else:
            dialect = sqlite_dialect.dialect(paramstyle="qmark")
        self._tables = make_tables(table_prefix)
        self._q = _Statements(self._tables, dialect, postgres=self._driver.postgres)
        self._get_sql = self._q.get.sql
        self._one_now: Callable[[str, Sequence[Any]], Row | None] | None = getattr(
            self._driver, "one_now", None
        )
        self._dialect = dialect
        self._lock_key = self._tables.sessions.name  # add_limited's advisory lock: (table, user)
        #: SQLite only (None elsewhere): ``get`` as a plain call, for the database strategy's
        #: per-request lookup — the statement runs on the held connection in the loop anyway, so
        #: the coroutine around it is pure overhead. Not offered by subclasses that override get.
        self.get_sync: Callable[[bytes], SessionRecord | None] | None = None
        if self._one_now is not None and type(self).get is SQLStore.get:
            self.get_sync = self._get_sync

    def _get_sync(self, token_hash: bytes) -> SessionRecord | None:
        one_now = self._one_now
        assert one_now is not None
        row = one_now(self._get_sql, (token_hash,))
        return None if row is None else _record(row)

    # -- sessions ------------------------------------------------------------------------------

    async def get(self, token_hash: bytes) -> SessionRecord | None:
        now = self._one_now
        if now is not None:  # SQLite: no await at all
            row = now(self._get_sql, (token_hash,))
        else:
            row = await self._driver.one(self._get_sql, (token_hash,))
        return None if row is None else _record(row)

    async def add(self, record: SessionRecord) -> None:
        try:
            await self._driver.execute(self._q.insert.sql, _params(record))
        except _Duplicate as exc:
            raise ValueError("a session with this token hash already exists") from exc

    async def add_limited(self, record: SessionRecord, *, limit: int, evict: bool, now: float,
                          idle_timeout: float | None) -> tuple[bool, list[str]]:
        """``add`` under a per-user limit (see ``SessionStore``), in one transaction holding a
        per-user lock (PostgreSQL: advisory lock; SQLite: the write lock ``BEGIN IMMEDIATE`` takes)."""
        evicted: list[str] = []
        try:
            async with self._driver.transaction() as tx:
                if self._driver.postgres:
                    await tx.execute("SELECT pg_advisory_xact_lock(hashtext($1), hashtext($2))",
                                     (self._lock_key, record.user_id))
                if await self._exists(tx, record.token_hash):
                    raise _Duplicate("token hash")  # before any eviction: this call changes nothing
                rows = await self._user_rows(tx, record.user_id)
                live = [r for r in rows if is_live(r, now, idle_timeout)]
                if len(live) >= limit:
                    if not evict:
                        return False, []
                    live.sort(key=eviction_key)
                    evicted = list(dict.fromkeys(r.id for r in live[: len(live) - limit + 1]))
                    for sid in evicted:
                        await self._delete_in(tx, sid)
                await self._insert(tx, record)
        except _Duplicate as exc:
            raise ValueError("a session with this token hash already exists") from exc
        return True, evicted

    async def _exists(self, ops: _Ops, token_hash: bytes) -> bool:
        return await ops.one(self._get_sql, (token_hash,)) is not None

    async def _insert(self, ops: _Ops, r: SessionRecord) -> None:
        await ops.execute(self._q.insert.sql, _params(r))

    async def _user_rows(self, ops: _Ops, user_id: str) -> list[SessionRecord]:
        return [_record(r) for r in await ops.all(self._q.list_user.sql, (user_id,))]

    async def _delete_in(self, ops: _Ops, session_id: str) -> int:
        rows = await ops.all(self._q.delete_id.sql, (session_id,))
        return sum(1 for r in rows if r[0] is None)

    async def touch(self, token_hash: bytes, *, seen: float, expires: float) -> None:
        await self._driver.execute(
            self._q.touch.sql, self._q.touch.bind(h=token_hash, seen=seen, exp=expires)
        )

    async def replace(self, old_hash: bytes, new: SessionRecord, *, now: float, keep_old: bool) -> bool:
        # The live row is rewritten in place (its token_hash changes), never deleted and re-inserted:
        # a concurrent ``delete(id)`` waiting on the row lock then re-checks the *new* version and
        # deletes it (PostgreSQL READ COMMITTED), so a revoke racing a rotation cannot miss the new
        # token. With ``keep_old`` a retired copy of the old row is inserted next to it.
        q = self._q
        values = {f"new_{f}": v for f, v in zip(_FIELDS, _params(new), strict=True)}
        swap = q.swap.bind(old=old_hash, **values)
        try:
            if not keep_old:
                return await self._driver.execute(q.swap.sql, swap) == 1
            async with self._driver.transaction() as tx:
                old = await tx.one(q.lock_live.sql, (old_hash,))
                if old is None or await tx.execute(q.swap.sql, swap) != 1:
                    raise _Lost
                retired = list(old)
                retired[_FIELDS.index("retired_at")] = now
                await tx.execute(q.insert.sql, retired)
        except (_Lost, _Duplicate):
            return False
        return True

    async def delete(self, session_id: str) -> int:
        return await self._delete_in(self._driver, session_id)

    async def get_by_id(self, session_id: str) -> SessionRecord | None:
        row = await self._driver.one(self._q.get_by_id.sql, self._q.get_by_id.bind(sid=session_id))
        return None if row is None else _record(row)

    async def list_user(self, user_id: str) -> Sequence[SessionRecord]:
        rows = await self._driver.all(self._q.list_user.sql, (user_id,))
        return [_record(r) for r in rows]

    async def delete_user(self, user_id: str, *, keep: str | None = None) -> list[str]:
        if keep is None:
            rows = await self._driver.all(self._q.delete_user.sql, (user_id,))
        else:
            rows = await self._driver.all(
                self._q.delete_user_keep.sql, self._q.delete_user_keep.bind(uid=user_id, keep=keep)
            )
        return list(dict.fromkeys(r[0] for r in sorted(rows, key=lambda r: (r[1], r[0]))))

    async def delete_expired(self, now: float, *, batch: int = 1000) -> int:
        q = self._q
        async with self._driver.transaction() as tx:
            n = await tx.execute(q.delete_expired.sql, q.delete_expired.bind(now=now, batch=batch))
            await tx.execute(q.delete_revocations.sql, (now,))
        return n

    async def count(self) -> int:
        row = await self._driver.one(self._q.count.sql, ())
        return int(row[0]) if row else 0

    # -- versions and revocations ---------------------------------------------------------------

    async def get_user_version(self, user_id: str) -> int:
        row = await self._driver.one(self._q.get_version.sql, (user_id,))
        return int(row[0]) if row else 0

    async def bump_user_version(self, user_id: str) -> int:
        q = self._q.bump_version
        async with self._driver.transaction() as tx:  # a write: never retried like reads are
            row = await tx.one(q.sql, q.bind(uid=user_id))
        assert row is not None
        return int(row[0])

    async def user_versions(self) -> Mapping[str, int]:
        rows = await self._driver.all(self._q.versions.sql, self._q.versions.bind())
        return {r[0]: int(r[1]) for r in rows}

    async def add_revocation(self, session_id: str, *, until: float) -> None:
        q = self._q.add_revocation
        await self._driver.execute(q.sql, q.bind(sid=session_id, until=until))

    async def revocations(self, now: float) -> Mapping[str, float]:
        rows = await self._driver.all(self._q.revocations.sql, (now,))
        return {r[0]: float(r[1]) for r in rows}

    # -- lifecycle --------------------------------------------------------------------------------

    async def schema_version(self) -> int | None:
        """The schema version recorded in the meta table, or None before the first ``migrate``."""
        try:
            row = await self._driver.one(self._q.get_meta.sql, ("schema_version",))
        except StoreUnavailable as exc:
            if "no such table" in str(exc) or "UndefinedTable" in str(exc):
                return None
            raise
        return int(row[0]) if row else None

    async def migrate(self) -> None:
        """Create missing tables, then run every migration step past the recorded version."""
        async with self._driver.transaction() as tx:
            for ddl in self._q.create:
                await tx.execute(ddl, ())
            await self._migrate_extra(tx)
            row = await tx.one(self._q.get_meta.sql, ("schema_version",))
            # No meta row means the tables were created just now, at the current version
            # (every keyfob version that creates tables also writes the row).
            current = int(row[0]) if row else SCHEMA_VERSION
            for version in range(current + 1, SCHEMA_VERSION + 1):
                for ddl in MIGRATIONS[version](self._tables, self._dialect):
                    await tx.execute(ddl, ())
            q = self._q.set_meta
            await tx.execute(q.sql, q.bind(k="schema_version", val=str(SCHEMA_VERSION)))

    async def _migrate_extra(self, tx: _Ops) -> None:
        """Hook for subclasses (Auth.js mode creates its table here)."""

    async def close(self) -> None:
        await self._driver.close()


class _Lost(Exception):
    """``replace`` found no live old row (internal)."""


# ---------------------------------------------------------------------------------------------
# Auth.js compatibility


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
    from .._clock import iso

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
    """``SQLStore(url, authjs_compat=True)``: Auth.js's ``sessions`` table (see the module docstring).

    Statements are written PostgreSQL-style (``$1``, ``::text::{column}`` casts to the column's
    reflected type) and adapted for SQLite (``?1``, no casts) by :meth:`_prep`.
    """

    stores_raw_tokens = True

    def __init__(self, url: str, *, authjs_compat: bool = True, table_prefix: str = "keyfob_",
                 authjs_table: str = "sessions", authjs_max_age: float = 30 * 86400,
                 **options: Any) -> None:  # fmt: skip
        super().__init__(url, table_prefix=table_prefix, **options)
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
                types = {str(r[1]): "text" for r in rows}
            missing = {"id", "userId", "expires", "sessionToken"} - set(types)
            if missing:
                raise ConfigError(
                    f"the Auth.js table {self._table_name!r} is missing or lacks {sorted(missing)}",
                    hint="run `keyfob migrate` or set authjs_table to the table Auth.js uses",
                )
            self._types = types
        return self._types

    def _fits(self, value: str, column: str, types: Mapping[str, str]) -> bool:
        return not self._driver.postgres or _fits(value, types[column])

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

    async def _exists(self, ops: _Ops, token_hash: bytes) -> bool:
        sql = self._prep('SELECT 1 FROM {t} WHERE "sessionToken" = $1')
        return await ops.one(sql, (token_hash.decode(errors="replace"),)) is not None

    async def _insert(self, ops: _Ops, r: SessionRecord) -> None:
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
        except _Duplicate as exc:
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
        except _Duplicate:
            return False
        return n == 1

    async def delete(self, session_id: str) -> int:
        return await self._delete_in(self._driver, session_id)

    async def _delete_in(self, ops: _Ops, session_id: str) -> int:
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

    async def _user_rows(self, ops: _Ops, user_id: str) -> list[SessionRecord]:
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

    async def delete_expired(self, now: float, *, batch: int = 1000) -> int:
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
        async with self._driver.transaction() as tx:
            n = await tx.execute(self._prep(sql), params)
            await tx.execute(self._q.delete_revocations.sql, (now,))
        return n

    async def count(self) -> int:
        row = await self._driver.one(self._prep("SELECT count(*) FROM {t}"), ())
        return int(row[0]) if row else 0

    async def _migrate_extra(self, tx: _Ops) -> None:
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


# ---------------------------------------------------------------------------------------------
# PostgreSQL LISTEN/NOTIFY feed

CHANNEL = "keyfob_revocations"


class PostgresFeed(ReconnectingFeed):
    """:class:`~keyfob.stores.RevocationFeed` over PostgreSQL ``LISTEN/NOTIFY`` (channel
    ``keyfob_revocations``), on a dedicated asyncpg connection.

    The listener reconnects with exponential backoff (0.05 s → 2 s) and checks the connection
    with ``SELECT 1`` every ``health_interval`` seconds, so a silently dead server is noticed
    within about a second. NOTIFY payloads are limited to 8000 bytes by PostgreSQL.
    """

    _task_name = "keyfob-pg-feed"

    def __init__(self, url: str, *, channel: str = CHANNEL, health_interval: float = 0.5,
                 connect_timeout: float = 3.0) -> None:  # fmt: skip
        super().__init__()
        self._dsn = _pg_dsn(url)
        self._channel = channel
        self._health = health_interval
        self._connect_timeout = connect_timeout
        self._pub: asyncpg.Connection | None = None
        self._pub_lock: asyncio.Lock | None = None

    async def _connect(self) -> asyncpg.Connection:
        import asyncpg

        conn: asyncpg.Connection = await asyncpg.connect(self._dsn, timeout=self._connect_timeout)
        return conn

    async def publish(self, event: Mapping[str, Any]) -> None:
        payload = json.dumps(event, separators=(",", ":"))
        if self._pub_lock is None:
            self._pub_lock = asyncio.Lock()
        async with self._pub_lock:
            for attempt in (0, 1):
                try:
                    if self._pub is None or self._pub.is_closed():
                        self._pub = await self._connect()
                    await self._pub.execute("SELECT pg_notify($1, $2)", self._channel, payload)
                    return
                except Exception as exc:
                    if self._pub is not None:
                        self._pub.terminate()
                        self._pub = None
                    if attempt == 1:
                        raise StoreUnavailable(
                            f"cannot publish to PostgreSQL: {type(exc).__name__}: {exc}"
                        ) from exc

    async def _listen(self, handler: FeedHandler, subscribed: Callable[[], Awaitable[None]]) -> None:
        lost = asyncio.Event()
        conn = await self._connect()
        try:
            conn.add_termination_listener(lambda _c: lost.set())
            await conn.add_listener(self._channel, lambda _c, _pid, _ch, payload: deliver(handler, payload))
            await subscribed()
            while not self._closing and not lost.is_set():
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(lost.wait(), self._health)
                if lost.is_set() or self._closing:
                    return
                await asyncio.wait_for(conn.fetchval("SELECT 1"), max(self._health * 2, 1.0))
        finally:
            conn.terminate()

    async def _close_publisher(self) -> None:
        if self._pub is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._pub.close(), 2)
            self._pub = None

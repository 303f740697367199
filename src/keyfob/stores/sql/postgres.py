"""PostgreSQL: asyncpg connections from a small pool of our own.

``asyncpg.Pool.acquire``/``release`` alone cost ≈150 µs per call here (reset query, timeouts); this
pool's fast path is a ``list.pop``. It opens connections on demand up to ``pool_size`` (default 8)
and keeps them. asyncpg caches the prepared statements per connection. A connection that raised
anything is discarded, never reused; reads that fail on a connection that had been idle are
retried once on a fresh one, so a restarted server or killed backend costs no failed request
when the server is back.

Through PgBouncer in transaction mode (``?pgbouncer=1``): PgBouncer hands a server connection to
a client for one transaction only, so a named prepared statement made in one is missing in the
next. With ``pgbouncer=1`` asyncpg's statement cache is off (``statement_cache_size=0``): each
statement is an unnamed one whose Parse/Describe/Flush and Bind/Execute/Sync reach one server
connection (asyncpg ≥ 0.25 sends no Sync in between, so PgBouncer does not switch). Tested
against a real PgBouncer 1.18 under concurrency (``tests/contract/test_sql_scaling.py``). LISTEN
does not work through it: the feed needs ``?listen_url=`` (a direct connection).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

from ...errors import ConfigError, StoreUnavailable
from ._driver import Duplicate, Ops, Row, is_driver_error

if TYPE_CHECKING:
    import asyncpg

__all__ = ["PgDriver", "pg_dsn", "pg_error"]


def pg_error(exc: BaseException) -> Exception:
    import asyncpg

    if isinstance(exc, asyncpg.UniqueViolationError):
        return Duplicate(type(exc).__name__)
    if isinstance(exc, StoreUnavailable | ConfigError):
        return exc
    if isinstance(exc, asyncpg.InvalidSQLStatementNameError | asyncpg.DuplicatePreparedStatementError):
        # a prepared statement vanished between two statements: a transaction-mode pooler
        return ConfigError(
            f"PostgreSQL lost a prepared statement ({type(exc).__name__}): the store URL points at "
            "PgBouncer (or another pooler) in transaction mode",
            hint="add ?pgbouncer=1 to the store URL, and ?listen_url=postgresql://… (a direct "
            "connection) for the revocation feed",
        )
    return StoreUnavailable(f"the PostgreSQL store failed: {type(exc).__name__}: {exc}")


def pg_dsn(url: str) -> str:
    """``postgresql+asyncpg://`` and ``postgres://`` → a DSN asyncpg takes."""
    scheme, rest = url.split("://", 1)
    if scheme.startswith("postgresql+") or scheme.startswith("postgres+"):
        scheme = "postgresql"
    return f"{scheme}://{rest}"


class PgOps:
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


class PgDriver:
    """A minimal asyncpg connection pool: ``list.pop`` on the fast path, broken connections dropped.

    ``_size`` counts open connections plus slots reserved for a waiter that is about to open one.
    """

    postgres = True

    def __init__(self, dsn: str, *, min_size: int = 1, max_size: int = 8, connect_timeout: float = 5.0,
                 command_timeout: float | None = 10.0, pgbouncer: bool = False) -> None:  # fmt: skip
        self._dsn = dsn
        self._min = min_size
        self._max = max(1, max_size)
        self._connect_timeout = connect_timeout
        self._command_timeout = command_timeout
        self._pgbouncer = pgbouncer
        self._idle: list[asyncpg.Connection] = []
        self._size = 0
        self._waiters: deque[asyncio.Future[asyncpg.Connection | None]] = deque()
        self._closed = False

    @property
    def connections(self) -> int:
        """Open connections (idle and in use): at most ``pool_size``."""
        return self._size

    async def _connect(self) -> asyncpg.Connection:
        import asyncpg

        extra: dict[str, Any] = {"statement_cache_size": 0} if self._pgbouncer else {}
        try:
            conn: asyncpg.Connection = await asyncpg.connect(
                self._dsn, timeout=self._connect_timeout, command_timeout=self._command_timeout, **extra
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

    async def _read(self, fetch: str, sql: str, params: Sequence[Any]) -> Any:
        """A read; when it fails on a reused connection (probably dead since the server restarted),
        once more on a fresh one, after dropping the idle ones."""
        for attempt in (0, 1):
            conn, fresh = await self._acquire()
            try:
                result = await getattr(conn, fetch)(sql, *params)
            except BaseException as exc:
                self._discard(conn)
                if not isinstance(exc, Exception):
                    raise
                if attempt == 0 and not fresh and self._retryable(exc):
                    self._purge_idle()
                    continue
                raise pg_error(exc) from exc
            self._release(conn)
            return result
        raise AssertionError("unreachable")  # pragma: no cover

    async def one(self, sql: str, params: Sequence[Any]) -> Row | None:
        row: Row | None = await self._read("fetchrow", sql, params)
        return row

    async def all(self, sql: str, params: Sequence[Any]) -> list[Row]:
        rows: list[Row] = await self._read("fetch", sql, params)
        return rows

    async def execute(self, sql: str, params: Sequence[Any]) -> int:
        # Writes are not retried: the statement may have run before the connection broke.
        conn, _ = await self._acquire()
        try:
            n = await PgOps(conn).execute(sql, params)
        except BaseException as exc:
            self._discard(conn)
            if not isinstance(exc, Exception):
                raise
            if self._retryable(exc):
                self._purge_idle()
            raise pg_error(exc) from exc
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
                raise pg_error(exc) from exc
            return conn, tr
        raise AssertionError("unreachable")  # pragma: no cover

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Ops]:
        conn, tr = await self._begin()
        try:
            yield PgOps(conn)
        except BaseException as exc:
            try:
                await tr.rollback()
            except BaseException:
                self._discard(conn)
            else:
                self._release(conn)
            if is_driver_error(exc):
                raise pg_error(exc) from exc
            raise
        try:
            await tr.commit()
        except BaseException as exc:
            self._discard(conn)
            if is_driver_error(exc):
                raise pg_error(exc) from exc
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

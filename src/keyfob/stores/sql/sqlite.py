"""SQLite: one held stdlib ``sqlite3`` connection, used directly in the event loop.

WAL, ``synchronous=NORMAL``, ``busy_timeout`` and ``check_same_thread=False``. A primary-key
lookup is cheaper than the hop to a worker thread, so statements run in the loop. Writes are
short ``BEGIN IMMEDIATE`` transactions on the same connection under an ``asyncio.Lock`` (and a
``threading.RLock``, for apps that share a store between threads); nothing inside a transaction
yields to the event loop. Trade-off: if *another process* holds SQLite's write lock, a write
blocks the loop for up to ``busy_timeout`` (3 s by default).

Opening a fresh file from several processes at once: switching it to WAL needs an exclusive lock
that SQLite does not wait for (its busy handler is not called there), so the switch is retried
until ``busy_timeout``; ``BEGIN IMMEDIATE`` then serializes the migrations themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

from ...errors import ConfigError, StoreUnavailable
from ._driver import Duplicate, Ops, Row

__all__ = ["SqliteDriver", "sqlite_path"]


def sqlite_error(exc: sqlite3.Error) -> Exception:
    if isinstance(exc, sqlite3.IntegrityError):
        return Duplicate(str(exc))
    return StoreUnavailable(f"the SQLite store failed: {type(exc).__name__}: {exc}")


def _locked(exc: sqlite3.Error) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and ("locked" in str(exc) or "busy" in str(exc))


def sqlite_path(url: str) -> str:
    """``sqlite:///relative.db`` / ``sqlite:////abs/path.db`` (query string already removed) → path."""
    rest = url.split("://", 1)[1]
    if not rest.startswith("/"):
        raise ConfigError(
            f"bad SQLite URL {url!r} (store setting)", hint="use sqlite:///relative.db or sqlite:////abs/path.db"
        )
    path = rest[1:]
    return path or ":memory:"


class SqliteDriver:
    """One held stdlib ``sqlite3`` connection, used directly in the event loop."""

    postgres = False

    def __init__(self, path: str, *, busy_timeout: float = 3.0) -> None:
        self._path = path
        self._busy = busy_timeout
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
                self._path, check_same_thread=False, isolation_level=None, timeout=self._busy
            )
            try:
                db.execute(f"PRAGMA busy_timeout={self._busy_ms}")
                self._wal(db)
                db.execute("PRAGMA synchronous=NORMAL")
            except BaseException:
                db.close()
                raise
            self._db = db
        return db

    def _wal(self, db: sqlite3.Connection) -> None:
        """``journal_mode=WAL``, retried: SQLite answers "locked" at once while another process
        holds the file (no busy handler), e.g. when several processes open a new file together."""
        deadline = time.monotonic() + self._busy
        pause = 0.002
        while True:
            try:
                db.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if not _locked(exc) or time.monotonic() >= deadline:
                    raise
            time.sleep(pause)  # only while opening the connection
            pause = min(pause * 2, 0.05)

    def one_now(self, sql: str, params: Sequence[Any]) -> Row | None:
        """``one`` without the coroutine: the ``get`` hot path calls it directly."""
        try:
            with self._tlock:
                row: Row | None = self._conn().execute(sql, params).fetchone()
                return row
        except sqlite3.Error as exc:
            raise sqlite_error(exc) from exc

    async def one(self, sql: str, params: Sequence[Any]) -> Row | None:
        return self.one_now(sql, params)

    async def all(self, sql: str, params: Sequence[Any]) -> list[Row]:
        try:
            with self._tlock:
                return self._conn().execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise sqlite_error(exc) from exc

    async def execute(self, sql: str, params: Sequence[Any]) -> int:
        try:
            with self._tlock:
                return self._conn().execute(sql, params).rowcount
        except sqlite3.Error as exc:
            raise sqlite_error(exc) from exc

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Ops]:
        if self._alock is None:
            self._alock = asyncio.Lock()
        async with self._alock:
            with self._tlock:
                try:
                    db = self._conn()
                    db.execute("BEGIN IMMEDIATE")  # waits up to busy_timeout for the write lock
                except sqlite3.Error as exc:
                    raise sqlite_error(exc) from exc
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
                    raise sqlite_error(exc) from exc

    async def close(self) -> None:
        with self._tlock:
            self._closed = True
            if self._db is not None:
                self._db.close()
                self._db = None

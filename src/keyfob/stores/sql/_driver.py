"""What the SQL backends share: the three primitives a driver offers, and its error vocabulary."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any, Protocol

__all__ = ["Driver", "Duplicate", "Ops", "Row", "is_driver_error"]

Row = Sequence[Any]


class Duplicate(Exception):
    """A unique constraint refused an insert (turned into ValueError by the stores)."""


class Ops(Protocol):
    """Run one statement: one row, all rows, or the number of rows it changed."""

    async def one(self, sql: str, params: Sequence[Any]) -> Row | None: ...
    async def all(self, sql: str, params: Sequence[Any]) -> list[Row]: ...
    async def execute(self, sql: str, params: Sequence[Any]) -> int: ...


class Driver(Ops, Protocol):
    """A connection (SQLite) or a pool (PostgreSQL): :class:`Ops` plus transactions."""

    postgres: bool

    def transaction(self) -> contextlib.AbstractAsyncContextManager[Ops]: ...
    async def close(self) -> None: ...


def is_driver_error(exc: BaseException) -> bool:
    """An OS, timeout or asyncpg error (as opposed to the caller's own exception)."""
    return isinstance(exc, OSError | TimeoutError) or type(exc).__module__.startswith("asyncpg")

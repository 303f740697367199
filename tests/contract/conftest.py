"""Store factory fixtures, reusable by every contract suite (stores x strategies).

* ``store_kind`` — parametrized ``memory``, ``sqlite``, ``postgresql`` (mark ``postgres``),
  ``redis`` (mark ``redis``). Server-backed params skip when the server is down, fail under CI=true.
* ``store_url`` — a URL naming a **clean** store of that kind: a fresh SQLite file, PostgreSQL
  ``test`` with keyfob's default tables truncated, Redis db 15 flushed. Give it to
  ``Keyfob(store=store_url)`` or ``open_store``.
* ``make_store(**options)`` — open (and migrate) a store on ``store_url``; closed at teardown.
  On PostgreSQL and Redis it uses a table/key prefix private to this test process
  (``kft<pid>_`` / ``kft<pid>:``), emptied before and dropped after each test, so suites
  running at the same time against the same servers do not see each other's rows.

A suite that wants only some kinds overrides ``store_kind`` with its own params, e.g.
``pytest.mark.parametrize("store_kind", ["memory", "sqlite"], indirect=True)``.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from keyfob.stores import SessionStore, open_store
from tests.conftest import PG_URL, REDIS_URL, require_postgres, require_redis

MakeStore = Callable[..., Awaitable[SessionStore]]

#: Redis database the tests may flush (never the app's db 0).
REDIS_TEST_URL = os.environ.get("KEYFOB_TEST_REDIS_DB", REDIS_URL.rsplit("/", 1)[0] + "/15")

STORE_KINDS = [
    pytest.param("memory", id="memory"),
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
    pytest.param("redis", id="redis", marks=pytest.mark.redis),
]

_PG_TABLES = ("keyfob_sessions", "keyfob_user_versions", "keyfob_revocations")


@pytest.fixture(params=STORE_KINDS)
def store_kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    return kind


async def reset_postgres(url: str = PG_URL) -> None:
    """Empty keyfob's default tables (creating them first) in the test database."""
    store = open_store(url)
    try:
        await store.migrate()
    finally:
        await store.close()
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f"TRUNCATE {', '.join(_PG_TABLES)}")
    finally:
        await conn.close()


async def reset_redis(url: str = REDIS_TEST_URL) -> None:
    """FLUSHDB the dedicated test database."""
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url)
    try:
        await client.flushdb()
    finally:
        await client.aclose()


@pytest.fixture
async def store_url(store_kind: str, tmp_path: Path) -> str:
    if store_kind == "memory":
        return "memory://"
    if store_kind == "sqlite":
        return f"sqlite:///{tmp_path / 'keyfob.db'}"
    if store_kind == "postgresql":
        require_postgres()
        await reset_postgres()
        return PG_URL
    if store_kind == "redis":
        require_redis()
        await reset_redis()
        return REDIS_TEST_URL
    raise AssertionError(f"unknown store kind {store_kind!r}")


PRIVATE_PREFIX = f"kft{os.getpid()}"


async def drop_postgres_tables(prefix: str, url: str = PG_URL) -> None:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        names = ", ".join(f"{prefix}{t}" for t in ("sessions", "user_versions", "revocations", "meta"))
        await conn.execute(f"DROP TABLE IF EXISTS {names}")
    finally:
        await conn.close()


async def delete_redis_keys(prefix: str, url: str = REDIS_TEST_URL) -> None:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url)
    try:
        keys = [k async for k in client.scan_iter(match=f"{prefix}*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@pytest.fixture
def store_options(store_kind: str) -> dict[str, Any]:
    """Options that give this test process its own corner of a shared server."""
    if store_kind == "postgresql":
        return {"table_prefix": f"{PRIVATE_PREFIX}_"}
    if store_kind == "redis":
        return {"prefix": f"{PRIVATE_PREFIX}:"}
    return {}


@pytest.fixture
async def make_store(
    store_url: str, store_kind: str, store_options: dict[str, Any]
) -> AsyncIterator[MakeStore]:
    opened: list[SessionStore] = []

    async def cleanup() -> None:
        if store_kind == "postgresql":
            await drop_postgres_tables(store_options["table_prefix"])
        elif store_kind == "redis":
            await delete_redis_keys(store_options["prefix"])

    async def make(**options: Any) -> SessionStore:
        store = open_store(store_url, **{**store_options, **options})
        await store.migrate()
        opened.append(store)
        return store

    await cleanup()
    yield make
    for store in opened:
        await store.close()
    await cleanup()


@pytest.fixture
async def store(make_store: MakeStore) -> SessionStore:
    return await make_store()

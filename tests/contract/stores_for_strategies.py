"""Store URLs for the strategy contract suite: memory, SQLite (tmp file), PostgreSQL, Redis, Redis Cluster.

Server-backed stores are emptied before each test (PostgreSQL tables truncated, Redis test
db flushed), skip with a reason when the server is down, and fail under CI=true.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from keyfob import FakeClock, Keyfob
from tests.conftest import PG_URL, REDIS_URL, require_postgres, require_redis

StoreFactory = Callable[[str], Awaitable[str]]
MakeFob = Callable[..., Keyfob]

STORE_PARAMS = [
    pytest.param("memory", id="memory"),
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
    pytest.param("redis", id="redis", marks=pytest.mark.redis),
    pytest.param("redis_cluster", id="redis_cluster", marks=pytest.mark.redis_cluster),
]
REDIS_TEST_URL = REDIS_URL.rsplit("/", 1)[0] + "/13"


async def empty_postgres() -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_URL)
    try:
        for table in ("keyfob_sessions", "keyfob_user_versions", "keyfob_revocations", "keyfob_changes"):
            exists = await conn.fetchval("SELECT to_regclass($1)", table)
            if exists:
                await conn.execute(f"TRUNCATE {table}")
    finally:
        await conn.close()


async def empty_redis() -> None:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(REDIS_TEST_URL)
    try:
        await client.flushdb()
    finally:
        await client.aclose()


@pytest.fixture
def make_store_url(tmp_path: Path, request: pytest.FixtureRequest) -> StoreFactory:
    async def factory(kind: str) -> str:
        if kind == "memory":
            return f"memory://{tmp_path.name}"
        if kind == "sqlite":
            return f"sqlite:///{tmp_path / 'keyfob.db'}"
        if kind == "postgresql":
            require_postgres()
            await empty_postgres()
            return PG_URL
        if kind == "redis":
            require_redis()
            await empty_redis()
            return REDIS_TEST_URL
        if kind == "redis_cluster":  # the session's own cluster (tests/conftest.py): flushed
            from tests._redis_cluster import flush_cluster

            url: str = request.getfixturevalue("redis_cluster").url
            await flush_cluster(url)
            return url
        raise ValueError(kind)

    return factory


@contextlib.asynccontextmanager
async def keyfob_factory(url: str, clock: FakeClock, strategy: str, secret: str) -> AsyncIterator[MakeFob]:
    """``make_fob(**settings)`` engines on one store URL and fake clock, all closed on exit."""
    made: list[Keyfob] = []

    def factory(**kw: Any) -> Keyfob:
        kw.setdefault("strategy", strategy)
        kw.setdefault("secret", secret)
        fob = Keyfob(store=url, clock=clock, **kw)
        made.append(fob)
        return fob

    try:
        yield factory
    finally:
        for fob in made:
            await fob.close()

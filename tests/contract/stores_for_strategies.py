"""Store URLs for the strategy contract suite: memory, SQLite (tmp file), PostgreSQL, Redis, Redis Cluster.

Server-backed stores are this test's own corner of the shared server (PostgreSQL tables
``kfs<pid>_<n>_*``, Redis keys ``kfs<pid>:<n>:*`` in the test db or the session's cluster), dropped
before and after each test, so suites running at the same time never see each other's rows. They
skip with a reason when the server is down, and fail under CI=true.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

import pytest

from keyfob import FakeClock, Keyfob
from keyfob.web import SetCookie
from tests.conftest import PG_URL, require_postgres, require_redis
from tests.contract.conftest import REDIS_TEST_URL, delete_redis_keys, drop_postgres_tables

StoreFactory = Callable[[str], Awaitable[str]]
STRATEGIES = ["jwt", "database", "hybrid"]
SECRET = "kf-contract-secret-0123456789abcdef0123456789abcdef01234567"
MakeFob = Callable[..., Keyfob]

STORE_PARAMS = [
    pytest.param("memory", id="memory"),
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
    pytest.param("redis", id="redis", marks=pytest.mark.redis),
    pytest.param("redis_cluster", id="redis_cluster", marks=pytest.mark.redis_cluster),
]
#: This test process's own tables / keys on the shared servers (other suites may run at the same time).
PREFIX = f"kfs{os.getpid()}"
_NAMESPACES = itertools.count()  # and one namespace per test under it


@pytest.fixture
async def make_store_url(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[StoreFactory]:
    """``await make_store_url(kind)``: a URL of this test's own, clean store of that kind; its
    tables / keys (and only those) are dropped before it is handed out and after the test."""
    drops: list[Callable[[], Awaitable[None]]] = []
    n = next(_NAMESPACES)

    async def factory(kind: str) -> str:
        if kind == "memory":
            return f"memory://{tmp_path.name}"
        if kind == "sqlite":
            return f"sqlite:///{tmp_path / 'keyfob.db'}"
        if kind == "postgresql":
            require_postgres()
            prefix = f"{PREFIX}_{n}_"
            drops.append(functools.partial(drop_postgres_tables, prefix))
            await drops[-1]()
            return f"{PG_URL}?table_prefix={prefix}"
        if kind in ("redis", "redis_cluster"):
            if kind == "redis":
                require_redis()
                base = REDIS_TEST_URL
            else:  # the session's own cluster (tests/conftest.py)
                base = request.getfixturevalue("redis_cluster").url
            prefix = f"{PREFIX}:{n}:"
            drops.append(functools.partial(delete_redis_keys, prefix, base))
            await drops[-1]()
            return f"{base}?prefix={prefix}"
        raise ValueError(kind)

    yield factory
    for drop in drops:  # the engines are closed by now (make_fob's teardown runs first)
        await drop()


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


class Jar(dict[str, str]):
    """A browser's cookie jar, just enough of one."""

    def apply(self, cookies: Iterable[SetCookie]) -> Jar:
        for c in cookies:
            if c.max_age is not None and c.max_age <= 0:
                self.pop(c.name, None)
            else:
                self[c.name] = c.value
        return self


@pytest.fixture(params=STRATEGIES)
def strategy(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=STORE_PARAMS)
async def make_fob(request: pytest.FixtureRequest, make_store_url: StoreFactory, strategy: str,
                   clock: FakeClock) -> AsyncIterator[MakeFob]:
    """``make_fob(**settings)``: engines of this test's strategy on this test's store (every kind)."""
    async with keyfob_factory(await make_store_url(request.param), clock, strategy, SECRET) as factory:
        yield factory


def _query(url: str, name: str) -> str:
    """The one value of ``name`` in ``url``'s query (the namespace :func:`make_store_url` gave it)."""
    from urllib.parse import parse_qs, urlsplit

    values = parse_qs(urlsplit(url).query).get(name)
    assert values and len(values) == 1, f"{url!r} has no single {name}="
    return values[0]


async def wipe_store_url(url: str) -> None:
    """Make the store at ``url`` (one :func:`make_store_url` gave) lose all its data, as FLUSHDB,
    dropped tables or a restart without persistence would. Engines on it stay open."""
    if url.startswith("memory://"):
        from keyfob.stores.memory import MemoryStore

        MemoryStore.wipe(url)
    elif url.startswith("sqlite"):
        import sqlite3

        from tests.contract.conftest import TABLES

        db = sqlite3.connect(url.split(":///", 1)[1], timeout=10)
        try:
            for table in TABLES:
                db.execute(f"DROP TABLE IF EXISTS keyfob_{table}")
            db.commit()
        finally:
            db.close()
    elif url.startswith("postgresql"):
        await drop_postgres_tables(_query(url, "table_prefix"))
    elif url.startswith("redis"):  # one server or the cluster: this test's own keys
        await delete_redis_keys(_query(url, "prefix"), url.split("?", 1)[0])
    else:
        raise AssertionError(f"no wipe for {url!r}")

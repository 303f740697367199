"""Store factory fixtures, reusable by every contract suite (stores x strategies).

* ``store_kind`` — parametrized ``memory``, ``sqlite``, ``postgresql`` (mark ``postgres``),
  ``redis`` (mark ``redis``), ``redis_cluster`` (mark ``redis_cluster``: the session's own 3-master
  cluster, ``tests/conftest.py``). Server-backed params skip when the server is down, fail under CI=true.
* ``store_url`` — a URL naming a **clean** store of that kind, private to this test: a memory store
  named for this test (shared by every store object the test opens on it), a fresh SQLite file,
  PostgreSQL ``test`` with this test's own ``?table_prefix=kft<pid>_<n>_`` tables, Redis (db 15)
  or the session's Redis Cluster with this test's own ``?prefix=kft<pid>:<n>:`` keys. Only those
  tables/keys are dropped (before and after the test): nothing else on the shared servers is
  touched, so suites and CI runs at the same time never see (or delete) each other's rows. Give it
  to ``Keyfob(store=store_url)`` or ``open_store``.
* ``store_options`` — the same private namespace as options (``table_prefix=`` / ``prefix=``), for
  code that opens a store with options rather than the URL.
* ``make_store(**options)`` — open (and migrate, unless ``migrate=False``) a store on ``store_url``;
  closed at teardown.

* ``namespace_options(name)`` — the options that put a store in namespace ``name`` of the same
  server (``table_prefix=`` on SQL, ``prefix=`` on memory and Redis), private to this process.
* ``wipe_store()`` — make the store lose everything, as FLUSHDB or dropped tables would.

A suite that wants only some kinds overrides ``store_kind`` with its own params, e.g.
``pytest.mark.parametrize("store_kind", ["memory", "sqlite"], indirect=True)``.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from keyfob.stores import SessionStore, open_store
from tests.conftest import PG_URL, REDIS_URL, require_postgres, require_redis

MakeStore = Callable[..., Awaitable[SessionStore]]

#: Redis database of the tests (never the app's db 0); shared with other suites and CI, so tests
#: touch only keys under their own prefix (``store_options``), never FLUSHDB.
REDIS_TEST_URL = os.environ.get("KEYFOB_TEST_REDIS_DB", REDIS_URL.rsplit("/", 1)[0] + "/15")

STORE_KINDS = [
    pytest.param("memory", id="memory"),
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
    pytest.param("redis", id="redis", marks=pytest.mark.redis),
    pytest.param("redis_cluster", id="redis_cluster", marks=pytest.mark.redis_cluster),
]

#: every table of keyfob's schema, without the prefix
TABLES = ("sessions", "user_versions", "revocations", "changes", "meta")
_MEMORY_NAMES = itertools.count()
_NAMESPACES = itertools.count()  # one private namespace per test (store_options)


@pytest.fixture(params=STORE_KINDS)
def store_kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    return kind


PRIVATE_PREFIX = f"kft{os.getpid()}"


async def drop_postgres_tables(prefix: str, url: str = PG_URL) -> None:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        names = ", ".join(f"{prefix}{t}" for t in TABLES)
        await conn.execute(f"DROP TABLE IF EXISTS {names}")
    finally:
        await conn.close()


async def delete_redis_keys(prefix: str, url: str = REDIS_TEST_URL) -> None:
    """Delete the keys under ``prefix`` (and only those), on one server or every master of a cluster."""
    if not prefix or "*" in prefix or "?" in prefix or "[" in prefix:
        raise ValueError(f"refusing to delete keys under {prefix!r}: not one private prefix")
    client: Any
    if "+cluster://" in url:
        from redis.asyncio.cluster import RedisCluster

        from keyfob.stores.redis._url import parse_redis_url

        host, port = parse_redis_url(url).seeds[0]
        client = RedisCluster(host=host, port=port)
    else:
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(url.split("?", 1)[0])  # keyfob's ?prefix= is not redis-py's
    try:
        keys = [k async for k in client.scan_iter(match=f"{prefix}*", count=1000)]
        for i in range(0, len(keys), 500):
            await client.delete(*keys[i : i + 500])  # the cluster client splits it by slot
    finally:
        await client.aclose()


@pytest.fixture
async def store_options(store_kind: str, request: pytest.FixtureRequest) -> AsyncIterator[dict[str, Any]]:
    """Options that give this test its own corner of a shared server (``table_prefix=`` on
    PostgreSQL, ``prefix=`` on Redis and Redis Cluster), dropped before and after the test."""
    n = next(_NAMESPACES)
    options: dict[str, Any] = {}
    drop: Callable[[], Awaitable[None]] | None = None
    if store_kind == "postgresql":
        require_postgres()
        prefix = f"{PRIVATE_PREFIX}_{n}_"
        options = {"table_prefix": prefix}

        async def drop() -> None:
            await drop_postgres_tables(prefix)
    elif store_kind in ("redis", "redis_cluster"):
        prefix = f"{PRIVATE_PREFIX}:{n}:"
        options = {"prefix": prefix}
        if store_kind == "redis":
            require_redis()
            url = REDIS_TEST_URL
        else:
            url = request.getfixturevalue("redis_cluster").url

        async def drop() -> None:
            await delete_redis_keys(prefix, url)
    if drop is not None:
        await drop()  # left over by a killed run of a process with the same pid?
    yield options
    if drop is not None:
        await drop()


@pytest.fixture
async def store_url(store_kind: str, store_options: dict[str, Any], tmp_path: Path,
                    request: pytest.FixtureRequest) -> str:  # fmt: skip
    if store_kind == "memory":
        return f"memory://kft{os.getpid()}-{next(_MEMORY_NAMES)}"
    if store_kind == "sqlite":
        return f"sqlite:///{tmp_path / 'keyfob.db'}"
    if store_kind == "postgresql":
        return f"{PG_URL}?table_prefix={store_options['table_prefix']}"
    if store_kind == "redis":
        return f"{REDIS_TEST_URL}?prefix={store_options['prefix']}"
    if store_kind == "redis_cluster":  # the session's own cluster (tests/conftest.py)
        url: str = request.getfixturevalue("redis_cluster").url
        return f"{url}?prefix={store_options['prefix']}"
    raise AssertionError(f"unknown store kind {store_kind!r}")


@pytest.fixture
async def make_store(store_url: str, store_options: dict[str, Any]) -> AsyncIterator[MakeStore]:
    """Open stores on this test's private namespace; the namespace's cleanup is ``store_options``'."""
    opened: list[SessionStore] = []
    bare = store_url.split("?", 1)[0]  # the namespace comes as an option, which ``options`` may override

    async def make(*, migrate: bool = True, **options: Any) -> SessionStore:
        store = open_store(bare, **{**store_options, **options})
        opened.append(store)
        if migrate:
            await store.migrate()
        return store

    yield make
    for store in opened:
        await store.close()


@pytest.fixture
async def store(make_store: MakeStore) -> SessionStore:
    return await make_store()


@pytest.fixture
async def namespace_options(
    store_kind: str, store_options: dict[str, Any]
) -> AsyncIterator[Callable[[str], dict[str, Any]]]:
    """``name`` → the options that open the same server's store in namespace ``name``, inside this
    test's private namespace (``store_options``); the tables of every SQL namespace handed out are
    dropped after the test (Redis keys go with ``store_options``' prefix)."""
    prefixes: list[str] = []

    def options(name: str) -> dict[str, Any]:
        if store_kind in ("sqlite", "postgresql"):
            prefix = f"{store_options.get('table_prefix', PRIVATE_PREFIX + '_')}{name}_"
            prefixes.append(prefix)
            return {"table_prefix": prefix}
        return {"prefix": f"{store_options.get('prefix', PRIVATE_PREFIX + ':')}{name}:"}

    yield options
    if store_kind == "postgresql":
        for prefix in dict.fromkeys(prefixes):
            await drop_postgres_tables(prefix)


@pytest.fixture
def wipe_store(
    store_kind: str, store_url: str, store_options: dict[str, Any]
) -> Callable[[], Awaitable[None]]:
    """Make the store behind ``make_store`` lose all its data (FLUSHDB, dropped tables, a restart)."""

    async def wipe() -> None:
        if store_kind == "memory":
            from keyfob.stores.memory import MemoryStore

            MemoryStore.wipe(store_url)
        elif store_kind == "sqlite":
            db = sqlite3.connect(store_url.split("://", 1)[1][1:], timeout=10)
            try:
                for table in TABLES:
                    db.execute(f"DROP TABLE IF EXISTS keyfob_{table}")
                db.commit()
            finally:
                db.close()
        elif store_kind == "postgresql":
            await drop_postgres_tables(store_options["table_prefix"])
        elif store_kind in ("redis", "redis_cluster"):
            await delete_redis_keys(store_options["prefix"], store_url)
        else:
            raise AssertionError(f"no wipe for store kind {store_kind!r}")

    return wipe


# -- PgBouncer (transaction mode) in front of the shared PostgreSQL -------------------------------


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def pgbouncer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real PgBouncer (Debian's) in ``pool_mode=transaction`` on a free loopback port, in front of
    PostgreSQL's ``test`` database, with 2 server connections per pool (so clients really share
    them). Yields its URL (``postgresql://postgres@127.0.0.1:PORT/test``); stopped after the module."""
    import subprocess
    import time

    from tests.conftest import PGBOUNCER, port_open, require_pgbouncer

    require_pgbouncer()
    pg_host, pg_port = PG_URL.split("@", 1)[1].split("/", 1)[0].split(":")
    work = tmp_path_factory.mktemp("pgbouncer")
    work.chmod(0o777)  # it drops to ``nobody`` when started as root
    port = free_port()
    ini = work / "pgbouncer.ini"
    ini.write_text(
        "[databases]\n"
        f"test = host={pg_host} port={pg_port} dbname=test user=postgres\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        "auth_type = any\npool_mode = transaction\ndefault_pool_size = 2\nmax_client_conn = 400\n"
        "admin_users = postgres\nignore_startup_parameters = extra_float_digits\n"
        "log_connections = 0\nlog_disconnections = 0\n"  # logs go to stderr: the file below
    )
    cmd = [PGBOUNCER, str(ini)] if os.geteuid() != 0 else [PGBOUNCER, "-u", "nobody", str(ini)]
    log = (work / "pgbouncer.log").open("wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while not port_open("127.0.0.1", port):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"pgbouncer did not start: {(work / 'pgbouncer.log').read_text()}")
            time.sleep(0.05)
        yield f"postgresql://postgres@127.0.0.1:{port}/test"
    finally:
        import signal

        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
        log.close()

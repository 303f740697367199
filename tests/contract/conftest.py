"""Store factory fixtures, reusable by every contract suite (stores x strategies).

* ``store_kind`` — parametrized ``memory``, ``sqlite``, ``postgresql`` (mark ``postgres``),
  ``redis`` (mark ``redis``), ``redis_cluster`` (mark ``redis_cluster``: the session's own 3-master
  cluster, ``tests/conftest.py``). Server-backed params skip when the server is down, fail under CI=true.
* ``store_url`` — a URL naming a **clean** store of that kind: a memory store named for this test
  (shared by every store object the test opens on it), a fresh SQLite file, PostgreSQL
  ``test`` with keyfob's default tables truncated, Redis db 15 flushed. Give it to
  ``Keyfob(store=store_url)`` or ``open_store``.
* ``make_store(**options)`` — open (and migrate, unless ``migrate=False``) a store on ``store_url``;
  closed at teardown.
  On PostgreSQL and Redis it uses a table/key prefix private to this test process
  (``kft<pid>_`` / ``kft<pid>:``), emptied before and dropped after each test, so suites
  running at the same time against the same servers do not see each other's rows.

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

#: Redis database the tests may flush (never the app's db 0).
REDIS_TEST_URL = os.environ.get("KEYFOB_TEST_REDIS_DB", REDIS_URL.rsplit("/", 1)[0] + "/15")

STORE_KINDS = [
    pytest.param("memory", id="memory"),
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
    pytest.param("redis", id="redis", marks=pytest.mark.redis),
    pytest.param("redis_cluster", id="redis_cluster", marks=pytest.mark.redis_cluster),
]

_PG_TABLES = ("keyfob_sessions", "keyfob_user_versions", "keyfob_revocations", "keyfob_changes")
#: every table of keyfob's schema, without the prefix
TABLES = ("sessions", "user_versions", "revocations", "changes", "meta")
_MEMORY_NAMES = itertools.count()


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
async def store_url(store_kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if store_kind == "memory":
        return f"memory://kft{os.getpid()}-{next(_MEMORY_NAMES)}"
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
    if store_kind == "redis_cluster":  # the session's own cluster (tests/conftest.py): flushed
        from tests._redis_cluster import flush_cluster

        url: str = request.getfixturevalue("redis_cluster").url
        await flush_cluster(url)
        return url
    raise AssertionError(f"unknown store kind {store_kind!r}")


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
    if store_kind in ("redis", "redis_cluster"):
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

    async def make(*, migrate: bool = True, **options: Any) -> SessionStore:
        store = open_store(store_url, **{**store_options, **options})
        opened.append(store)
        if migrate:
            await store.migrate()
        return store

    await cleanup()
    yield make
    for store in opened:
        await store.close()
    await cleanup()


@pytest.fixture
async def store(make_store: MakeStore) -> SessionStore:
    return await make_store()


@pytest.fixture
async def namespace_options(store_kind: str) -> AsyncIterator[Callable[[str], dict[str, Any]]]:
    """``name`` → the options that open the same server's store in namespace ``name`` (private to
    this process); the tables/keys of every namespace handed out are dropped before and after."""
    prefixes: list[str] = []

    async def drop(prefix: str) -> None:
        if store_kind == "postgresql":
            await drop_postgres_tables(prefix)
        elif store_kind == "redis":
            await delete_redis_keys(prefix)

    def options(name: str) -> dict[str, Any]:
        if store_kind in ("sqlite", "postgresql"):
            prefix = f"{PRIVATE_PREFIX}_{name}_"
            prefixes.append(prefix)
            return {"table_prefix": prefix}
        prefix = f"{PRIVATE_PREFIX}:{name}:"
        prefixes.append(prefix)
        return {"prefix": prefix}

    for name in ("a", "b"):  # the names the suites use: left over by a killed run?
        await drop(options(name).popitem()[1])
    prefixes.clear()
    yield options
    for prefix in prefixes:
        await drop(prefix)


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
        elif store_kind == "redis":
            await delete_redis_keys(store_options["prefix"])
        elif store_kind == "redis_cluster":
            from tests._redis_cluster import flush_cluster

            await flush_cluster(store_url)
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

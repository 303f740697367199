"""Benchmark stores: Keyfob instances per strategy and store, bulk-filled tables, raw-driver lookups.

Isolation from the test suite and from apps sharing the servers:

* SQLite: files in the run's temporary work directory.
* PostgreSQL: a ``keyfob_bench`` database created next to the configured one when the role may
  (else the configured database), tables prefixed ``kfb<run id>_`` — dropped at the end.
* Redis: the configured db (12 by default), keys under ``kfb<run id>:`` — deleted at the end;
  the hybrid feed uses its own channel (``kfbench:<run id>:revocations``).

Filler sessions (10k / 1M) are bulk-inserted with the raw drivers in the stores' own layout
(``executemany``, ``COPY``, a server-side Lua loop for Redis), then the measured session is
created through ``fob.create`` like any other.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import secrets
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ._core import SECRET, SESSION_DATA, USER_ID, Case, Config, check, log

__all__ = ["REDIS_CHANNEL", "Stores", "pg_bench_url"]

PG_BENCH_DB = "keyfob_bench"
#: Per-process run id in every table prefix, key prefix and channel: concurrent runs (a smoke test
#: in someone's test run, say) never see, or clean up, each other's data.
RUN_ID = secrets.token_hex(3)
REDIS_CHANNEL = f"kfbench:{RUN_ID}:revocations"
PG_CHANNEL = f"kfbench_{RUN_ID}_revocations"

_REDIS_FILL = r"""
local P, start, n = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local now, endt, ttl, data = ARGV[4], ARGV[5], ARGV[6], ARGV[7]
for i = start, start + n - 1 do
  local s = tostring(i)
  local hex = redis.sha1hex(s) .. string.sub(redis.sha1hex('x' .. s), 1, 24)
  local id, uid = 'fill' .. s, 'filler-' .. tostring(i % 50000)
  local U = P .. '{u:' .. uid .. '}'
  local k = U .. ':s:' .. hex
  redis.call('HSET', k, 'i', id, 'u', uid, 'c', now, 'l', now, 'e', endt, 'n', '0', 't', now,
             'p', '127.0.0.1', 'g', 'kfbench', 'd', data)
  redis.call('PEXPIRE', k, ttl)
  redis.call('SET', P .. 't:' .. hex, U, 'PX', ttl)
  redis.call('SADD', U .. ':a', hex)
end
return n
"""
#: Filler rows in the store's key layout (``keyfob.stores.redis._keys``): the row under its user's
#: hash tag and the token pointer, so the keyspace a lookup sees has the size it claims. Run on one
#: server (the benchmark's Redis), where a script may touch keys of several slots.

_REDIS_UNLINK = r"""
local r = redis.call('SCAN', ARGV[1], 'MATCH', ARGV[2], 'COUNT', 20000)
local keys = r[2]
for i = 1, #keys, 500 do
  redis.call('UNLINK', unpack(keys, i, math.min(i + 499, #keys)))
end
return r[1]
"""


def _size_tag(n: int) -> str:
    return (
        f"{n // 1_000_000}m"
        if n >= 1_000_000 and n % 1_000_000 == 0
        else (f"{n // 1000}k" if n >= 1000 and n % 1000 == 0 else str(n))
    )


def pg_bench_url(url: str, dbname: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + dbname, parts.query, parts.fragment))


class Stores:
    """Opens (once) what each case needs and closes everything in :meth:`close`."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.closers: list[Callable[[], Awaitable[Any]]] = []
        self._sessions: dict[tuple[str, str, int | None, str], tuple[Any, dict[str, str]]] = {}
        self._pg_url: str | None = None
        self._pg_lock = asyncio.Lock()
        self._pg_prefixes: set[str] = set()
        self._redis_used = False
        self.sqlite_paths: dict[tuple[str, int | None], str] = {}
        self.info: dict[str, Any] = {}

    # -- where ---------------------------------------------------------------------------------------
    def sqlite_url(self, strategy: str, fill: int | None) -> str:
        path = os.path.join(self.cfg.workdir, f"{strategy}_{_size_tag(fill) if fill else 'x'}.db")
        self.sqlite_paths[(strategy, fill)] = path
        return f"sqlite:///{path}"

    @staticmethod
    def pg_prefix(strategy: str, fill: int | None) -> str:
        return f"kfb{RUN_ID}_{strategy[:2]}_{_size_tag(fill) if fill else 'x'}_"

    @staticmethod
    def redis_prefix(strategy: str, fill: int | None) -> str:
        return f"kfb{RUN_ID}:{strategy[:2]}{_size_tag(fill) if fill else 'x'}:"

    async def pg_url(self) -> str:
        """The PostgreSQL URL to use: a dedicated ``keyfob_bench`` database when we may create it."""
        async with self._pg_lock:
            if self._pg_url is None:
                self._pg_url = await self._open_pg()
            return self._pg_url

    async def _open_pg(self) -> str:
        import asyncpg

        base = self.cfg.pg_url
        conn = await asyncpg.connect(base, timeout=3)
        try:
            exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", PG_BENCH_DB)
            if not exists:
                try:
                    await conn.execute(f'CREATE DATABASE "{PG_BENCH_DB}"')
                    exists = True
                except Exception as exc:  # a concurrent run made it, or no CREATEDB: then share `base`
                    exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", PG_BENCH_DB)
                    if not exists:
                        log(f"postgres: cannot create {PG_BENCH_DB} ({exc}); using {base}")
        finally:
            await conn.close()
        self.closers.append(self._drop_pg_tables)
        return pg_bench_url(base, PG_BENCH_DB) if exists else base

    # -- keyfob ---------------------------------------------------------------------------------------
    async def fob(self, strategy: str, store: str, fill: int | None = None) -> Any:
        """A started Keyfob for ``strategy`` on ``store`` (``sqlite`` | ``postgres`` | ``redis``)."""
        from keyfob import Keyfob
        from keyfob.stores import open_feed, open_store

        feed: Any = None
        if store == "sqlite":
            url = self.sqlite_url(strategy, fill)
            store_obj = open_store(url)
        elif store == "postgres":
            from keyfob.stores.sql import SQLStore

            url = await self.pg_url()
            prefix = self.pg_prefix(strategy, fill)
            self._pg_prefixes.add(prefix)
            store_obj = SQLStore(url, table_prefix=prefix)
            if strategy != "database":
                feed = open_feed(url, channel=PG_CHANNEL)
        elif store == "redis":
            url = self.cfg.redis_url
            if not self._redis_used:
                self._redis_used = True
                self.closers.append(self._clean_redis)
                await self._clean_redis()
            store_obj = open_store(url, prefix=self.redis_prefix(strategy, fill))
            if strategy != "database":
                feed = open_feed(url, channel=REDIS_CHANNEL)
        else:
            raise ValueError(store)
        fob = Keyfob(strategy=strategy, secret=SECRET, store=store_obj, feed=feed, cookie_secure=True)
        await fob.start()
        self.closers.append(fob.close)
        self.info[f"{strategy}/{store}" + (f"/{fill}" if fill else "")] = url
        return fob

    async def session(
        self, strategy: str, store: str, fill: int | None = None, *, variant: str = ""
    ) -> tuple[Any, dict[str, str]]:
        """(fob, cookies of a freshly created session), after bulk-filling ``fill`` sessions.

        A ``variant`` is another Keyfob (and session) on the same store, for a case that changes the
        fob itself (metrics on, say) next to the plain one."""
        key = (strategy, store, fill, variant)
        if key in self._sessions:
            return self._sessions[key]
        fob = await self.fob(strategy, store, fill)
        if fill:
            t0 = time.perf_counter()
            added = await self.fill(store, strategy, fill)
            if added:
                log(f"{store}: filled {added:,} sessions in {time.perf_counter() - t0:.1f} s")
        issued = await fob.create(USER_ID, dict(SESSION_DATA))
        cookies = {c.name: c.value for c in issued.cookies}
        self._sessions[key] = (fob, cookies)
        return fob, cookies

    # -- bulk fill --------------------------------------------------------------------------------------
    async def fill(self, store: str, strategy: str, n: int) -> int:
        if store == "sqlite":  # in a thread: other stores' feeds keep their health checks going
            return await asyncio.to_thread(self._fill_sqlite, self.sqlite_paths[(strategy, n)], "keyfob_", n)
        if store == "postgres":
            return await self._fill_pg(self.pg_prefix(strategy, n), n)
        return await self._fill_redis(self.redis_prefix(strategy, n), n)

    @staticmethod
    def _columns(prefix: str) -> list[tuple[str, bool]]:
        from keyfob.stores._schema import make_tables

        return [(c.name, bool(c.nullable)) for c in make_tables(prefix).sessions.columns]

    def _rows(self, prefix: str, n: int) -> Iterator[tuple[Any, ...]]:
        now = time.time()
        end = now + 10 * 365 * 86400
        data = json.dumps(SESSION_DATA, separators=(",", ":"))
        values: dict[str, Callable[[int], Any]] = {
            "token_hash": lambda i: hashlib.sha256(b"kfbench filler %d" % i).digest(),
            "id": lambda i: f"fill{i}",
            "user_id": lambda i: f"filler-{i % 50000}",
            "created_at": lambda i: now,
            "last_seen_at": lambda i: now,
            "expires_at": lambda i: end,
            "authenticated_at": lambda i: now,
            "ip": lambda i: "127.0.0.1",
            "user_agent": lambda i: "kfbench",
            "data": lambda i: data,
            "generation": lambda i: 0,
        }

        def default(nullable: bool) -> Callable[[int], Any]:
            return (lambda i: None) if nullable else (lambda i: "")

        getters = [values.get(name) or default(nullable) for name, nullable in self._columns(prefix)]
        for i in range(n):
            yield tuple([g(i) for g in getters])

    def _fill_sqlite(self, path: str, prefix: str, n: int) -> int:
        cols = [c for c, _ in self._columns(prefix)]
        db = sqlite3.connect(path)
        try:
            have = db.execute(f"SELECT count(*) FROM {prefix}sessions").fetchone()[0]
            if have >= n:
                return 0
            sql = f"INSERT INTO {prefix}sessions ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
            with db:
                db.executemany(sql, self._rows(prefix, n))
        finally:
            db.close()
        return n

    async def _fill_pg(self, prefix: str, n: int) -> int:
        import asyncpg

        conn = await asyncpg.connect(await self.pg_url())
        try:
            have = await conn.fetchval(f"SELECT count(*) FROM {prefix}sessions")
            if have >= n:
                return 0
            cols = [c for c, _ in self._columns(prefix)]
            rows = self._rows(prefix, n)
            chunk = 100_000
            while True:
                batch = [r for _, r in zip(range(chunk), rows, strict=False)]
                if not batch:
                    break
                await conn.copy_records_to_table(f"{prefix}sessions", records=batch, columns=cols)
            await conn.execute(f"ANALYZE {prefix}sessions")
        finally:
            await conn.close()
        return n

    async def _fill_redis(self, prefix: str, n: int) -> int:
        import redis.asyncio as aioredis

        r = aioredis.Redis.from_url(self.cfg.redis_url)
        try:
            fill = r.register_script(_REDIS_FILL)
            now = time.time()
            end = now + 10 * 365 * 86400
            data = json.dumps(SESSION_DATA, separators=(",", ":"))
            step = 5000
            for start in range(0, n, step):
                await fill(
                    args=[
                        prefix,
                        start,
                        min(step, n - start),
                        repr(now),
                        repr(end),
                        int((end - now) * 1000),
                        data,
                    ]
                )
        finally:
            await r.aclose()
        return n

    # -- raw driver floors ---------------------------------------------------------------------------
    async def raw_case(self, store: str, fill: int, token: str, name: str, group: str) -> Case:
        """The same row keyfob reads, read with the bare driver: sha256(token) + one lookup."""
        sha256 = hashlib.sha256
        tok = token.encode()
        if store == "sqlite":
            db = sqlite3.connect(self.sqlite_paths[("database", fill)], check_same_thread=False)
            self.closers.append(_async(db.close))
            sql = "SELECT * FROM keyfob_sessions WHERE token_hash = ?"

            def raw_sqlite() -> Any:
                return db.execute(sql, (sha256(tok).digest(),)).fetchone()

            check(raw_sqlite() is not None, "raw sqlite3 did not find keyfob's row")
            return Case(name, group, f"stdlib sqlite3: sha256 + PK lookup ({fill:,} sessions)", raw_sqlite)
        if store == "postgres":
            import asyncpg

            conn = await asyncpg.connect(await self.pg_url())
            self.closers.append(conn.close)
            sql = f"SELECT * FROM {self.pg_prefix('database', fill)}sessions WHERE token_hash = $1"

            def raw_pg() -> Awaitable[Any]:
                return conn.fetchrow(sql, sha256(tok).digest())  # type: ignore[no-any-return]

            check(await raw_pg() is not None, "raw asyncpg did not find keyfob's row")
            return Case(
                name, group, f"asyncpg fetchrow, held connection ({fill:,} sessions)", raw_pg, is_async=True
            )
        import redis.asyncio as aioredis

        r = aioredis.Redis.from_url(self.cfg.redis_url)
        self.closers.append(r.aclose)
        # the floor: one HGETALL of the row, its key known (keyfob must first find the user's slot
        # from the token: a pointer read inside the same script, on one server)
        try:
            from keyfob.stores.redis._keys import Keys

            base = Keys(self.redis_prefix("database", fill)).user(USER_ID).encode() + b":s:"
        except ImportError:  # the older flat layout
            base = self.redis_prefix("database", fill).encode() + b"s:"

        def raw_redis() -> Awaitable[Any]:
            return r.hgetall(base + sha256(tok).hexdigest().encode())

        check(bool(await raw_redis()), "raw redis HGETALL did not find keyfob's row")
        return Case(name, group, f"redis.asyncio HGETALL ({fill:,} sessions)", raw_redis, is_async=True)

    # -- cleanup ---------------------------------------------------------------------------------------
    async def _drop_pg_tables(self) -> None:
        import asyncpg

        if self._pg_url is None:
            return
        conn = await asyncpg.connect(self._pg_url)
        try:
            names = await conn.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() AND tablename LIKE $1",
                f"kfb{RUN_ID}\\_%",
            )
            for row in names:
                await conn.execute(f'DROP TABLE IF EXISTS "{row["tablename"]}" CASCADE')
        finally:
            await conn.close()

    async def _clean_redis(self) -> None:
        import redis.asyncio as aioredis

        r = aioredis.Redis.from_url(self.cfg.redis_url)
        try:
            unlink = r.register_script(_REDIS_UNLINK)
            cursor = b"0"
            while True:
                cursor = await unlink(args=[cursor, f"kfb{RUN_ID}:*"])
                if cursor in (b"0", 0, "0"):
                    break
        finally:
            await r.aclose()

    def server_conf(self, strategy: str, store: str, fill: int | None) -> dict[str, Any]:
        """How a server process opens the same store (after :meth:`session` made it here)."""
        if store == "sqlite":
            return {"url": f"sqlite:///{self.sqlite_paths[(strategy, fill)]}"}
        feed = strategy != "database"
        if store == "postgres":
            assert self._pg_url is not None
            return {
                "url": self._pg_url,
                "prefix": self.pg_prefix(strategy, fill),
                **({"channel": PG_CHANNEL} if feed else {}),
            }
        return {
            "url": self.cfg.redis_url,
            "prefix": self.redis_prefix(strategy, fill),
            **({"channel": REDIS_CHANNEL} if feed else {}),
        }

    def fobs(self) -> list[tuple[str, Any]]:
        """Every Keyfob with a session made here, keyed ``strategy/store/fill``."""
        return [
            (f"{k[0]}/{k[1]}/{k[2] or ''}" + (f"/{k[3]}" if k[3] else ""), fob)
            for k, (fob, _c) in self._sessions.items()
        ]

    def describe(self) -> dict[str, Any]:
        return dict(self.info)

    async def close(self) -> None:
        for closer in reversed(self.closers):
            try:
                await closer()
            except Exception as exc:
                log(f"cleanup: {type(exc).__name__}: {exc}")
        self.closers.clear()


def _async(fn: Callable[[], Any]) -> Callable[[], Awaitable[None]]:
    async def run() -> None:
        fn()

    return run

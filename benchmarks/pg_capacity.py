#!/usr/bin/env python
"""PostgreSQL capacity figures for docs/SCALING.md, section "PostgreSQL at many processes" (each
subsection there names its command).

    PYTHONPATH=src python benchmarks/pg_capacity.py connections --procs 4 --pool-size 8
    PYTHONPATH=src python benchmarks/pg_capacity.py connections --procs 4 --pool-size 8 --pgbouncer
    PYTHONPATH=src python benchmarks/pg_capacity.py ops
    PYTHONPATH=src python benchmarks/pg_capacity.py latency

``connections`` starts N worker processes, each one ``Keyfob(strategy="hybrid")`` on PostgreSQL
with its feed started, drives more concurrent store calls than the pool holds, and counts the
server connections on PostgreSQL (``pg_stat_activity`` by application_name) and, with
``--pgbouncer``, PgBouncer's own view (``SHOW POOLS``). ``ops`` counts the round trips to the
database of each request type (statements, plus BEGIN/COMMIT of transactions). ``latency`` times
one ``get`` direct and through PgBouncer. Needs PostgreSQL at KEYFOB_TEST_PG (default
``postgresql://postgres@127.0.0.1:5432/test``) and, for ``--pgbouncer``, /usr/sbin/pgbouncer.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

PG_URL = os.environ.get("KEYFOB_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
SECRET = secrets.token_urlsafe(32)  # a throwaway key for the workers


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.contextmanager
def pgbouncer(pool: int) -> Iterator[str]:
    """A transaction-mode PgBouncer on a free loopback port (the tests' fixture, as a script)."""
    host, port = PG_URL.split("@", 1)[1].split("/", 1)[0].split(":")
    work = tempfile.mkdtemp(prefix="kf-pgb-")
    os.chmod(work, 0o777)
    listen = _free_port()
    ini = os.path.join(work, "pgbouncer.ini")
    with open(ini, "w") as f:
        f.write(f"[databases]\ntest = host={host} port={port} dbname=test user=postgres\n[pgbouncer]\n"
                f"listen_addr = 127.0.0.1\nlisten_port = {listen}\nunix_socket_dir =\nauth_type = any\n"
                f"pool_mode = transaction\ndefault_pool_size = {pool}\nmax_client_conn = 1000\n"
                "admin_users = postgres\nignore_startup_parameters = extra_float_digits\n"
                "log_connections = 0\nlog_disconnections = 0\n")  # fmt: skip
    cmd = ["/usr/sbin/pgbouncer", ini] if os.geteuid() else ["/usr/sbin/pgbouncer", "-u", "nobody", ini]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        for _ in range(200):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", listen), 0.2):
                break
            time.sleep(0.05)
        yield f"postgresql://postgres@127.0.0.1:{listen}/test"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(5)


def _show_pools(url: str) -> str:
    port = url.rsplit(":", 1)[1].split("/", 1)[0]
    out = subprocess.run(["psql", "-h", "127.0.0.1", "-p", port, "-U", "postgres", "-d", "pgbouncer", "-At",
                          "-c", "SHOW POOLS"], capture_output=True, text=True, check=False)  # fmt: skip
    return out.stdout.strip()


async def _count(app: str) -> int:
    import asyncpg

    conn = await asyncpg.connect(PG_URL)
    try:
        n: int = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name = $1",
            app,
        )
        return n
    finally:
        await conn.close()


_WORKER = r"""
import asyncio, sys
from keyfob import Keyfob
from keyfob.stores import open_feed, open_store

async def main(url, secret, prefix, pool_size):
    # one store per process, as an app holds it; also runs on the code before issue 11 (no
    # store.feed(): the engine then opened open_feed(url), with its own publisher connection)
    store = open_store(url, table_prefix=prefix, pool_max=pool_size)
    extra = {} if hasattr(store, "feed") else {"feed": open_feed(url)}
    async with Keyfob(strategy="hybrid", secret=secret, store=store, **extra) as fob:
        issued = [await fob.create(f"u{i}") for i in range(8)]
        for _ in range(5):  # more concurrent lookups than the pool has connections
            await asyncio.gather(*(store.get(b"%032d" % i) for i in range(3 * pool_size)))
        await fob.revoke(issued[0].session.id)  # publishes on the feed
        print("loaded", flush=True)
        sys.stdin.readline()  # hold the connections until the parent has counted them

asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))
"""


def connections(procs: int, pool_size: int, use_pgbouncer: bool, bouncer_pool: int) -> dict[str, Any]:
    app = f"kfcap{os.getpid()}"
    prefix = f"kfcap{os.getpid()}_"
    with contextlib.ExitStack() as stack:
        if use_pgbouncer:
            bouncer = stack.enter_context(pgbouncer(bouncer_pool))
            url = (f"{bouncer}?application_name={app}&pgbouncer=1"
                   f"&listen_url={quote(f'{PG_URL}?application_name={app}', safe='')}")  # fmt: skip
        else:
            url = f"{PG_URL}?application_name={app}"
        env = {**os.environ, "KEYFOB_SECRET": SECRET}
        argv = [sys.executable, "-c", _WORKER, url, SECRET, prefix, str(pool_size)]
        workers = [
            subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
            for _ in range(procs)
        ]
        try:
            for w in workers:
                assert w.stdout is not None and w.stdout.readline().strip() == "loaded"
            server = asyncio.run(_count(app))
            pools = _show_pools(bouncer) if use_pgbouncer else ""
        finally:
            for w in workers:
                with contextlib.suppress(Exception):
                    w.communicate("\n", timeout=30)
            asyncio.run(_drop(prefix))
    return {"procs": procs, "pool_size": pool_size, "pgbouncer": use_pgbouncer,
            "postgres_connections": server, "per_process": server / procs, "show_pools": pools}  # fmt: skip


async def _drop(prefix: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_URL)
    try:
        names = ("sessions", "user_versions", "revocations", "changes", "meta")
        tables = ", ".join(f"{prefix}{t}" for t in names)
        await conn.execute(f"DROP TABLE IF EXISTS {tables}")
    finally:
        await conn.close()


# -- round trips per request type ---------------------------------------------------------------------


class _Counting:
    """Wraps a SQL store's driver: counts round trips (a transaction adds BEGIN and COMMIT)."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.n = inner, 0
        self.postgres = inner.postgres

    async def one(self, sql: str, params: Any) -> Any:
        self.n += 1
        return await self.inner.one(sql, params)

    async def all(self, sql: str, params: Any) -> Any:
        self.n += 1
        return await self.inner.all(sql, params)

    async def execute(self, sql: str, params: Any) -> Any:
        self.n += 1
        return await self.inner.execute(sql, params)

    @contextlib.asynccontextmanager
    async def transaction(self) -> Any:
        self.n += 2
        async with self.inner.transaction() as tx:
            outer = self

            class Tx:
                async def one(self, sql: str, params: Any) -> Any:
                    outer.n += 1
                    return await tx.one(sql, params)

                async def all(self, sql: str, params: Any) -> Any:
                    outer.n += 1
                    return await tx.all(sql, params)

                async def execute(self, sql: str, params: Any) -> Any:
                    outer.n += 1
                    return await tx.execute(sql, params)

            yield Tx()

    async def close(self) -> None:
        await self.inner.close()


async def ops() -> dict[str, dict[str, int]]:
    from keyfob import Keyfob
    from keyfob._clock import FakeClock
    from keyfob.stores import open_store

    out: dict[str, dict[str, int]] = {}
    prefix = f"kfops{os.getpid()}_"
    for strategy in ("database", "hybrid", "jwt"):
        clock = FakeClock(time.time())
        store = open_store(f"{PG_URL}?table_prefix={prefix}")
        await store.migrate()
        counting = _Counting(store._driver)  # type: ignore[attr-defined]
        store._driver = counting  # type: ignore[attr-defined]
        store._one_now = None  # type: ignore[attr-defined]
        fob = Keyfob(strategy=strategy, secret=SECRET, store=store, clock=clock)  # the store's own feed
        counts: Counter[str] = Counter()

        async def measure(name: str, coro: Any, counting: _Counting = counting,
                          counts: Counter[str] = counts) -> Any:
            before = counting.n
            result = await coro
            counts[name] = counting.n - before
            return result

        async with fob:
            issued = await measure("sign-in (create)", fob.create("u1"))
            cookies = {c.name: c.value for c in issued.cookies}
            await measure("request (authenticate)", fob.authenticate(cookies))
            clock.advance(fob.settings.update_age + 1)
            result = await measure("request after update_age (rolling)", fob.authenticate(cookies))
            cookies.update({c.name: c.value for c in result.cookies})
            if strategy == "hybrid":
                clock.advance(fob.settings.access_ttl + 1)
                refreshed = await measure("request with an expired access token (refresh)",
                                          fob.authenticate(cookies))  # fmt: skip
                cookies.update({c.name: c.value for c in refreshed.cookies})
            other = await fob.create("u1")
            await measure("revoke(session id)", fob.revoke(other.session.id))
            await measure("sign-out", fob.sign_out(cookies))
            await fob.create("u2")
            await measure("revoke_user (sign out everywhere)", fob.revoke_user("u2"))
            await measure("bump_user_version", fob.bump_user_version("u2"))
        out[strategy] = dict(counts)
    await _drop(prefix)
    return out


async def latency(rounds: int = 15, n: int = 200) -> dict[str, float]:
    """Median µs per ``get`` (a primary-key miss), interleaved blocks: direct, direct without the
    statement cache (what ``?pgbouncer=1`` does), and through PgBouncer."""
    import statistics

    from keyfob.stores import open_store

    with pgbouncer(2) as bouncer:
        urls = {"direct": PG_URL, "direct_no_statement_cache": f"{PG_URL}?pgbouncer=1",
                "pgbouncer": f"{bouncer}?pgbouncer=1"}  # fmt: skip
        stores = {name: open_store(url) for name, url in urls.items()}
        samples: dict[str, list[float]] = {name: [] for name in urls}
        try:
            for store in stores.values():
                await store.get(b"x" * 32)
            for _ in range(rounds):
                for name, store in stores.items():
                    t = time.perf_counter()
                    for _ in range(n):
                        await store.get(b"x" * 32)
                    samples[name].append((time.perf_counter() - t) / n * 1e6)
        finally:
            for store in stores.values():
                await store.close()
    return {f"get_us_{name}": round(statistics.median(v), 1) for name, v in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("connections")
    c.add_argument("--procs", type=int, default=4)
    c.add_argument("--pool-size", type=int, default=8)
    c.add_argument("--pgbouncer", action="store_true")
    c.add_argument("--bouncer-pool", type=int, default=4, help="PgBouncer default_pool_size")
    sub.add_parser("ops")
    sub.add_parser("latency")
    args = parser.parse_args()
    if args.cmd == "connections":
        result: Any = connections(args.procs, args.pool_size, args.pgbouncer, args.bouncer_pool)
    elif args.cmd == "ops":
        result = asyncio.run(ops())
    else:
        result = asyncio.run(latency())
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

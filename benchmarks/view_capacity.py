"""The revocation view's figures in docs/SCALING.md: memory per entry, and a 100k-entry resync per store.

    PYTHONPATH=src python benchmarks/view_capacity.py memory [--n 100000]
    PYTHONPATH=src python benchmarks/view_capacity.py resync [--n 100000] \
        [--stores memory,sqlite,postgresql,redis,cluster]

* ``memory`` — bytes per revoked session and per user-version entry in the view, measured with
  ``tracemalloc`` over a view populated through its own ``apply`` from JSON-decoded events (as they
  arrive from the feed or ``changes()``): 22-character session ids, 13-character user ids, every
  entry with its horizon (``until``).
* ``resync`` — a fresh view's ``resync()`` (what a process does at start, and after a feed drop
  with an old cursor) through ``--n`` change-log entries (half revocations, half version bumps),
  in the view's pages of 250: wall time, pages, and the longest stall of a 1 ms ticker task running
  next to it (with the same ticker's worst over 2 s before it: the machine's own noise), and the
  most CPU time this thread spent between two ticks (the stall the code makes, load aside). Memory and
  SQLite run in-process; PostgreSQL uses the local server's ``test`` database under a private table
  prefix (dropped after); Redis and Redis Cluster are servers this script starts on free loopback
  ports and kills at the end (``cluster`` needs ``redis-server`` with cluster support).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import sqlite3
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from keyfob import FakeClock  # noqa: E402
from keyfob.stores import SessionStore, open_store  # noqa: E402
from keyfob.strategies._revocation import PAGE, RevocationView  # noqa: E402

PG_URL = os.environ.get("KEYFOB_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
PREFIX = f"kfview{os.getpid()}"


# -- memory ----------------------------------------------------------------------------------------


def memory(n: int) -> dict[str, Any]:
    sid_payloads = [json.dumps({"t": "sid", "sid": secrets.token_urlsafe(16), "until": 1.9e9 + i})
                    for i in range(n)]  # keyfob's session ids: 22 characters
    ver_payloads = [json.dumps({"t": "ver", "user": f"user-{i:08d}", "ver": 3, "until": 1.9e9 + i})
                    for i in range(n)]
    view = RevocationView(store=None, feed=None, clock=lambda: 0.0)  # type: ignore[arg-type]
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    for payload in sid_payloads:
        view.apply(json.loads(payload))
    mid = tracemalloc.get_traced_memory()[0]
    for payload in ver_payloads:
        view.apply(json.loads(payload))
    end = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert len(view.revoked) == len(view.min_version) == len(view.version_until) == n
    return {"n": n, "bytes_per_revoked_session": round((mid - base) / n, 1),
            "bytes_per_user_version": round((end - mid) / n, 1),
            "note": "22-char session ids, 13-char user ids, each entry with its until"}


# -- resync ----------------------------------------------------------------------------------------


async def fill_rows(store: SessionStore, kind: str, url: str, n: int, until: float) -> None:
    """n/2 revocations + n/2 bumps in the change log (bulk SQL where a store call per entry is slow)."""
    half = n // 2
    rows = [("sid", f"s{i:021d}", None, until) for i in range(half)]
    rows += [("ver", f"user-{i:08d}", 1, until) for i in range(half)]
    if kind == "sqlite":
        db = sqlite3.connect(url.split(":///", 1)[1], timeout=30)
        db.executemany("INSERT INTO keyfob_changes (kind, key, ver, until) VALUES (?, ?, ?, ?)", rows)
        db.commit()
        db.close()
    elif kind == "postgresql":
        import asyncpg

        conn = await asyncpg.connect(PG_URL)
        try:
            await conn.copy_records_to_table(f"{PREFIX}_changes", records=rows,
                                             columns=["kind", "key", "ver", "until"])
        finally:
            await conn.close()
    else:  # memory, Redis: through the store (Redis: 64 at a time)
        sem = asyncio.Semaphore(64)

        async def one(i: int) -> None:
            async with sem:
                if i < half:
                    await store.add_revocation(f"s{i:021d}", until=until)
                else:
                    await store.bump_user_version(f"user-{i - half:08d}", until=until)

        for start in range(0, n, 4000):
            await asyncio.gather(*(one(i) for i in range(start, min(n, start + 4000))))


async def resync_one(kind: str, url: str, n: int, **options: Any) -> dict[str, Any]:
    store = open_store(url, **options)
    await store.migrate()
    clock = FakeClock(time.time())
    t0 = time.perf_counter()
    await fill_rows(store, kind, url, n, clock() + 3600)
    filled = time.perf_counter() - t0
    pages = 0
    plain_changes = store.changes

    async def counted(*args: Any, **kw: Any) -> Any:
        nonlocal pages
        pages += 1
        return await plain_changes(*args, **kw)

    store.changes = counted  # type: ignore[method-assign]
    stall = cpu = 0.0
    running = True

    async def ticker() -> None:
        nonlocal stall, cpu
        loop = asyncio.get_running_loop()
        last, last_cpu = loop.time(), time.thread_time()
        while running:
            await asyncio.sleep(0.001)
            t, t_cpu = loop.time(), time.thread_time()
            stall, cpu = max(stall, t - last - 0.001), max(cpu, t_cpu - last_cpu)
            last, last_cpu = t, t_cpu

    tick = asyncio.create_task(ticker())
    await asyncio.sleep(2.0)
    baseline, stall, cpu = stall, 0.0, 0.0
    view = RevocationView(store, None, clock)
    t0 = time.perf_counter()
    await view.resync()
    took = time.perf_counter() - t0
    running = False
    await tick
    assert len(view.revoked) + len(view.min_version) == n, (len(view.revoked), len(view.min_version))
    await store.close()
    return {"store": kind, "entries": n, "page": PAGE, "pages": pages, "fill_s": round(filled, 1),
            "resync_s": round(took, 2), "max_loop_stall_ms": round(stall * 1000, 1),
            "max_cpu_between_ticks_ms": round(cpu * 1000, 1),
            "idle_loop_stall_ms_before": round(baseline * 1000, 1)}


async def resync(n: int, stores: list[str]) -> list[dict[str, Any]]:
    out = []
    for kind in stores:
        if kind == "memory":
            out.append(await resync_one(kind, f"memory://view-capacity-{os.getpid()}", n))
        elif kind == "sqlite":
            with tempfile.TemporaryDirectory() as d:
                out.append(await resync_one(kind, f"sqlite:///{d}/keyfob.db", n))
        elif kind == "postgresql":
            try:
                out.append(await resync_one(kind, PG_URL, n, table_prefix=f"{PREFIX}_"))
            finally:
                import asyncpg

                conn = await asyncpg.connect(PG_URL)
                tables = ", ".join(f"{PREFIX}_{t}" for t in
                                   ("sessions", "user_versions", "revocations", "changes", "meta"))
                await conn.execute(f"DROP TABLE IF EXISTS {tables}")
                await conn.close()
        elif kind == "redis":
            from benchmarks.scaling_redis import Standalone

            server = Standalone()
            try:
                out.append(await resync_one(kind, server.url, n))
            finally:
                server.stop()
        elif kind == "cluster":
            from tests._redis_cluster import RedisClusterProcesses

            cluster = RedisClusterProcesses().start()
            try:
                out.append(await resync_one(kind, cluster.url, n))
            finally:
                cluster.stop()
        print(json.dumps(out[-1]), flush=True)
    return out


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["memory", "resync"])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--stores", default="memory,sqlite,postgresql,redis,cluster")
    args = ap.parse_args()
    if args.what == "memory":
        print(json.dumps(memory(args.n)))
    else:
        await resync(args.n, args.stores.split(","))


if __name__ == "__main__":
    asyncio.run(main())

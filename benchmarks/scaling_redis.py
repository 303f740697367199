"""The small-scale runs behind docs/SCALING.md (Redis and Redis Cluster).

    PYTHONPATH=src python benchmarks/scaling_redis.py [pubsub|memory|resync|ops|all] [--n 100000]

Starts its own servers on free loopback ports (a 3-master + 3-replica cluster, and one standalone
``redis-server``; no persistence, ``slowlog-log-slower-than 10000``) and kills them at the end:
it never touches a shared server.

* ``pubsub`` — classic PUBLISH vs sharded SPUBLISH on the cluster: 4 listeners (``RedisFeed``),
  publish→deliver latency p50/p99 over interleaved rounds, and cluster-bus messages per publish.
* ``memory`` — bytes per revoked session and per user version in the revocation view
  (``tracemalloc`` over a view populated through its own ``apply``).
* ``resync`` — ``changes()`` paging through ``--n`` entries (half revocations, half version bumps):
  total time, slowest call, the event loop's longest stall meanwhile, and the server's SLOWLOG
  (commands over 10 ms) — on the standalone server and on the cluster.
* ``connections`` — server connections of one hybrid process, idle and under 32 concurrent requests.
* ``redis-memory`` — server memory per session row, per revocation and per version bump.
* ``ops`` — per request type: client round trips (socket writes; a pipeline is one per node) and
  server commands (INFO commandstats deltas on the masters, script-internal calls included).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests._redis_cluster import RedisClusterProcesses, _cli, free_ports  # noqa: E402

from keyfob import FakeClock, Keyfob  # noqa: E402
from keyfob.stores import open_store  # noqa: E402
from keyfob.stores.redis import RedisFeed, RedisStore  # noqa: E402
from keyfob.strategies._revocation import RevocationView  # noqa: E402

SECRET = "kf-scaling-secret-0123456789abcdef0123456789abcdef0123456789ab"


class Standalone:
    def __init__(self) -> None:
        self.port = free_ports(1)[0]
        self.dir = tempfile.mkdtemp(prefix="kf-redis-")
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.dir, "--slowlog-log-slower-than", "10000"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        while "PONG" not in _cli(self.port, "ping"):
            time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


# -- pubsub ----------------------------------------------------------------------------------------


def bus_stats(cluster: RedisClusterProcesses) -> dict[str, int]:
    total: dict[str, int] = {}
    for port in cluster.ports:
        for line in _cli(port, "cluster", "info").splitlines():
            if line.startswith("cluster_stats_messages_publish"):
                k, v = line.strip().split(":")
                total[k] = total.get(k, 0) + int(v)
    return total


async def pubsub(cluster: RedisClusterProcesses, rounds: int = 3, per_round: int = 500) -> dict[str, Any]:
    out: dict[str, Any] = {}
    lat: dict[str, list[float]] = {"publish": [], "spublish": []}
    bus: dict[str, float] = {}
    pub_us: dict[str, list[float]] = {"publish": [], "spublish": []}
    for _ in range(rounds):
        for mode in ("publish", "spublish"):
            sharded = mode == "spublish"
            listeners = [RedisFeed(cluster.url, prefix="bench", sharded=sharded) for _ in range(4)]
            publisher = RedisFeed(cluster.url, prefix="bench", sharded=sharded)
            got: list[list[float]] = [[] for _ in listeners]
            for feed, into in zip(listeners, got, strict=True):
                await feed.start(lambda e, into=into: into.append(time.perf_counter() - e["sent"]),
                                 lambda up: None)
            before = bus_stats(cluster)
            for _ in range(per_round):
                t0 = time.perf_counter()
                await publisher.publish({"t": "sid", "sid": "x", "until": 1.0, "sent": t0})
                pub_us[mode].append((time.perf_counter() - t0) * 1e6)
            deadline = time.monotonic() + 10
            while any(len(g) < per_round for g in got) and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            after = bus_stats(cluster)
            sent = sum(after.get(k, 0) - before.get(k, 0) for k in after if k.endswith("_sent"))
            bus[mode] = sent / per_round
            for g in got:
                lat[mode].extend(g)
            for feed in [*listeners, publisher]:
                await feed.close()
    for mode in lat:
        ms = [x * 1000 for x in lat[mode]]
        out[mode] = {"delivered": len(ms), "p50_ms": round(pct(ms, 0.5), 3),
                     "p99_ms": round(pct(ms, 0.99), 3),
                     "publish_call_us_median": round(statistics.median(pub_us[mode]), 1),
                     "cluster_bus_messages_per_publish": round(bus[mode], 2)}
    return out


# -- memory ----------------------------------------------------------------------------------------


def memory(n: int) -> dict[str, Any]:
    """Events arrive as JSON (feed or changes()): decode them inside the traced region, so the
    per-entry figure includes the id strings and floats the view keeps, as in production."""
    import secrets

    sid_payloads = [json.dumps({"t": "sid", "sid": secrets.token_urlsafe(16), "until": 1.9e9 + i})
                    for i in range(n)]  # keyfob's session ids: 22 characters
    ver_payloads = [json.dumps({"t": "ver", "user": f"user-{i:08d}", "ver": 3}) for i in range(n)]
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
    assert len(view.revoked) == len(view.min_version) == n
    return {"n": n, "bytes_per_revoked_session": round((mid - base) / n, 1),
            "bytes_per_user_version": round((end - mid) / n, 1),
            "note": "22-char session ids, 13-char user ids"}


# -- resync ----------------------------------------------------------------------------------------


async def fill(store: RedisStore, n: int, now: float) -> float:
    t0 = time.perf_counter()
    sem = asyncio.Semaphore(64)

    async def one(i: int) -> None:
        async with sem:
            if i % 2:
                await store.add_revocation(f"sid-{i:08d}-xxxxxxxxxx", until=now + 3600)
            else:
                await store.bump_user_version(f"user-{i:08d}", until=now + 3600)

    for start in range(0, n, 2000):
        await asyncio.gather(*(one(i) for i in range(start, min(n, start + 2000))))
    return time.perf_counter() - t0


async def resync_one(url: str, n: int, slowlog_ports: list[int], limit: int = 1000) -> dict[str, Any]:
    store = open_store(url, prefix="scal")
    assert isinstance(store, RedisStore)
    await store.migrate()
    now = time.time()
    filled = await fill(store, n, now)
    for port in slowlog_ports:
        _cli(port, "slowlog", "reset")
    stall = 0.0
    running = True

    async def ticker() -> None:
        nonlocal stall
        loop = asyncio.get_running_loop()
        last = loop.time()
        while running:
            await asyncio.sleep(0.001)
            t = loop.time()
            stall = max(stall, t - last - 0.001)
            last = t

    tick = asyncio.create_task(ticker())
    await asyncio.sleep(2.0)  # the machine's own stalls first (other processes on the 2 cores)
    baseline, stall = stall, 0.0
    t0 = time.perf_counter()
    cursor, events, calls, slowest, cpu = None, 0, 0, 0.0, 0.0
    while True:
        c0, p0 = time.perf_counter(), time.process_time()
        page = await store.changes(cursor, now=now, limit=limit)
        slowest = max(slowest, time.perf_counter() - c0)
        cpu = max(cpu, time.process_time() - p0)
        events += len(page.events)
        calls += 1
        cursor = page.cursor
        if not page.more:
            break
    total = time.perf_counter() - t0
    running = False
    await tick
    slow = sum(int(_cli(port, "slowlog", "len").strip() or 0) for port in slowlog_ports)
    await store.close()
    return {"entries": events, "limit": limit, "fill_s": round(filled, 1), "resync_s": round(total, 2),
            "calls": calls,
            "slowest_call_ms": round(slowest * 1000, 1), "most_cpu_in_one_call_ms": round(cpu * 1000, 1),
            "max_loop_stall_ms": round(stall * 1000, 1),
            "idle_loop_stall_ms_before": round(baseline * 1000, 1),
            "server_commands_over_10ms": slow}


# -- ops per request type --------------------------------------------------------------------------


def commandstats(ports: list[int]) -> dict[str, int]:
    total: dict[str, int] = {}
    for port in ports:
        for line in _cli(port, "info", "commandstats").splitlines():
            if line.startswith("cmdstat_"):
                name, rest = line.split(":", 1)
                calls = int(rest.split(",")[0].split("=")[1])
                total[name[8:]] = total.get(name[8:], 0) + calls
    return total


async def ops(url: str, ports: list[int]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    clock = FakeClock()
    reps = 50

    from redis.asyncio.connection import AbstractConnection

    sends = [0]
    original = AbstractConnection.send_packed_command

    async def counting(self: Any, command: Any, check_health: bool = True) -> None:
        sends[0] += 1  # one write to the socket = one round trip (a pipeline is one per node)
        await original(self, command, check_health)

    AbstractConnection.send_packed_command = counting  # type: ignore[method-assign]

    async def measure(name: str, fn: Callable[[], Awaitable[Any]]) -> None:
        before, sent = commandstats(ports), sends[0]
        for _ in range(reps):
            await fn()
        after = commandstats(ports)
        delta = {k: (after.get(k, 0) - before.get(k, 0)) / reps for k in after}
        delta = {k: round(v, 2) for k, v in delta.items() if v and k not in ("info", "ping", "cluster|info")}
        top = sum(v for k, v in delta.items() if k in ("evalsha", "eval"))
        out[name] = {"round_trips": round((sends[0] - sent) / reps, 2), "scripts": round(top, 2),
                     "server_commands": round(sum(delta.values()), 2), "by_command": delta}

    for strategy in ("database", "hybrid"):
        await ops_for(strategy, url + "?prefix=ops", clock, measure)
    return out


async def ops_for(strategy: str, url: str, clock: FakeClock, measure: Any) -> None:
    fob = Keyfob(strategy=strategy, secret=SECRET, store=url, clock=clock)
    await fob.start()
    jars: list[dict[str, str]] = []
    refresh_jars: list[dict[str, str]] = []
    count = iter(range(10**6))

    async def create() -> None:
        issued = await fob.create(f"u{len(jars)}", {"role": "user"}, secure=False)
        jars.append({c.name: c.value for c in issued.cookies})

    async def validate() -> None:
        await fob.authenticate(jars[next(count) % len(jars)], secure=False)

    async def refresh() -> None:  # the refresh cookie alone: rotate it, as the middleware does
        i = next(count) % len(jars)
        result = await fob.authenticate(refresh_jars[i], secure=False)
        for c in result.cookies:
            refresh_jars[i][c.name] = c.value

    await measure(f"{strategy}: sign in (create)", create)
    await measure(f"{strategy}: validate a request (authenticate)", validate)
    if strategy == "hybrid":
        access = fob.profile(False).session.name
        refresh_jars.extend({k: v for k, v in j.items() if k != access} for j in jars)
        await measure(f"{strategy}: refresh (rotate the refresh token)", refresh)
    sids = iter([(await fob.authenticate(j, secure=False)).session.id for j in jars])  # type: ignore[union-attr]
    await measure(f"{strategy}: revoke one session", lambda: fob.revoke(next(sids)))
    await measure(f"{strategy}: bump a user's version", lambda: fob.bump_user_version(f"u{next(count)}"))
    await fob.close()


def connected_clients(ports: list[int]) -> int:
    total = 0
    for port in ports:
        info = _cli(port, "info", "clients")
        total += next(int(x.split(":")[1]) for x in info.splitlines() if x.startswith("connected_clients:"))
    return total


async def connections(url: str, ports: list[int], concurrency: int = 32) -> dict[str, Any]:
    """Server connections one hybrid process holds: idle after start, then after ``concurrency``
    concurrent sign-ins and refreshes (redis-py opens one connection per concurrent command)."""
    base = connected_clients(ports)
    fob = Keyfob(strategy="hybrid", secret=SECRET, store=url + "?prefix=conn")
    await fob.start()
    idle = connected_clients(ports) - base
    issued = await asyncio.gather(*(fob.create(f"u{i}", {}, secure=False) for i in range(concurrency)))
    access = fob.profile(False).session.name
    jars = [{c.name: c.value for c in i.cookies if c.name != access} for i in issued]
    await asyncio.gather(*(fob.authenticate(j, secure=False) for j in jars))
    busy = connected_clients(ports) - base
    await fob.close()
    return {"idle_after_start": idle, f"after_{concurrency}_concurrent_requests": busy}


def used_memory(port: int) -> int:
    info = _cli(port, "info", "memory")
    return next(int(x.split(":")[1]) for x in info.splitlines() if x.startswith("used_memory:"))


async def redis_memory(url: str, port: int, n: int = 5000) -> dict[str, Any]:
    """Server memory per session row (with its pointers and index entries), per revocation and per
    version bump (with their change-log entries): used_memory deltas on a private server."""
    fob = Keyfob(strategy="hybrid", secret=SECRET, store=url + "?prefix=mem")
    await fob.start()
    store = fob.store
    out: dict[str, Any] = {"n": n}
    m0 = used_memory(port)
    for i in range(n):
        await fob.create(f"user-{i:08d}", {"role": "user"}, secure=False)
    m1 = used_memory(port)
    for i in range(n):
        await store.add_revocation(f"{i:022d}", until=time.time() + 600)
    m2 = used_memory(port)
    for i in range(n):
        await store.bump_user_version(f"user-{i:08d}", until=time.time() + 600)
    m3 = used_memory(port)
    out["bytes_per_session"] = round((m1 - m0) / n)
    out["bytes_per_revocation"] = round((m2 - m1) / n)
    out["bytes_per_version_bump"] = round((m3 - m2) / n)
    await fob.close()
    return out


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("what", nargs="?", default="all",
                    choices=["pubsub", "memory", "resync", "ops", "redis-memory", "connections", "all"])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--limit", type=int, default=1000, help="resync: changes() page size")
    args = ap.parse_args()
    results: dict[str, Any] = {}
    if args.what in ("memory", "all"):
        results["memory"] = memory(args.n)
        print(json.dumps({"memory": results["memory"]}), flush=True)
    if args.what == "memory":
        return
    cluster = RedisClusterProcesses().start()
    single = Standalone()
    try:
        for port in cluster.ports:
            _cli(port, "config", "set", "slowlog-log-slower-than", "10000")
        if args.what in ("pubsub", "all"):
            results["pubsub"] = await pubsub(cluster)
            print(json.dumps({"pubsub": results["pubsub"]}), flush=True)
        if args.what in ("resync", "all"):
            results["resync"] = {
                "standalone": await resync_one(single.url, args.n, [single.port], args.limit),
                "cluster": await resync_one(cluster.url, args.n, cluster.ports, args.limit),
            }
            print(json.dumps({"resync": results["resync"]}), flush=True)
        if args.what in ("connections", "all"):
            results["connections"] = {"standalone": await connections(single.url, [single.port]),
                                      "cluster": await connections(cluster.url, cluster.ports)}
            print(json.dumps({"connections": results["connections"]}), flush=True)
        if args.what in ("redis-memory", "all"):
            results["redis_memory"] = await redis_memory(single.url, single.port)
            print(json.dumps({"redis_memory": results["redis_memory"]}), flush=True)
        if args.what in ("ops", "all"):
            results["ops"] = {"standalone": await ops(single.url, [single.port]),
                              "cluster": await ops(cluster.url, cluster.master_ports())}
            print(json.dumps({"ops": results["ops"]}, indent=1), flush=True)
    finally:
        cluster.stop()
        single.stop()


if __name__ == "__main__":
    asyncio.run(main())

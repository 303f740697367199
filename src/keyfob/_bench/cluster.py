"""The ``cluster`` group: keyfob on a real Redis Cluster the benchmark starts itself (issue 11).

The group starts 3 ``redis-server --cluster-enabled yes`` masters (no replicas: replication is
asynchronous and adds nothing to a read) on free loopback ports with
:class:`~keyfob._bench._redis_cluster.RedisClusterProcesses` — the helper the tests' cluster comes
from — and tears them down at the end, whatever happens. On it:

* **validate**, interleaved rounds (:func:`~keyfob._bench._core.run_rounds`), all three in wall
  time so the ratios compare like with like: ``fob.authenticate`` with the hybrid strategy (access
  JWT + the revocation view fed by sharded pub/sub), with the database strategy (a script on the
  user's slot, found from the token), and the floor ``cluster_raw_redis``: one ``HGETALL`` of the
  same row through redis-py's ``RedisCluster``, its key known. A ratio is the median over rounds of
  the per-round ratio, which a loaded machine moves less than a ratio of medians.
* **revocation propagation** (:mod:`keyfob._bench.propagation`) across ``max(4,
  Config.propagation_workers)`` processes, on the cluster's sharded pub/sub and, for the same number of
  processes, on PostgreSQL LISTEN/NOTIFY: p50/p99 from ``fob.revoke()`` to each process's view
  applying it (target p99 < 50 ms).

Without ``redis-server``/``redis-cli`` (or when the cluster does not form) the group records
``available: false`` with the reason, and every case and ratio it owns is ``null`` with that
reason; it never makes numbers up. ``--smoke`` uses one worker process and three revocations.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import statistics
import subprocess
from collections.abc import Awaitable
from typing import Any

from ._core import USER_ID, Case, Config, Results, Skip, check, log, run_rounds
from ._redis_cluster import REDIS_SERVER, RedisClusterProcesses, cluster_missing, flush_cluster
from ._stores import Stores

__all__ = ["ClusterStores", "ratios", "run"]

MASTERS = 3
CASES = {
    "cluster_keyfob_hybrid": "keyfob hybrid (Redis Cluster store + sharded pub/sub feed): authenticate",
    "cluster_keyfob_db": "keyfob database (Redis Cluster): authenticate",
    "cluster_raw_redis": "redis.asyncio RedisCluster HGETALL of the same row, key known",
}
FEEDS = {
    "redis_cluster": f"Redis Cluster sharded pub/sub ({MASTERS} masters)",
    "postgres": "PostgreSQL LISTEN/NOTIFY",
}


class ClusterStores(Stores):
    """:class:`Stores` whose ``redis`` is the group's own cluster (``cfg.redis_url``).

    Cleaning up is a FLUSHALL of every master: the cluster is this run's, nobody else's."""

    async def _clean_redis(self) -> None:
        await flush_cluster(self.cfg.redis_url)


def _workers(cfg: Config) -> int:
    return cfg.propagation_workers if cfg.mode == "smoke" else max(4, cfg.propagation_workers)


def _redis_version() -> str:
    with contextlib.suppress(Exception):
        out = subprocess.run([REDIS_SERVER, "--version"], capture_output=True, text=True, timeout=5)
        return out.stdout.strip()
    return "unknown"


async def _fob_case(name: str, fob: Any, cookies: dict[str, str]) -> Case:
    from .micro import wait_live

    if fob.view.feed is not None:
        check(await wait_live(fob), f"{name}: the revocation view did not go live on the cluster")
    result = await fob.authenticate(cookies, secure=True)
    check(result.session is not None, f"{name}: authenticate refused the fresh session ({result.reason})")

    def op() -> Awaitable[Any]:
        return fob.authenticate(cookies, secure=True)  # type: ignore[no-any-return]

    return Case(name, "cluster", CASES[name], op, is_async=True)


async def _raw_case(stores: ClusterStores, token: str) -> Case:
    from redis.asyncio.cluster import RedisCluster

    from keyfob.stores.redis._keys import Keys
    from keyfob.stores.redis._url import parse_redis_url

    host, port = parse_redis_url(stores.cfg.redis_url).seeds[0]
    client = RedisCluster(host=host, port=port)
    stores.closers.append(client.aclose)
    key = (
        Keys(stores.redis_prefix("database", None)).user(USER_ID).encode()
        + b":s:"
        + hashlib.sha256(token.encode()).hexdigest().encode()
    )

    def raw() -> Awaitable[Any]:
        return client.hgetall(key)

    check(bool(await raw()), "raw RedisCluster HGETALL did not find keyfob's row")
    return Case("cluster_raw_redis", "cluster", CASES["cluster_raw_redis"], raw, is_async=True)


async def _validate(cfg: Config, results: Results) -> None:
    stores = ClusterStores(cfg)
    try:
        hybrid, h_cookies = await stores.session("hybrid", "redis")
        db, d_cookies = await stores.session("database", "redis")
        cases = [
            await _fob_case("cluster_keyfob_hybrid", hybrid, h_cookies),
            await _fob_case("cluster_keyfob_db", db, d_cookies),
            await _raw_case(stores, next(iter(d_cookies.values()))),
        ]
        log(f"cluster: {len(cases)} validate cases x {cfg.rounds} rounds")
        await run_rounds(cases, cfg)
        for c in cases:
            results.add_case(c)
        raw = cases[-1].samples_ns
        results.sections["cluster"]["paired"] = {  # median over rounds of the per-round ratio
            c.name: round(statistics.median(a / b for a, b in zip(c.samples_ns, raw, strict=True)), 3)
            for c in cases[:-1]
        }
        if not hybrid.view.live:
            results.notes.append("cluster: the hybrid view's feed was down at the end of the rounds")
    finally:
        await stores.close()


async def _propagation(cfg: Config, pg_cfg: Config) -> dict[str, Any]:
    from .propagation import _measure

    out: dict[str, Any] = {}
    for name, feed in FEEDS.items():
        c = cfg if name == "redis_cluster" else pg_cfg
        log(f"cluster: propagation on {feed}, {c.propagation_samples} revocations x {c.propagation_workers}")
        try:
            stores = ClusterStores(c) if name == "redis_cluster" else Stores(c)
            out[name] = await _measure(c, name.split("_")[0], stores, feed)
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
            out[name] = {"feed": feed, "p50_ms": None, "p99_ms": None, "reason": reason}
            log(f"cluster: propagation on {feed} could not run: {exc}")
    return out


def _unavailable(results: Results, reason: str) -> None:
    log(f"cluster: not available: {reason}")
    results.sections["cluster"] = {"available": False, "reason": reason}
    for name, label in CASES.items():
        results.add_skip(Skip(name, reason, "cluster", label))


def run(cfg: Config, results: Results) -> None:
    """Start the cluster, measure validate and propagation on it, stop it."""
    missing = cluster_missing()
    if missing:
        _unavailable(results, f"Redis Cluster not available: {missing}")
        return
    cluster = RedisClusterProcesses(masters=MASTERS, replicas=0)
    try:
        try:
            cluster.start()
        except Exception as exc:
            _unavailable(results, f"Redis Cluster did not start: {type(exc).__name__}: {exc}")
            return
        log(f"cluster: {MASTERS} masters on 127.0.0.1:{','.join(map(str, cluster.ports))}")
        workers = _workers(cfg)
        ccfg = dataclasses.replace(cfg, redis_url=cluster.url, propagation_workers=workers)
        sec: dict[str, Any] = {
            "available": True,
            "masters": MASTERS,
            "replicas": 0,
            "url": cluster.url,
            "redis_server": _redis_version(),
            "rounds": cfg.rounds,
            "workers": workers,
        }
        results.sections["cluster"] = sec
        try:
            asyncio.run(_validate(ccfg, results))
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
            sec["validate_error"] = reason
            log(f"cluster: validate could not run: {reason}")
            for name, label in CASES.items():
                if name not in results.cases:
                    results.add_skip(Skip(name, reason, "cluster", label))
        sec["propagation"] = asyncio.run(
            _propagation(ccfg, dataclasses.replace(cfg, propagation_workers=workers))
        )
    finally:
        cluster.stop()


def ratios(results: Results) -> tuple[dict[str, float | None], dict[str, str], dict[str, str]]:
    """Validate on the cluster over the raw ``HGETALL``; the worst propagation p99 per feed, in ms."""
    r: dict[str, float | None] = {}
    reasons: dict[str, str] = {}
    inputs: dict[str, str] = {}
    sec = results.sections.get("cluster", {})
    raw = results.median("cluster_raw_redis")
    for key, name in (
        ("cluster_db_vs_raw", "cluster_keyfob_db"),
        ("cluster_hybrid_vs_raw", "cluster_keyfob_hybrid"),
    ):
        v = sec.get("paired", {}).get(name)
        if v is None or not raw:
            r[key] = None
            missing = "cluster_raw_redis" if raw is None else name
            why = results.cases.get(missing, {}).get("reason") or sec.get("reason")
            reasons[key] = str(why or f"{missing} was not measured")
        else:
            r[key] = v
            inputs[key] = f"wall time, median over rounds of the per-round ratio {name} / cluster_raw_redis"
    for key, name in (
        ("cluster_revocation_p99_ms", "redis_cluster"),
        ("cluster_revocation_p99_ms_postgres", "postgres"),
    ):
        row = sec.get("propagation", {}).get(name, {})
        r[key] = row.get("p99_ms")
        if r[key] is None:
            reasons[key] = str(row.get("reason") or sec.get("reason") or "not measured")
        else:
            inputs[key] = (
                f"p99 ms, {row.get('samples')} samples from {row.get('workers')} processes: {row.get('feed')}"
            )
    return r, reasons, inputs

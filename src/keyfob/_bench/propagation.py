"""Hybrid revocation propagation: ``fob.revoke(sid)`` here → another process refuses the token.

The parent process holds a hybrid Keyfob on Redis (pub/sub) or PostgreSQL (LISTEN/NOTIFY) and
starts worker processes (``python -m keyfob._bench.propagation``) with their own Keyfob on the same
store and feed. Per sample: the parent signs a user in and hands the cookies to every worker,
which checks that ``authenticate`` accepts them and starts watching; then the parent takes
``time.monotonic_ns()`` and calls ``await fob.revoke(session_id)``. A worker reports the moment its
revocation view applied the event for that session (its ``apply`` is wrapped) — and confirms
that ``authenticate`` now refuses the cookies; a 2 ms poll of ``authenticate`` backs this up in
case the view learns of it by another path. ``CLOCK_MONOTONIC`` is system-wide on Linux, so the
two processes' readings subtract. Latency = worker's reading - parent's reading.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import statistics
import sys
import time
from typing import Any

from ._core import SESSION_DATA, USER_ID, Config, Results, log
from ._stores import Stores

__all__ = ["run_propagation"]

_TIMEOUT_S = 2.0


# -- worker process ------------------------------------------------------------------------------
async def _worker() -> None:
    from .apps import build_fob

    conf = json.loads(os.environ["KFBENCH_APP"])
    fob = build_fob(conf)
    loop = asyncio.get_running_loop()
    watch: dict[str, Any] = {}
    out = sys.stdout

    def report(how: str) -> None:
        if watch.get("reported") or "sid" not in watch:
            return
        watch["reported"] = True
        out.write(json.dumps({"sid": watch["sid"], "t_ns": time.monotonic_ns(), "how": how}) + "\n")
        out.flush()

    original_apply = fob.view.apply

    def apply(event: Any) -> None:
        original_apply(event)
        if event.get("t") == "sid" and event.get("sid") == watch.get("sid"):
            report("feed")

    fob.view.apply = apply  # before start(): the feed is subscribed with self.apply
    await fob.start()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    async def poll() -> None:
        while True:
            await asyncio.sleep(0.002)
            cookies = watch.get("cookies")
            if cookies and not watch.get("reported"):
                if (await fob.authenticate(cookies, secure=True)).session is None:
                    report("poll")

    poller = asyncio.create_task(poll())
    out.write(json.dumps({"ready": True, "live": fob.view.live}) + "\n")
    out.flush()
    try:
        while line := await reader.readline():
            msg = json.loads(line)
            if msg.get("cmd") == "watch":
                ok = (await fob.authenticate(msg["cookies"], secure=True)).session is not None
                watch.clear()
                watch.update(sid=msg["sid"], cookies=msg["cookies"])
                out.write(json.dumps({"ok": ok, "live": fob.view.live}) + "\n")
                out.flush()
            elif msg.get("cmd") == "confirm":
                refused = (await fob.authenticate(watch.get("cookies", {}), secure=True)).session is None
                out.write(json.dumps({"refused": refused}) + "\n")
                out.flush()
    finally:
        poller.cancel()
        await fob.close()


# -- parent ---------------------------------------------------------------------------------------------
async def _read(proc: asyncio.subprocess.Process, timeout: float) -> dict[str, Any]:
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), timeout)
    if not line:
        raise RuntimeError("propagation worker exited")
    msg: dict[str, Any] = json.loads(line)
    return msg


async def _send(proc: asyncio.subprocess.Process, msg: dict[str, Any]) -> None:
    assert proc.stdin is not None
    proc.stdin.write((json.dumps(msg) + "\n").encode())
    await proc.stdin.drain()


async def _measure(cfg: Config, store: str, stores: Stores | None = None, feed: str = "") -> dict[str, Any]:
    """``cfg.propagation_samples`` revocations seen by ``cfg.propagation_workers`` processes.

    ``stores`` opens the store (default: the benchmark's own servers; the ``cluster`` group passes
    one on its Redis Cluster), ``feed`` names it in the result."""
    stores = stores or Stores(cfg)
    procs: list[asyncio.subprocess.Process] = []
    try:
        fob = await stores.fob("hybrid", store)
        conf = {
            "kind": "keyfob",
            "strategy": "hybrid",
            "store": store,
            **stores.server_conf("hybrid", store, None),
        }
        env = {**os.environ, "KFBENCH_APP": json.dumps(conf), "PYTHONWARNINGS": "ignore"}
        for _ in range(cfg.propagation_workers):
            procs.append(
                await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "keyfob._bench.propagation",
                    env=env,
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                )
            )
        for p in procs:
            msg = await _read(p, 30)
            if not msg.get("live"):
                log(f"propagation/{store}: a worker's view is not live yet (feed still connecting)")
        lat_ms: list[float] = []
        revoke_ms: list[float] = []
        timeouts = 0
        how: dict[str, int] = {}
        for _ in range(cfg.propagation_samples):
            issued = await fob.create(USER_ID, dict(SESSION_DATA))
            cookies = {c.name: c.value for c in issued.cookies}
            sid = issued.session.id
            for p in procs:
                await _send(p, {"cmd": "watch", "sid": sid, "cookies": cookies})
            for p in procs:
                ack = await _read(p, 5)
                if not ack.get("ok"):
                    raise RuntimeError("a worker refused a fresh session")
            await asyncio.sleep(random.uniform(0.001, 0.005))
            t0 = time.monotonic_ns()
            await fob.revoke(sid)
            revoke_ms.append((time.monotonic_ns() - t0) / 1e6)
            for p in procs:
                try:
                    msg = await _read(p, _TIMEOUT_S)
                except TimeoutError:
                    timeouts += 1
                    lat_ms.append(_TIMEOUT_S * 1000)
                    continue
                lat_ms.append((msg["t_ns"] - t0) / 1e6)
                how[msg["how"]] = how.get(msg["how"], 0) + 1
        for p in procs:  # every worker must now refuse the last session
            await _send(p, {"cmd": "confirm"})
            if not (await _read(p, 5)).get("refused"):
                raise RuntimeError("a worker still accepts a revoked session")
        lat_ms.sort()
        return {
            "feed": feed or {"redis": "Redis pub/sub", "postgres": "PostgreSQL LISTEN/NOTIFY"}[store],
            "samples": len(lat_ms),
            "workers": len(procs),
            "p50_ms": round(statistics.median(lat_ms), 3),
            "p99_ms": round(lat_ms[min(len(lat_ms) - 1, int(0.99 * len(lat_ms)))], 3),
            "max_ms": round(lat_ms[-1], 3),
            "min_ms": round(lat_ms[0], 3),
            "revoke_call_p50_ms": round(statistics.median(revoke_ms), 3),
            "timeouts": timeouts,
            "detected_by": how,
        }
    finally:
        for p in procs:
            with contextlib.suppress(Exception):
                if p.stdin is not None:
                    p.stdin.close()
            try:
                await asyncio.wait_for(p.wait(), 5)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    p.kill()
                await p.wait()
        await stores.close()


async def _run(cfg: Config, results: Results) -> None:
    for store in ("redis", "postgres"):
        log(
            f"propagation: {store}, {cfg.propagation_samples} revocations"
            f" x {cfg.propagation_workers} processes"
        )
        try:
            results.propagation[store] = await _measure(cfg, store)
        except Exception as exc:
            results.propagation[store] = {
                "p50_ms": None,
                "p99_ms": None,
                "reason": f"{type(exc).__name__}: {exc}",
            }
            log(f"propagation: {store} could not run: {exc}")


def run_propagation(cfg: Config, results: Results) -> None:
    """Measure revocation propagation on every feed that is reachable."""
    asyncio.run(_run(cfg, results))


if __name__ == "__main__":
    asyncio.run(_worker())

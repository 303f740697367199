"""Hybrid revocation across real server processes: revoke on node A, node B refuses the next request.

Two ``uvicorn`` processes (:mod:`tests.integrations._hybrid_node`, the benchmark's keyfob app plus a
sign-in route), each with its own ``Keyfob(strategy="hybrid")`` on the same real store and feed:
Redis (pub/sub) or PostgreSQL (LISTEN/NOTIFY). Per round: sign in on A, the session works on B,
revoke it on A over HTTP (``DELETE /auth/sessions/{id}`` or ``POST /auth/signout``, with CSRF),
then poll B until it answers 401. Latency = revoke response → first 401 on B; it includes one
HTTP round trip to B. p50/p99 are printed (``-s``) and recorded as properties; the only bound
asserted is a generous 5 s. Servers run with a key/table prefix and a channel of their own, and
are killed (process group) even when the test fails.
"""

from __future__ import annotations

import statistics
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from keyfob._bench.apps import build_fob
from keyfob._bench.http import _Server, _wait_ready
from tests.conftest import PG_URL, REDIS_URL, require_postgres, require_redis

pytestmark = pytest.mark.anyio

ROUNDS = 20
BOUND_S = 5.0
REDIS_DB = REDIS_URL.rsplit("/", 1)[0] + "/14"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(params=[pytest.param("redis", marks=pytest.mark.redis),
                        pytest.param("postgres", marks=pytest.mark.postgres)])
async def nodes(request: pytest.FixtureRequest, tmp_path: Path,
                monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[str, str]]:
    """Base URLs of two node processes sharing one store and feed."""
    kind: str = request.param
    tag = f"kfmp{uuid.uuid4().hex[:8]}"
    cleanup: Callable[[], Any]
    if kind == "redis":
        require_redis()
        from tests.contract.conftest import delete_redis_keys

        conf = {"url": REDIS_DB, "prefix": f"{tag}:", "channel": f"{tag}:rev"}

        def cleanup() -> Any:
            return delete_redis_keys(f"{tag}:", REDIS_DB)
    else:
        require_postgres()
        from tests.contract.conftest import drop_postgres_tables

        conf = {"url": PG_URL, "prefix": f"{tag}_", "channel": f"{tag}_rev"}

        def cleanup() -> Any:
            return drop_postgres_tables(f"{tag}_", PG_URL)
    conf.update(kind="keyfob", strategy="hybrid", store=kind)
    setup = build_fob(conf)  # create the tables once, before two processes race to
    await setup.store.migrate()
    await setup.close()
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    servers = [_Server(name, conf, 1, app="tests.integrations._hybrid_node:factory") for name in ("a", "b")]
    try:
        for s in servers:
            s.start(str(tmp_path))
        for s in servers:
            await _wait_ready(s, timeout=20)
        yield f"http://127.0.0.1:{servers[0].port}", f"http://127.0.0.1:{servers[1].port}"
    finally:
        for s in servers:
            s.kill()
        await cleanup()


def set_cookies(response: httpx.Response) -> dict[str, str]:
    out = {}
    for header in response.headers.get_list("set-cookie"):
        name, _, value = header.split(";", 1)[0].partition("=")
        out[name.strip()] = value
    return out


def cookie_header(jar: dict[str, str]) -> dict[str, str]:
    return {"cookie": "; ".join(f"{k}={v}" for k, v in jar.items())}


async def wait_live(client: httpx.AsyncClient, base: str) -> None:
    deadline = time.monotonic() + BOUND_S
    while not (await client.get(base + "/live")).json()["live"]:
        assert time.monotonic() < deadline, f"{base}: the revocation feed never came up"


async def test_revoke_on_one_process_is_refused_by_the_other(nodes: tuple[str, str],
                                                             record_property: Callable[[str, object], None],
                                                             request: pytest.FixtureRequest) -> None:
    a, b = nodes
    latencies: list[float] = []
    first_poll = 0  # rounds where B already refused the very first request after the revoke
    # The cookies are Secure (__Host-): sent by hand over plain http, the client's own jar stays out of it.
    async with httpx.AsyncClient(timeout=BOUND_S) as client:
        for base in nodes:
            await wait_live(client, base)  # B must learn through its feed, not by store fallback
        for i in range(ROUNDS):
            client.cookies.clear()
            r = await client.post(a + "/signin", json={"user": f"user-{i}"})
            assert r.status_code == 200, r.text
            sid, jar = r.json()["sid"], set_cookies(r)
            r = await client.get(b + "/p", headers=cookie_header(jar))
            assert r.status_code == 200, "a session signed in on A must work on B"
            r = await client.get(a + "/auth/csrf", headers=cookie_header(jar))
            jar.update(set_cookies(r))
            csrf = {**cookie_header(jar), "x-csrf-token": r.json()["csrfToken"], "origin": a}
            if i % 2:
                r = await client.post(a + "/auth/signout", headers=csrf)
            else:
                r = await client.delete(f"{a}/auth/sessions/{sid}", headers=csrf)
            assert r.status_code == 200, r.text
            t0 = time.perf_counter()
            polls = 0
            while True:
                polls += 1
                client.cookies.clear()
                status = (await client.get(b + "/p", headers=cookie_header(jar))).status_code
                elapsed = time.perf_counter() - t0
                if status == 401:
                    break
                assert status == 200, status
                assert elapsed < BOUND_S, f"B still accepted the revoked session after {BOUND_S} s"
            latencies.append(elapsed * 1000)
            first_poll += polls == 1
        assert (await client.get(b + "/live")).json()["live"], "B's feed dropped during the test"
    latencies.sort()
    p50 = statistics.median(latencies)
    p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]
    backend = request.node.callspec.id
    print(f"\nhybrid revocation propagation across processes ({backend}, {ROUNDS} rounds): "
          f"p50 {p50:.2f} ms, p99 {p99:.2f} ms, min {latencies[0]:.2f} ms, max {latencies[-1]:.2f} ms; "
          f"refused on the first request after the revoke in {first_poll}/{ROUNDS} rounds")
    record_property("propagation_p50_ms", round(p50, 3))
    record_property("propagation_p99_ms", round(p99, 3))

"""A store outage on every framework: the private Redis server behind the app is killed mid-run.

Every route that needs the store answers 503 with ``Retry-After`` and the JSON error shape, on
Starlette, FastAPI and Flask, for every strategy (fail closed: with the feed gone, the jwt and
hybrid views cannot vouch for a session either). Each test starts its own ``redis-server`` on a
free loopback port and kills it; about 0.3 s a case.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest

from keyfob import Keyfob
from tests._redis_cluster import REDIS_SERVER, free_ports
from tests.conftest import SECRET, require_service

from .frameworks import FRAMEWORKS

STORE_ROUTES = [("GET", "/me"), ("GET", "/auth/session"), ("GET", "/auth/sessions"),
                ("POST", "/auth/sessions/revoke-others"), ("DELETE", "/auth/sessions/x"),
                ("POST", "/auth/signout"), ("POST", "/login")]


class PrivateRedis:
    def __init__(self) -> None:
        self.port = free_ports(1)[0]
        self.proc = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", "/tmp", "--logfile", ""],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.kill()
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.02)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0?prefix=outage-{uuid.uuid4().hex[:8]}"

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)


@pytest.fixture
def redis_server() -> Iterator[PrivateRedis]:
    require_service("redis-server", os.access(REDIS_SERVER, os.X_OK), "apt-get install redis-server")
    server = PrivateRedis()
    try:
        yield server
    finally:
        server.kill()


@pytest.mark.parametrize("strategy", ["jwt", "database", "hybrid"])
@pytest.mark.parametrize("framework", sorted(FRAMEWORKS))
def test_a_killed_store_server_gives_503_with_retry_after_on_every_route(
    framework: str, strategy: str, redis_server: PrivateRedis
) -> None:
    if framework.startswith("django") and strategy in ("jwt", "hybrid"):
        pytest.xfail("issue 12, open: the Django adapter's private loop does not see the jwt/hybrid "
                     "feed drop before the check (GET /me still 200 right after the kill)")
    fob = Keyfob(strategy=strategy, secret=SECRET, store=redis_server.url)
    with FRAMEWORKS[framework](fob) as client:
        token = client.request("GET", "/auth/csrf").body["csrfToken"]
        assert client.request("POST", "/login", json={"user": "u1"},
                              headers=[("x-csrf-token", token)]).status == 200
        token = client.request("GET", "/auth/csrf").body["csrfToken"]
        assert client.request("GET", "/me").status == 200
        redis_server.kill()
        if framework not in ("flask", "django-wsgi", "django-asgi") and fob.view is not None:
            # the app's loop runs on its own thread: let the feed listener see the line drop (the
            # hybrid view vouches for access tokens while its feed is live, by design). Flask's and
            # Django's loops run only inside requests, and each request first lets that work in.
            deadline = time.monotonic() + 5
            while fob.view.live and time.monotonic() < deadline:
                time.sleep(0.01)
        for method, path in STORE_ROUTES:
            r = client.request(method, path, json={"user": "u2"} if path == "/login" else None,
                               headers=[("x-csrf-token", token)])
            assert r.status == 503, (method, path, r.status, r.body)
            assert r.body["error"] == "store_unavailable" and r.headers.get("retry-after"), (method, path)
            assert not r.set_cookies, f"a 503 must not touch the cookies ({method} {path})"

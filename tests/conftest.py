"""Shared fixtures: the fake clock, the asyncio backend, and the real servers.

Tests that need PostgreSQL, Redis, Node or Chromium skip with a reason when the service is
missing — except under ``CI=true``, where a missing service is a failure.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import socket
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from keyfob._clock import FakeClock

if TYPE_CHECKING:
    from tests._redis_cluster import RedisClusterProcesses

# Suite-wide log hygiene (tests/security/_log_hygiene.py): every log line of the run is checked for
# the secrets, tokens and passwords the run used; a leak fails the session.
pytest_plugins = ("tests.security._log_hygiene",)

CI = os.environ.get("CI", "").lower() == "true"
PG_URL = os.environ.get("KEYFOB_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("KEYFOB_TEST_REDIS", "redis://127.0.0.1:6379/0")
CHROMIUM = "/usr/bin/chromium"  # Debian's chromium and chromium-driver packages: never a downloaded browser
CHROMEDRIVER = "/usr/bin/chromedriver"
SECRET = "kf-test-secret-0123456789abcdef0123456789abcdef0123456789ab"
OLD_SECRET = "kf-test-old-secret-fedcba9876543210fedcba9876543210fedcba98"


@contextlib.contextmanager
def closed_port() -> Iterator[int]:
    """A loopback port that refuses connections for as long as the block runs: bound by this
    process but never listening, so no other process (another suite, CI) can start a server on it
    meanwhile, as it could on a port that was only free when it was looked up."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        yield port


@pytest.fixture
def refused_port() -> Iterator[int]:
    """:func:`closed_port` for the whole test."""
    with closed_port() as port:
        yield port


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def require_service(name: str, available: bool, how: str) -> None:
    """Skip (or, under CI=true, fail) when a real service the test needs is missing."""
    if available:
        return
    msg = f"{name} is not available ({how})"
    if CI:
        pytest.fail(f"CI=true but {msg}", pytrace=False)
    pytest.skip(msg)


def require_postgres() -> None:
    require_service("PostgreSQL", port_open("127.0.0.1", 5432), "start it on 127.0.0.1:5432")


def require_redis() -> None:
    require_service("Redis", port_open("127.0.0.1", 6379), "start it on 127.0.0.1:6379")


PGBOUNCER = "/usr/sbin/pgbouncer"  # Debian's pgbouncer package


def require_pgbouncer() -> None:
    require_postgres()
    require_service("PgBouncer", os.access(PGBOUNCER, os.X_OK), "apt-get install pgbouncer")


def require_redis_cluster() -> None:
    """The Redis Cluster tests start their own cluster: they need redis-server and redis-cli (7.0+)."""
    from tests._redis_cluster import cluster_available

    require_service("Redis Cluster (redis-server + redis-cli)", cluster_available(),
                    "apt-get install redis-server (7.0 or newer); the tests start their own 6-node cluster")


def require_node() -> None:
    here = os.path.join(os.path.dirname(__file__), "interop", "node_modules")
    require_service("Node.js + tests/interop/node_modules",
                    bool(shutil.which("node")) and os.path.isdir(here),
                    "run `npm ci --prefix tests/interop`")


def require_chromium() -> None:
    require_service("Chromium + chromedriver + selenium",
                    os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)
                    and importlib.util.find_spec("selenium") is not None,
                    "apt-get install chromium chromium-driver; pip install -e '.[test]'")


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisClusterProcesses]:
    """One real Redis Cluster (3 masters + 3 replicas, loopback ports, no persistence) for the whole
    session, started on first use and killed at the end. Private to this pytest process: tests may
    FLUSHALL it. Tests that kill or reshard nodes leave it healthy again (``wait_ok``)."""
    require_redis_cluster()
    from tests._redis_cluster import RedisClusterProcesses

    cluster = RedisClusterProcesses().start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def secret() -> str:
    return SECRET


@pytest.fixture(autouse=True)
def _no_env_leak(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for k in list(os.environ):
        if k.startswith("KEYFOB_") and not k.startswith("KEYFOB_TEST_"):
            monkeypatch.delenv(k, raising=False)
    yield

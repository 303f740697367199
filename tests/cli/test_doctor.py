"""``keyfob doctor`` against real stores: a good configuration passes, a bad one names each problem.

Good: PostgreSQL (a database of the test's own, so LISTEN/NOTIFY and the tables are private) and a
private ``redis-server`` with AOF on a free port (the shared Redis keeps nothing on disk, which
is the bad case). Bad: a weak secret, the shared Redis without persistence, a feed URL on a closed
port, plain http on a public origin.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from keyfob.cli import cli
from tests.conftest import (
    PG_URL,
    REDIS_URL,
    SECRET,
    port_open,
    require_postgres,
    require_redis,
    require_service,
)

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def doctor(*args: str, env: Mapping[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    environment = {"KEYFOB_SECRET": SECRET} if env is None else dict(env)
    result = CliRunner().invoke(cli, ["doctor", "--json", *args], env=environment, catch_exceptions=False)
    return result.exit_code, json.loads(result.stdout)


def by_name(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in report["checks"]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def persistent_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private redis-server with AOF on (appendonly yes), torn down after the module."""
    require_service("redis-server", os.access(REDIS_SERVER, os.X_OK), "apt-get install redis-server")
    port, data = free_port(), tmp_path_factory.mktemp("redis-aof")
    proc = subprocess.Popen(
        [
            REDIS_SERVER,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(data),
            "--appendonly",
            "yes",
            "--save",
            "",
            "--protected-mode",
            "no",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 10
        while not port_open("127.0.0.1", port):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"redis-server did not start on port {port}")
            time.sleep(0.02)  # waiting for start-up, not an assertion
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def private_pg_database() -> Iterator[str]:
    """A PostgreSQL database of this module's own (its tables and NOTIFY channel are private)."""
    require_postgres()
    import asyncpg

    name = f"kfdoctor_{uuid.uuid4().hex[:10]}"
    admin = PG_URL

    async def run(sql: str) -> None:
        conn = await asyncpg.connect(admin)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run(f"CREATE DATABASE {name}"))
    try:
        yield PG_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        asyncio.run(run(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


def migrate(store: str) -> None:
    result = CliRunner().invoke(cli, ["migrate", "--store", store], env={}, catch_exceptions=False)
    assert result.exit_code == 0, result.output


# -- good configurations -------------------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.parametrize("strategy", ["hybrid", "jwt", "database"])
def test_a_good_postgresql_configuration_passes(private_pg_database: str, strategy: str) -> None:
    migrate(private_pg_database)
    code, report = doctor(
        "--store", private_pg_database, "--strategy", strategy, "--origin", "https://app.example"
    )
    checks = by_name(report)
    assert code == 0 and report["ok"] is True and report["problems"] == [], report
    statuses = {n: c["status"] for n, c in checks.items()}
    feed = statuses.pop("feed")  # "warn" when the round trip is slower than 50 ms: a loaded machine
    assert feed == "skip" if strategy == "database" else feed in ("ok", "warn")
    assert statuses == {
        "secret": "ok",
        "settings": "ok",
        "cookies": "ok",
        "store": "ok",
        "persistence": "skip",
        "clock": "ok",
    }
    names = [c["name"] for c in checks["cookies"]["details"]["cookies"]]
    assert names[0] == "__Host-keyfob.session-token"
    assert all(
        c["secure"] and c["httponly"] and c["samesite"] == "lax"
        for c in checks["cookies"]["details"]["cookies"]
    )
    if strategy != "database":
        assert checks["feed"]["details"]["round_trip_ms"] > 0
    assert abs(checks["clock"]["details"]["skew_seconds"]) < 30


@pytest.mark.redis
def test_a_good_redis_configuration_with_persistence_passes(persistent_redis: str) -> None:
    migrate(persistent_redis)
    code, report = doctor(
        "--store", persistent_redis, "--strategy", "hybrid", "--origin", "https://app.example"
    )
    checks = by_name(report)
    assert code == 0 and report["problems"] == [], report
    assert checks["persistence"]["status"] == "ok" and "AOF" in checks["persistence"]["summary"]
    assert checks["feed"]["status"] in ("ok", "warn") and checks["feed"]["details"]["round_trip_ms"] > 0
    assert checks["clock"]["status"] == "ok"


def test_a_good_sqlite_configuration_passes_and_polls_the_feed(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path}/keyfob.db"
    migrate(store)
    code, report = doctor("--store", store, "--strategy", "hybrid", "--origin", "https://app.example")
    checks = by_name(report)
    assert code == 0 and report["problems"] == [], report
    assert checks["feed"]["status"] in ("ok", "warn") and "polling" in checks["feed"]["details"]["kind"]
    assert checks["clock"]["status"] == "skip" and checks["persistence"]["status"] == "skip"


def test_secrets_being_rotated_are_explained(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path}/keyfob.db"
    migrate(store)
    old = "kf-old-secret-" + "fedcba9876543210" * 3
    code, report = doctor(
        "--store", store, "--origin", "https://app.example", env={"KEYFOB_SECRET": f"{SECRET},{old}"}
    )
    secret = by_name(report)["secret"]
    assert code == 0 and secret["status"] == "ok" and "rotation in progress" in secret["summary"]
    assert secret["details"]["count"] == 2 and "max_age" in secret["hint"]


def test_the_data_dir_secret_is_checked(tmp_path: Path) -> None:
    data = tmp_path / "demo"
    data.mkdir()
    (data / "keyfob-secret").write_text("too-short\n")
    (data / "keyfob-secret").chmod(0o600)
    code, report = doctor("--data-dir", str(data), env={})
    secret = by_name(report)["secret"]
    assert code == 1 and secret["status"] == "fail" and secret["details"]["source"] == "data dir"


# -- bad configurations: each problem named ------------------------------------------------------------


async def _migrate(url: str) -> None:
    from keyfob.stores import open_store

    store = open_store(url)
    try:
        await store.migrate()
    finally:
        await store.close()


async def _drop_prefix(prefix: str) -> None:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        # keyfob ends the prefix with ":" — match it, so pid 123 never deletes the keys of pid 1234
        async for key in client.scan_iter(match=f"{prefix}:*"):
            await client.delete(key)
    finally:
        await client.aclose()


@pytest.mark.redis
def test_a_bad_configuration_names_each_problem(refused_port: int) -> None:
    require_redis()
    closed = refused_port
    # A store of its own, migrated (a store with no epoch is a problem of its own, not the one tested here)
    prefix = f"kfdoctor{os.getpid()}"
    store_url = f"{REDIS_URL}?prefix={prefix}"
    asyncio.run(_migrate(store_url))
    try:
        code, report = doctor(
            "--store",
            store_url,
            "--strategy",
            "hybrid",
            "--origin",
            "https://app.example",
            "--feed",
            f"redis://127.0.0.1:{closed}/0",
            "--timeout",
            "1",
            env={"KEYFOB_SECRET": "hunter2-is-my-password"},
        )
    finally:
        asyncio.run(_drop_prefix(prefix))
    checks = by_name(report)
    assert code == 1 and report["ok"] is False
    assert report["problems"] == ["secret", "persistence", "feed"], report
    assert "weak" in checks["secret"]["summary"] and "keyfob secret" in checks["secret"]["hint"]
    assert "keeps nothing on disk" in checks["persistence"]["summary"]
    assert "appendonly yes" in checks["persistence"]["hint"]
    assert "feed is down" in checks["feed"]["summary"] and f"127.0.0.1:{closed}" in checks["feed"]["hint"]
    assert checks["store"]["status"] == "ok" and checks["clock"]["status"] == "ok"


def test_a_store_that_is_down_is_named_and_the_checks_that_need_it_skip(refused_port: int) -> None:
    port = refused_port
    code, report = doctor(
        "--store",
        f"redis://127.0.0.1:{port}/0",
        "--strategy",
        "database",
        "--origin",
        "https://app.example",
        "--timeout",
        "1",
    )
    checks = by_name(report)
    assert code == 1 and report["problems"] == ["store"]
    assert f"is Redis running at 127.0.0.1:{port}?" in checks["store"]["hint"]
    assert checks["persistence"]["status"] == checks["clock"]["status"] == "skip"


def test_a_missing_sqlite_store_is_named_and_not_created(tmp_path: Path) -> None:
    path = tmp_path / "missing.db"
    code, report = doctor(
        "--store", f"sqlite:///{path}", "--strategy", "hybrid", "--origin", "https://app.example"
    )
    assert (
        code == 1 and "store" in report["problems"] and "keyfob migrate" in by_name(report)["store"]["hint"]
    )
    assert not path.exists()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--origin", "http://app.example"], "plain http"),
        (
            ["--origin", "https://app.example", "--cookie-domain", "other.example"],
            "does not cover app.example",
        ),
        (["--origin", "not an origin"], "is not an origin"),
    ],
)
def test_cookie_problems_for_the_origin_are_named(tmp_path: Path, args: list[str], expected: str) -> None:
    store = f"sqlite:///{tmp_path}/keyfob.db"
    migrate(store)
    code, report = doctor("--store", store, *args)
    cookies = by_name(report)["cookies"]
    assert code == 1 and report["problems"] == ["cookies"] and cookies["status"] == "fail"
    assert expected in cookies["summary"] and cookies["hint"]


def test_cookie_warnings_do_not_fail(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path}/keyfob.db"
    migrate(store)
    code, report = doctor("--store", store, "--origin", "https://app.example", "--samesite", "none")
    assert code == 0 and by_name(report)["cookies"]["status"] == "warn"
    code, report = doctor("--store", store)  # no --origin: checked as localhost development, said so
    assert code == 0 and "--origin" in by_name(report)["cookies"]["hint"]


def test_human_output_names_the_problems(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["doctor", "--store", f"sqlite:///{tmp_path}/none.db"], env={})
    assert result.exit_code == 1
    assert "✗ secret" in result.stdout and "✗ store" in result.stdout
    assert "2 problem(s): secret, store" in result.stdout and "Traceback" not in result.output


@pytest.mark.postgres
def test_a_store_without_keyfobs_tables_says_run_migrate(private_pg_database: str) -> None:
    store = f"{private_pg_database}?table_prefix=never_migrated_"
    code, report = doctor("--store", store, "--strategy", "database", "--origin", "https://app.example")
    check = by_name(report)["store"]
    assert code == 1 and report["problems"] == ["store"]
    assert "tables are not there" in check["summary"] and "keyfob migrate" in check["hint"]


def test_a_reachable_but_unmigrated_store_is_not_called_unreachable() -> None:
    """Found in review: the checks after a failed store check said "the store is not reachable"
    even when the store had answered (no epoch yet: never migrated)."""
    require_redis()
    url = f"{REDIS_URL.rsplit('/', 1)[0]}/15?prefix=doctor-unmigrated-{uuid.uuid4().hex[:8]}"
    code, report = doctor("--store", url, "--strategy", "database", "--timeout", "2")
    checks = by_name(report)
    assert code == 1 and report["problems"] == ["store"]
    assert "keyfob migrate" in checks["store"]["hint"]
    for name in ("persistence", "clock"):
        assert checks[name]["status"] == "skip"
        assert "not reachable" not in checks[name]["summary"], checks[name]

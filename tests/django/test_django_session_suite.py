"""Django 5.2's own session backend tests (from its sdist) pass against keyfob's session engine.

The sources are fetched at test time into a cache outside git (``_django_sources``); each store
runs the suite in a fresh process (``run_django_suite``, where the skipped tests are listed with
their reasons). Offline, the test skips (fails under CI=true).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import CI, require_postgres, require_redis

from ._django_sources import fetch_sessions_tests

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def django_sources() -> Path:
    try:
        return fetch_sessions_tests()
    except (OSError, subprocess.SubprocessError) as exc:
        if CI:
            pytest.fail(f"CI=true but Django's sdist could not be fetched: {exc}", pytrace=False)
        pytest.skip(f"Django's sdist could not be fetched (offline?): {exc}")


@pytest.mark.parametrize("store", [
    pytest.param("sqlite", id="sqlite-from-DATABASES"),
    pytest.param("postgresql-databases", id="postgresql-from-DATABASES", marks=pytest.mark.postgres),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
    pytest.param("redis", id="redis", marks=pytest.mark.redis),
])
def test_djangos_session_backend_tests_pass_on_keyfobs_engine(store: str, django_sources: Path,
                                                               tmp_path: Path) -> None:
    if store.startswith("postgresql"):
        require_postgres()
    elif store == "redis":
        require_redis()
    out = tmp_path / "result.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT),
                                                        os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(
        [sys.executable, "-m", "tests.django.run_django_suite", "--sources", str(django_sources),
         "--store", store, "--out", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert out.exists(), proc.stdout + proc.stderr
    result = json.loads(out.read_text())
    assert not result["failures"] and not result["errors"], "\n".join(result["failures"] + result["errors"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert result["run"] >= 150  # Django's mixin + db + middleware tests, twice with USE_TZ on/off
    # the per-request read: a plain call where the store has one (SQLite) or is Django's own PostgreSQL
    # database (on Django's connection), else the home loop
    assert result["sync_read"] == {"sqlite": "SQLStore._get_sync",
                                   "postgresql-databases": "django_connection_get.<locals>.get"}.get(store)
    skipped = {s.split(": ", 1)[0].rsplit(".", 1)[-1] for s in result["skipped"]}
    assert skipped == {"test_sessionmanager_save"}, result["skipped"]

"""The benchmark harness runs end to end (``--smoke``: seconds) and its JSON has every ratio.

This proves the benchmark cannot rot; it never asserts a timing. Cases whose service is missing
(PostgreSQL, Redis, fastapi-users, uvicorn) come back ``null`` with a reason, which is fine here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from keyfob._bench import main

RATIO_KEYS = (
    "jwt_vs_floor",
    "jwt_vs_joserfc",
    "hybrid_vs_floor",
    "hybrid_vs_pyjwt",
    "db_sqlite_vs_raw",
    "db_postgres_vs_raw",
    "db_redis_vs_raw",
    "http_jwt_vs_open",
    "http_hybrid_vs_open",
    "http_db_sqlite_vs_open",
    "http_db_postgres_vs_open",
    "http_db_redis_vs_open",
    "http_vs_fastapi_users",
    "revocation_p99_ms",
)


def test_bench_smoke_json_has_every_ratio(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--smoke", "--json", "--out", str(tmp_path)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert json.loads((tmp_path / "results.json").read_text()) == doc
    ratios, reasons = doc["ratios"], doc["ratio_reasons"]
    for key in RATIO_KEYS:
        assert key in ratios, key
        value = ratios[key]
        if value is None:
            assert reasons.get(key), f"{key} is null without a reason"
        else:
            assert isinstance(value, int | float) and value > 0, (key, value)
    for name, case in doc["cases"].items():
        assert {"median_us", "min_us", "max_us"} <= case.keys(), name
        if case["median_us"] is None:
            assert case.get("reason"), f"{name} is null without a reason"
        else:
            assert case["min_us"] <= case["median_us"] <= case["max_us"], name
    # the floors and keyfob's own jwt path need no service: they always run
    for name in ("floor_hs256", "floor_jwe", "keyfob_jwt"):
        assert doc["cases"][name]["median_us"] is not None, name
    report = (tmp_path / "report.md").read_text()
    assert "jwt_vs_floor" in report

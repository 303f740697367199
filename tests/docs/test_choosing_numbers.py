"""docs/choosing.md quotes a benchmark run: its numbers must be the ones in docs/benchmarks/results.json,
and the package must ship that run (the demo's compare page reads it with importlib.resources)."""

from __future__ import annotations

import copy
import fnmatch
import importlib.util
import json
import sys
import tomllib
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("choosing_numbers", ROOT / "tools" / "choosing_numbers.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def results() -> dict:  # type: ignore[type-arg]
    return json.loads((ROOT / "docs" / "benchmarks" / "results.json").read_text(encoding="utf-8"))


def test_choosing_page_and_bundled_run_agree_with_results_json() -> None:
    assert tool().stale() == []


def test_a_changed_number_in_results_json_changes_the_page() -> None:
    numbers = tool()
    page = (ROOT / "docs" / "choosing.md").read_text(encoding="utf-8")
    doc = copy.deepcopy(results())
    doc["cases"]["keyfob_jwt"]["median_us"] = 4321.25
    doc["propagation"]["redis"]["p99_ms"] = 98.76
    doc["meta"]["started"] = "2031-02-03 04:05:06 +0000"
    doc["ratios"]["floor_jwe_vs_floor_hs256"] = 7.04
    rewritten = numbers.render(page, doc)
    assert rewritten != page
    assert "| `jwt` | 4,321.2 |" in rewritten or "| `jwt` | 4,321.3 |" in rewritten
    assert "**98.8 ms** on Redis pub/sub" in rewritten
    assert "**2031-02-03 04:05 UTC**" in rewritten
    assert "7.0\N{MULTIPLICATION SIGN} an HS256 verify" in rewritten
    assert numbers.render(rewritten, results()) == page  # and back: nothing else on the page moved


def test_a_number_the_run_lacks_is_an_error_not_a_stale_page() -> None:
    numbers = tool()
    page = (ROOT / "docs" / "choosing.md").read_text(encoding="utf-8")
    doc = copy.deepcopy(results())
    del doc["cases"]["raw_asyncpg"]
    with pytest.raises(numbers.MissingNumber, match="raw_asyncpg"):
        numbers.render(page, doc)


def test_the_bundled_run_is_package_data_loaded_with_importlib_resources() -> None:
    from importlib.resources import files

    from keyfob.demo._compare import default_results_path, load_run

    bundled = files("keyfob").joinpath("_data", "bench_results.json")
    assert json.loads(bundled.read_text(encoding="utf-8")) == results()
    run = load_run(default_results_path())
    assert not isinstance(run, str), run
    assert run.started == results()["meta"]["started"] and run.mode == results()["meta"]["mode"]
    # pyproject ships it in the wheel: the package-data patterns match the file
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    patterns = setuptools["package-data"]["keyfob"]
    assert any(fnmatch.fnmatch("_data/bench_results.json", p) for p in patterns), patterns

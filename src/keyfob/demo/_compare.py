"""The "compare" page's data: each strategy's guarantees next to numbers from a ``keyfob bench --json`` run.

The numbers are read from the results file at request time (the run bundled with the package,
``keyfob/_data/bench_results.json``, or the file the app was given), never copied into templates,
so a new benchmark run shows up without a code change. A number the run does not have (a case that
was skipped, a renamed key) shows as "not measured" rather than failing the page.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["GUARANTEES", "BenchRun", "Figure", "default_results_path", "load_run"]


def default_results_path() -> Path:
    """The bundled run: ``keyfob/_data/bench_results.json``, package data (a copy of the source tree's
    ``docs/benchmarks/results.json``, kept equal by ``tools/choosing_numbers.py`` and a test), found
    with importlib.resources, so an installed wheel has it too."""
    from importlib.resources import files

    return Path(str(files("keyfob").joinpath("_data", "bench_results.json")))


@dataclass(frozen=True, slots=True)
class Figure:
    """One measured number, with what it is and where it came from in the results file."""

    label: str
    value: str  # formatted, or "not measured"
    source: str  # the key path in results.json
    measured: bool


# What each strategy promises, in the words of DESIGN.md. Numbers come from the run, below.
GUARANTEES: dict[str, dict[str, str]] = {
    "jwt": {
        "holds": "an encrypted JWT (Auth.js v5 JWE) with the whole session",
        "checks": "decrypt + claims; no store read",
        "revocation": "per-user token version and a denylist of ids, mirrored in memory; a node that "
        "never hears of it accepts the cookie until max_age",
        "devices": "not listable: the server keeps no session rows",
        "best for": "read-heavy apps that can live with revocation by version bump",
    },
    "database": {
        "holds": "an opaque 256-bit token",
        "checks": "one store lookup of SHA-256(token) per request",
        "revocation": "immediate everywhere: the row is gone",
        "devices": "listed from the store",
        "best for": "simplicity and instant revocation, when a lookup per request is affordable",
    },
    "hybrid": {
        "holds": "a short-lived signed access token + a rotating refresh token",
        "checks": "signature + an in-memory revocation view; no store read",
        "revocation": "immediate on every node through the feed (Redis pub/sub, PostgreSQL LISTEN/NOTIFY); "
        "a node without its feed falls back to store lookups",
        "devices": "listed from the store; a replayed refresh token revokes the session (reuse detection)",
        "best for": "JWT cost with database-grade revocation",
    },
}

# (label, key path, unit) per strategy; paths follow `keyfob bench --json`'s layout. A figure a run
# does not have shows as "not measured", except the guarded-request ones (_OPTIONAL), which newer runs
# add and older runs simply lack: those rows are left out.
_FIGURES: dict[str, Sequence[tuple[str, tuple[str, ...], str]]] = {
    "jwt": (
        ("one guarded FastAPI request, µs", ("cases", "asgi_keyfob_jwt", "median_us"), "us"),
        ("the same guarded by hand (JWE floor), µs", ("cases", "asgi_floor_jwe", "median_us"), "us"),
        ("authenticate, µs", ("cases", "keyfob_jwt", "median_us"), "us"),
        ("its floor (JWE decrypt by hand), µs", ("cases", "floor_jwe", "median_us"), "us"),
        ("ratio to its floor", ("ratios", "jwt_vs_floor"), "x"),
        ("ratio to PyJWT HS256 decode", ("ratios", "jwt_vs_pyjwt"), "x"),
        ("HTTP req/s (1 worker)", ("http", "runs", "w1", "jwt", "rps"), "rps"),
        ("HTTP req/s, open endpoint", ("http", "runs", "w1", "open", "rps"), "rps"),
    ),
    "database": (
        ("one guarded FastAPI request (SQLite), µs", ("cases", "asgi_keyfob_db_sqlite", "median_us"), "us"),
        ("the same guarded by hand (sqlite3 floor), µs", ("cases", "asgi_floor_sqlite", "median_us"), "us"),
        ("authenticate (SQLite), µs", ("cases", "keyfob_db_sqlite", "median_us"), "us"),
        ("authenticate (PostgreSQL), µs", ("cases", "keyfob_db_postgres", "median_us"), "us"),
        ("authenticate (Redis), µs", ("cases", "keyfob_db_redis", "median_us"), "us"),
        ("ratio to a raw sqlite3 lookup", ("ratios", "db_sqlite_vs_raw"), "x"),
        ("at 1M sessions vs 10k (SQLite)", ("ratios", "scale_sqlite_large_vs_small"), "x"),
        ("HTTP req/s (1 worker, SQLite)", ("http", "runs", "w1", "db_sqlite", "rps"), "rps"),
    ),
    "hybrid": (
        ("one guarded FastAPI request, µs", ("cases", "asgi_keyfob_hybrid", "median_us"), "us"),
        ("the same guarded by hand (HS256 floor), µs", ("cases", "asgi_floor_hs256", "median_us"), "us"),
        ("authenticate (Redis feed), µs", ("cases", "keyfob_hybrid_redis", "median_us"), "us"),
        ("its floor (HS256 verify by hand), µs", ("cases", "floor_hs256", "median_us"), "us"),
        ("ratio to its floor", ("ratios", "hybrid_vs_floor"), "x"),
        ("revocation reaches other nodes, p99 ms (Redis)", ("propagation", "redis", "p99_ms"), "ms"),
        ("revocation reaches other nodes, p99 ms (PostgreSQL)", ("propagation", "postgres", "p99_ms"), "ms"),
        ("HTTP req/s (1 worker, Redis)", ("http", "runs", "w1", "hybrid", "rps"), "rps"),
    ),
}


_OPTIONAL = frozenset({"asgi_keyfob_jwt", "asgi_floor_jwe", "asgi_keyfob_db_sqlite", "asgi_floor_sqlite",
                       "asgi_keyfob_hybrid", "asgi_floor_hs256"})


def _get(data: Any, path: Sequence[str]) -> Any:
    for key in path:
        if not isinstance(data, Mapping) or key not in data:
            return None
        data = data[key]
    return data


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _format(value: Any, unit: str) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if unit == "rps":
        return f"{value:,.0f}"
    if unit == "x":
        return f"{value:.2f}\N{MULTIPLICATION SIGN}"
    return f"{value:,.1f}"


@dataclass(frozen=True, slots=True)
class BenchRun:
    """What the compare page shows from one results file."""

    path: Path
    started: str
    command: str
    mode: str
    machine: str
    versions: str
    figures: Mapping[str, list[Figure]]


def load_run(path: Path) -> BenchRun | str:
    """The run in ``path``, or a message saying why there is none (missing, unreadable, not a run)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return (f"No benchmark results at {path}. Run `keyfob bench --json --out DIR` "
                "and start the demo with that results.json.")
    except (OSError, ValueError) as exc:
        return f"Could not read the benchmark results at {path}: {exc}"
    if not isinstance(data, Mapping):
        return f"{path} is not a `keyfob bench --json` result (expected a JSON object)."
    meta = _mapping(data.get("meta"))
    machine = _mapping(meta.get("machine"))
    parts = [str(machine["cpu"])] if machine.get("cpu") else []
    if machine.get("cpus"):
        parts.append(f"{machine['cpus']} CPUs")
    if machine.get("memory_gb"):
        parts.append(f"{machine['memory_gb']} GB RAM")
    if machine.get("platform"):
        parts.append(str(machine["platform"]))
    if machine.get("python"):
        parts.append(f"{machine.get('implementation', 'Python')} {machine['python']}")
    versions = _mapping(machine.get("versions"))
    figures: dict[str, list[Figure]] = {}
    for strategy, specs in _FIGURES.items():
        row = []
        for label, key_path, unit in specs:
            shown = _format(_get(data, key_path), unit)
            if shown is None and key_path[1] in _OPTIONAL:
                continue
            row.append(Figure(label, shown or "not measured", ".".join(key_path), shown is not None))
        figures[strategy] = row
    return BenchRun(
        path=path,
        started=str(meta.get("started") or "unknown date"),
        command=str(meta.get("command") or "keyfob bench --json"),
        mode=str(meta.get("mode") or ""),
        machine=", ".join(parts) or "unknown machine",
        versions=", ".join(f"{k} {v}" for k, v in versions.items()),
        figures=figures,
    )

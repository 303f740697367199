"""Write the numbers of docs/choosing.md from docs/benchmarks/results.json (and bundle that run).

The page quotes a ``keyfob bench --json`` run; copying numbers by hand lets them drift from the
run they claim to come from. So every number on the page sits in a marked block::

    <!-- bench:NAME -->
    ...
    <!-- /bench:NAME -->

(or inline, ``<!-- bench:NAME -->2.1x<!-- /bench:NAME -->`` inside a sentence) and this script
rewrites those blocks from the results file. It also copies the results file to
``src/keyfob/_data/bench_results.json``, the copy shipped in the package (the demo's compare page
reads it with importlib.resources). ``tests/docs/test_choosing_numbers.py`` fails when the page or
the copy disagree with ``docs/benchmarks/results.json``. After a new run::

    keyfob bench --json --out docs/benchmarks
    python tools/choosing_numbers.py          # rewrite the blocks, refresh the bundled copy
    python tools/choosing_numbers.py --check  # exit 1 if anything is stale (what the test checks)
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "choosing.md"
RESULTS = ROOT / "docs" / "benchmarks" / "results.json"
BUNDLED = ROOT / "src" / "keyfob" / "_data" / "bench_results.json"

_BLOCK = re.compile(
    r"(?P<open><!-- bench:(?P<name>[a-z_]+) -->\n?)(?P<body>.*?)(?P<close><!-- /bench:(?P=name) -->)", re.S
)
TIMES, DASH = "\N{MULTIPLICATION SIGN}", "\N{EN DASH}"


class MissingNumber(KeyError):
    """The results file lacks a number the page quotes (a skipped case, a renamed key)."""


def _case(doc: Mapping[str, Any], name: str) -> float:
    value = doc.get("cases", {}).get(name, {}).get("median_us")
    if not isinstance(value, int | float):
        raise MissingNumber(f"cases.{name}.median_us")
    return float(value)


def _ratio(doc: Mapping[str, Any], name: str) -> float:
    value = doc.get("ratios", {}).get(name)
    if not isinstance(value, int | float):
        raise MissingNumber(f"ratios.{name}")
    return float(value)


def _p99(doc: Mapping[str, Any], feed: str) -> float:
    value = doc.get("propagation", {}).get(feed, {}).get("p99_ms")
    if not isinstance(value, int | float):
        raise MissingNumber(f"propagation.{feed}.p99_ms")
    return float(value)


def _rps(doc: Mapping[str, Any], name: str) -> float:
    value = doc.get("http", {}).get("runs", {}).get("w1", {}).get(name, {}).get("rps")
    if not isinstance(value, int | float):
        raise MissingNumber(f"http.runs.w1.{name}.rps")
    return float(value)


def us(value: float) -> str:
    return f"{value:,.1f}"


def _run(doc: Mapping[str, Any]) -> str:
    meta = doc.get("meta", {})
    machine = meta.get("machine", {})
    started = str(meta.get("started", "?"))
    date = " ".join(started.split()[:2])
    zone = started.split()[2] if len(started.split()) > 2 else ""
    when = f"{date[:16]} UTC" if zone in ("+0000", "UTC") else started
    parts = [f"{meta.get('mode', '?')} mode"]
    cpu = str(machine.get("cpu", "")).replace("(R)", "").replace(" Processor", "").strip()
    if cpu:
        parts.append(cpu)
    if machine.get("cpus"):
        parts.append(f"{machine['cpus']} CPUs")
    if machine.get("memory_gb"):
        parts.append(f"{machine['memory_gb']} GB")
    if machine.get("python"):
        parts.append(f"{machine.get('implementation', 'Python')} {machine['python']}")
    return f"**{when}** ({', '.join(parts)})"


def _revocation(doc: Mapping[str, Any]) -> str:
    return (f"Revoking a `hybrid` (or fed `jwt`) session reaches every other node through the feed: p99 "
            f"**{_p99(doc, 'redis'):.1f} ms** on Redis pub/sub,\n**{_p99(doc, 'postgres'):.1f} ms** on "
            "PostgreSQL LISTEN/NOTIFY (publish to the first refused request on the other node).\n")


def _costs(doc: Mapping[str, Any]) -> str:
    c: Callable[[str], float] = lambda name: _case(doc, name)  # noqa: E731
    rows = [
        ("`hybrid` (any store: the check never reads it)", "keyfob_hybrid_redis", "floor_hs256",
         "HS256 verify by hand", "hybrid_vs_floor"),
        ("`database` on SQLite", "keyfob_db_sqlite", "raw_sqlite3", "stdlib sqlite3 lookup",
         "db_sqlite_vs_raw"),
        ("`database` on PostgreSQL", "keyfob_db_postgres", "raw_asyncpg", "asyncpg `fetchrow`",
         "db_postgres_vs_raw"),
        ("`database` on Redis", "keyfob_db_redis", "raw_redis", "redis.asyncio `HGETALL`", "db_redis_vs_raw"),
        ("`jwt`", "keyfob_jwt", "floor_jwe", "JWE dir+A256CBC-HS512 decrypt by hand", "jwt_vs_floor"),
    ]  # fmt: skip
    out = [f"| strategy and store | µs | floor | {TIMES} floor |", "|---|---:|---|---:|"]
    for label, case, floor, floor_label, ratio in rows:
        out.append(
            f"| {label} | {us(c(case))} | {floor_label}, {us(c(floor))} µs | {_ratio(doc, ratio):.2f} |"
        )
    scale = [_ratio(doc, f"scale_{s}_large_vs_small") for s in ("sqlite", "postgres", "redis")]
    sizes = doc.get("meta", {}).get("config", {}).get("scale_sizes", [10_000, 1_000_000])
    big = f"{sizes[1] // 1_000_000}M" if sizes[1] % 1_000_000 == 0 else f"{sizes[1]:,}"
    small = f"{sizes[0] // 1000}k" if sizes[0] % 1000 == 0 else f"{sizes[0]:,}"
    out += [
        "",
        f"For scale: PyJWT's HS256 decode is {us(c('pyjwt_hs256'))} µs in the same run, and "
        f"fastapi-users' JWT strategy with its\nuser lookup {c('fastapi_users_jwt'):,.0f} µs. With {big} "
        f"sessions stored instead of {small}, lookups cost the same "
        f"({min(scale):.2f}{DASH}{max(scale):.2f}{TIMES}).",
        "",
        "One whole FastAPI request, in process (no network), guarded by keyfob or by the cheapest "
        "hand-written",
        f"`Depends` of the same kind: `hybrid` {us(c('asgi_keyfob_hybrid'))} µs (by hand "
        f"{us(c('asgi_floor_hs256'))}), `database` on SQLite {us(c('asgi_keyfob_db_sqlite'))} "
        f"({us(c('asgi_floor_sqlite'))}), `jwt` {us(c('asgi_keyfob_jwt'))}\n({us(c('asgi_floor_jwe'))}); "
        f"PyJWT in a `Depends` {us(c('asgi_pyjwt'))}, the open endpoint {us(c('asgi_open'))}.",
        "",
        "Over HTTP (FastAPI, uvicorn, one worker, 32 connections; these vary a lot between runs on this "
        f"machine),\nan open endpoint served {_rps(doc, 'open'):,.0f} req/s; behind keyfob: `database` on "
        f"SQLite {_rps(doc, 'db_sqlite'):,.0f}, `jwt` {_rps(doc, 'jwt'):,.0f}, `hybrid`\n"
        f"{_rps(doc, 'hybrid'):,.0f}, `database` on PostgreSQL {_rps(doc, 'db_postgres'):,.0f}, on Redis "
        f"{_rps(doc, 'db_redis'):,.0f} (fastapi-users: {_rps(doc, 'fastapi_users'):,.0f}). Most of the gap "
        "to \"open\" is\nFastAPI's own `Depends` resolution and uvicorn, not keyfob: its middleware adds "
        f"{us(c('asgi_keyfob_mw_open') - c('asgi_open'))} µs to a request.",
    ]
    return "\n".join(out) + "\n"


def _so_database(doc: Mapping[str, Any]) -> str:
    return f"{us(_case(doc, 'keyfob_db_sqlite'))} against {us(_case(doc, 'keyfob_hybrid_redis'))} µs"


def _so_hybrid(doc: Mapping[str, Any]) -> str:
    low = min(_case(doc, "keyfob_db_postgres"), _case(doc, "keyfob_db_redis"))
    high = max(_case(doc, "keyfob_db_postgres"), _case(doc, "keyfob_db_redis"))
    return f"{low:,.0f}{DASH}{high:,.0f} µs against {_case(doc, 'keyfob_hybrid_redis'):,.0f} µs here"


def _so_jwt(doc: Mapping[str, Any]) -> str:
    return f"{_ratio(doc, 'floor_jwe_vs_floor_hs256'):.1f}{TIMES} an HS256 verify"


BLOCKS: dict[str, Callable[[Mapping[str, Any]], str]] = {
    "run": _run,
    "revocation": _revocation,
    "costs": _costs,
    "so_database": _so_database,
    "so_hybrid": _so_hybrid,
    "so_jwt": _so_jwt,
}


def render(page: str, doc: Mapping[str, Any]) -> str:
    """``page`` with every marked block rewritten from ``doc``; every block must be on the page."""
    seen: set[str] = set()

    def block(m: re.Match[str]) -> str:
        name = m["name"]
        if name not in BLOCKS:
            raise ValueError(f"unknown block bench:{name} in the page")
        seen.add(name)
        return m["open"] + BLOCKS[name](doc) + m["close"]

    out = _BLOCK.sub(block, page)
    missing = set(BLOCKS) - seen
    if missing:
        raise ValueError(f"the page lacks the block(s) {', '.join(sorted(missing))}")
    return out


def stale(page_path: Path = PAGE, results: Path = RESULTS, bundled: Path = BUNDLED) -> list[str]:
    """What disagrees with ``results`` (empty when the page and the bundled copy are current)."""
    doc = json.loads(results.read_text(encoding="utf-8"))
    problems = []
    page = page_path.read_text(encoding="utf-8")
    if render(page, doc) != page:
        problems.append(f"{page_path} is not what {results} gives: run tools/choosing_numbers.py")
    if not bundled.exists() or bundled.read_bytes() != results.read_bytes():
        problems.append(f"{bundled} is not a copy of {results}: run tools/choosing_numbers.py")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only say what is stale (exit 1 if anything is)")
    args = parser.parse_args(argv)
    if args.check:
        problems = stale()
        for p in problems:
            print(p, file=sys.stderr)
        return 1 if problems else 0
    doc = json.loads(RESULTS.read_text(encoding="utf-8"))
    page = PAGE.read_text(encoding="utf-8")
    PAGE.write_text(render(page, doc), encoding="utf-8")
    BUNDLED.parent.mkdir(parents=True, exist_ok=True)
    BUNDLED.write_bytes(RESULTS.read_bytes())
    print(f"wrote {PAGE.relative_to(ROOT)} and {BUNDLED.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

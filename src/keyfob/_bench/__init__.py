"""``keyfob bench``: keyfob next to its physical floor and its peers, in one process run.

```console
$ keyfob bench                      # full run (~10 minutes): table, Markdown report, PNG plots
$ keyfob bench --quick              # a few minutes
$ keyfob bench --only asgi,http     # some groups (keyfob bench --list shows them)
$ keyfob bench --json               # one JSON object on stdout (progress goes to stderr)
$ python benchmarks/run.py          # the same, from a checkout
```

Groups (:mod:`~keyfob._bench._registry`, which also says how to add one): ``micro`` (token and
store micro-benchmarks, floors, peers, raw drivers, 10k vs 1M sessions), ``asgi`` (one FastAPI
request in process, keyfob against the floor guard of its kind), ``metrics`` (the same with
:mod:`keyfob.metrics` on), ``http`` (uvicorn + FastAPI under ``wrk``), ``flask`` and ``django``
(gunicorn under ``wrk``, against each framework's own session), ``propagation`` (hybrid revocation
latency across processes). :mod:`~keyfob._bench.report` computes the ratios and writes the table,
the Markdown and the plots.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from typing import Any

from ._core import Config, Results, log
from ._registry import GROUPS

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="keyfob bench", description=__doc__.split("\n")[0] if __doc__ else None)
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="a shorter run (under a minute)")
    mode.add_argument("--smoke", action="store_true", help="a few seconds: proves the harness runs (CI)")
    p.add_argument("--json", action="store_true", help="print one JSON object with every measurement")
    p.add_argument(
        "--out",
        default=None,
        help="directory for report.md, results.json and the PNG plots (default: ./keyfob-bench)",
    )
    p.add_argument(
        "--pg",
        default=os.environ.get("KEYFOB_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test"),
        help="PostgreSQL URL (a keyfob_bench database is created next to it when possible)",
    )
    p.add_argument(
        "--redis",
        default=os.environ.get("KEYFOB_BENCH_REDIS", "redis://127.0.0.1:6379/12"),
        help="Redis URL (keys under kfb* prefixes are written there and deleted afterwards)",
    )
    p.add_argument(
        "--only",
        default=None,
        help="comma-separated groups to run, of: " + ", ".join(GROUPS) + " (default: all)",
    )
    p.add_argument("--skip", default=None, help="comma-separated groups not to run")
    p.add_argument("--list", action="store_true", help="list the groups and exit")
    p.add_argument(
        "--loadgen",
        choices=("auto", "wrk", "python"),
        default=None,
        help="HTTP load generator: wrk when installed (auto, the default), or the in-repo one",
    )
    p.add_argument("--rounds", type=int, default=None, help="micro-benchmark rounds")
    p.add_argument("--no-http", action="store_true", help="skip the HTTP load test (= --skip http)")
    p.add_argument(
        "--no-propagation",
        action="store_true",
        help="skip the revocation propagation test (= --skip propagation)",
    )
    p.add_argument("--no-scale", action="store_true", help="skip the large-store (1M sessions) cases")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.add_argument("--http-duration", type=float, default=None, help="seconds per HTTP measurement")
    p.add_argument("--concurrency", type=int, default=None, help="HTTP connections of the load generator")
    p.add_argument("--large", type=int, default=None, help="size of the large store (default 1M; 100k quick)")
    return p


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _machine() -> dict[str, Any]:
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = None
    try:
        with open("/proc/meminfo") as f:
            mem = round(int(f.readline().split()[1]) / 1024 / 1024, 1)
    except (OSError, ValueError, IndexError):
        pass
    from importlib.metadata import PackageNotFoundError, version

    versions: dict[str, str | None] = {}
    for dist in (
        "keyfob",
        "cryptography",
        "fastapi",
        "starlette",
        "uvicorn",
        "asyncpg",
        "redis",
        "hiredis",
        "SQLAlchemy",
        "PyJWT",
        "joserfc",
        "itsdangerous",
        "fastapi-users",
    ):
        try:
            versions[dist] = version(dist)
        except PackageNotFoundError:
            versions[dist] = None
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "memory_gb": mem,
        "versions": versions,
    }


def _names(p: argparse.ArgumentParser, text: str | None) -> set[str]:
    names = {n.strip() for n in (text or "").split(",") if n.strip()}
    unknown = names - set(GROUPS)
    if unknown:
        p.error(f"unknown group(s) {', '.join(sorted(unknown))}; the groups are: {', '.join(GROUPS)}")
    return names


def selected_groups(argv: list[str] | None = None) -> tuple[str, ...]:
    """The groups a command line selects, in run order."""
    p = _parser()
    args = p.parse_args(argv)
    only = _names(p, args.only) or set(GROUPS)
    skip = _names(p, args.skip) | ({"http"} if args.no_http else set())
    skip |= {"propagation"} if args.no_propagation else set()
    return tuple(g for g in GROUPS if g in only and g not in skip)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; return the process exit code (0 even when some cases could not run)."""
    p = _parser()
    args = p.parse_args(argv)
    if args.list:
        for g in GROUPS.values():
            print(f"{g.name:12} {g.help}")
        return 0
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    overrides: dict[str, Any] = {
        "rounds": args.rounds,
        "http_duration": args.http_duration,
        "http_concurrency": args.concurrency,
        "http_loadgen": args.loadgen,
    }
    cfg = Config.for_mode(mode, **overrides)
    cfg.pg_url, cfg.redis_url = args.pg, args.redis
    if args.large:
        cfg.scale_sizes = (cfg.scale_sizes[0], args.large)
    cfg.groups = selected_groups(argv)
    cfg.http = "http" in cfg.groups
    cfg.propagation = "propagation" in cfg.groups
    cfg.scale = not args.no_scale
    cfg.out = os.path.abspath(args.out or "keyfob-bench")
    os.makedirs(cfg.out, exist_ok=True)
    cfg.workdir = tempfile.mkdtemp(prefix="keyfob-bench-")
    results = Results()
    started = time.time()
    results.meta = {
        "mode": mode,
        "started": time.strftime("%Y-%m-%d %H:%M:%S %z", time.localtime(started)),
        "command": "keyfob bench " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": _machine(),
        "groups": list(cfg.groups),
        "loadavg_start": _loadavg(),  # the machine's load when the run began (1, 5, 15 min)
        "config": {
            "rounds": cfg.rounds,
            "asgi_rounds": cfg.asgi_rounds,
            "asgi_batch_ms": cfg.asgi_batch_ms,
            "http_loadgen": cfg.http_loadgen,
            "wsgi_concurrency": cfg.wsgi_concurrency,
            "wsgi_duration_s": cfg.wsgi_duration,
            "batch_ms": cfg.batch_ms,
            "scale_sizes": cfg.scale_sizes,
            "http_workers": cfg.http_workers,
            "http_duration_s": cfg.http_duration,
            "http_rounds": cfg.http_rounds,
            "http_concurrency": cfg.http_concurrency,
            "propagation_samples": cfg.propagation_samples,
        },
    }
    from . import report

    try:
        for name in cfg.groups:
            log(f"group {name}")
            t0 = time.time()
            try:
                GROUPS[name].runner()(cfg, results)
            except Exception as exc:  # one group failing must not lose the others' numbers
                log(f"group {name} failed: {type(exc).__name__}: {exc}")
                results.notes.append(f"group {name} failed: {type(exc).__name__}: {exc}")
                results.meta.setdefault("failed_groups", {})[name] = f"{type(exc).__name__}: {exc}"
            results.meta.setdefault("group_durations_s", {})[name] = round(time.time() - t0, 1)
        if "http" not in cfg.groups:
            results.http = {"skipped": "the http group was not selected"}
        if "propagation" not in cfg.groups:
            results.propagation = {"skipped": "the propagation group was not selected"}
    finally:
        shutil.rmtree(cfg.workdir, ignore_errors=True)
    results.meta["duration_s"] = round(time.time() - started, 1)
    results.meta["loadavg_end"] = _loadavg()
    report.compute_ratios(results)
    doc = results.to_json()
    with open(os.path.join(cfg.out, "results.json"), "w") as f:
        json.dump(doc, f, indent=2)
    plots = [] if args.no_plots else report.plots(results, cfg.out)
    with open(os.path.join(cfg.out, "report.md"), "w") as f:
        f.write(report.markdown(results, plots))
    if args.json:
        json.dump(doc, sys.stdout, indent=2)
        sys.stdout.write("\n")
        report.print_table(results, file=sys.stderr)
    else:
        report.print_table(results, file=sys.stdout)
    log(f"done in {results.meta['duration_s']} s; report: {os.path.join(cfg.out, 'report.md')}")
    return 0

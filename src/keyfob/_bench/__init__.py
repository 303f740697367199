"""``keyfob bench``: keyfob next to its physical floor and its peers, in one process run.

```console
$ keyfob bench                 # full run (several minutes): table, Markdown report, PNG plots
$ keyfob bench --quick         # under a minute
$ keyfob bench --json          # one JSON object on stdout (progress goes to stderr)
$ python benchmarks/run.py     # the same, from a checkout
```

Areas: :mod:`~keyfob._bench.micro` (token and store micro-benchmarks, floors, peers, raw drivers,
10k vs 1M sessions), :mod:`~keyfob._bench.http` (uvicorn + FastAPI under an in-repo load
generator), :mod:`~keyfob._bench.propagation` (hybrid revocation latency across processes) and
:mod:`~keyfob._bench.report` (ratios, Rich table, Markdown, plots).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from typing import Any

from ._core import Config, Results, log

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
    p.add_argument("--rounds", type=int, default=None, help="micro-benchmark rounds")
    p.add_argument("--no-http", action="store_true", help="skip the HTTP load test")
    p.add_argument("--no-propagation", action="store_true", help="skip the revocation propagation test")
    p.add_argument("--no-scale", action="store_true", help="skip the large-store (1M sessions) cases")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.add_argument("--http-duration", type=float, default=None, help="seconds per HTTP measurement")
    p.add_argument("--concurrency", type=int, default=None, help="HTTP connections of the load generator")
    p.add_argument("--large", type=int, default=None, help="size of the large store (default 1M; 100k quick)")
    return p


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


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; return the process exit code (0 even when some cases could not run)."""
    args = _parser().parse_args(argv)
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    overrides: dict[str, Any] = {
        "rounds": args.rounds,
        "http_duration": args.http_duration,
        "http_concurrency": args.concurrency,
    }
    cfg = Config.for_mode(mode, **overrides)
    cfg.pg_url, cfg.redis_url = args.pg, args.redis
    if args.large:
        cfg.scale_sizes = (cfg.scale_sizes[0], args.large)
    cfg.http = not args.no_http
    cfg.propagation = not args.no_propagation
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
        "config": {
            "rounds": cfg.rounds,
            "batch_ms": cfg.batch_ms,
            "scale_sizes": cfg.scale_sizes,
            "http_workers": cfg.http_workers,
            "http_duration_s": cfg.http_duration,
            "http_rounds": cfg.http_rounds,
            "http_concurrency": cfg.http_concurrency,
            "propagation_samples": cfg.propagation_samples,
        },
    }
    from . import http, micro, propagation, report

    try:
        asyncio.run(micro.run_micro(cfg, results))
        if cfg.http:
            http.run_http(cfg, results)
        else:
            results.http = {"skipped": "--no-http"}
        if cfg.propagation:
            propagation.run_propagation(cfg, results)
        else:
            results.propagation = {"skipped": "--no-propagation"}
    finally:
        shutil.rmtree(cfg.workdir, ignore_errors=True)
    results.meta["duration_s"] = round(time.time() - started, 1)
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

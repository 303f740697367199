"""Instructions per guarded request with keyfob.metrics off and on, counted by callgrind.

The machine is shared, so wall time is noise; instruction counts are not. Each configuration runs
twice under ``valgrind --tool=callgrind`` (``--requests`` A and B after the same warm-up, with
``PYTHONHASHSEED=0``), and the per-request cost is the difference of the totals over the difference
of the counts (start-up, imports and warm-up cancel out). Usage::

    PYTHONPATH=src python tools/metrics_cost.py [--strategy jwt|database|hybrid] [--requests 100,1100]

One request is the bench's ``asgi`` case: an in-process GET /p through FastAPI, keyfob's middleware
and ``Depends(require_session)``, on a memory store (the store's own cost is not what is measured),
next to the open endpoint, so the cost is also given as the bench's ``metrics_<strategy>_cost``
counts it: the change of keyfob's added cost over the open endpoint.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile


def serve(strategy: str, metrics: bool, requests: int) -> None:
    from keyfob import Keyfob, RequestMeta
    from keyfob._bench.apps import keyfob_app
    from keyfob._bench.asgi import asgi_op

    async def go() -> None:
        if strategy == "open":  # the bench's open endpoint: what keyfob's cost is counted over
            from keyfob._bench.guards import open_app

            op, statuses = asgi_op(open_app(), "/p", {})
            for _ in range(300 + requests):
                await op()
            assert set(statuses) == {200}, statuses[:5]
            return
        fob = Keyfob(strategy=strategy, secret="kf-metrics-cost-secret-0123456789abcdef0123456789abcdef",
                     store="memory://metrics-cost", feed=None, cookie_secure=True)
        await fob.start()
        issued = await fob.create("user-1", {"role": "user"}, RequestMeta("203.0.113.7", "kfbench"))
        cookies = {c.name: c.value for c in issued.cookies if c.value}
        op, statuses = asgi_op(keyfob_app(fob, lifespan=False, metrics=metrics), "/p", cookies)
        for _ in range(300):  # warm-up: caches, first-of-a-kind paths
            await op()
        for _ in range(requests):
            await op()
        assert statuses and set(statuses) == {200}, statuses[:5]
        await fob.close()

    asyncio.run(go())


def instructions(strategy: str, metrics: bool, requests: int) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "callgrind.out")
        subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, __file__,
             "--serve", strategy, "1" if metrics else "0", str(requests)],
            check=True, capture_output=True, env={**os.environ, "PYTHONHASHSEED": "0"},
        )  # fmt: skip  (a fixed hash seed: the same dict layouts, so the two runs differ only in N)
        with open(out) as f:
            for line in f:
                if line.startswith("totals:") or line.startswith("summary:"):
                    return int(line.split()[1])
    raise RuntimeError("no totals in callgrind's output")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--strategy", default="jwt", choices=["jwt", "database", "hybrid"])
    parser.add_argument("--requests", default="100,1100")
    parser.add_argument("--serve", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        strategy, metrics, n = args.serve
        serve(strategy, metrics == "1", int(n))
        return
    a, b = (int(x) for x in re.split(r"[, ]+", args.requests))
    def per_request(strategy: str, metrics: bool) -> float:
        return (instructions(strategy, metrics, b) - instructions(strategy, metrics, a)) / (b - a)

    open_ = per_request("open", False)
    off, on = per_request(args.strategy, False), per_request(args.strategy, True)
    print(f"open endpoint: {open_:,.0f} instructions/request")
    print(f"{args.strategy} metrics off: {off:,.0f} instructions/request ({off - open_:,.0f} over open)")
    print(f"{args.strategy} metrics on : {on:,.0f} instructions/request ({on - open_:,.0f} over open)")
    print(f"{args.strategy} metrics cost: {on - off:+,.0f} instructions/request: {on / off - 1:+.2%} of the "
          f"request, {(on - open_) / (off - open_) - 1:+.2%} of keyfob's part (what metrics_*_cost measures)")


if __name__ == "__main__":
    main()

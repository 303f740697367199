"""Instructions per request of the ``asgi`` benchmark's apps, under callgrind (the load does not move them).

Builds the same apps as ``keyfob bench --only asgi`` (:mod:`keyfob._bench.asgi`: the open endpoint,
the floor guards, PyJWT, keyfob per strategy, keyfob's middleware on an open route) and drives each
one in process with a raw ASGI call. Around each case's measured requests the script calls
``os.getppid()``, and callgrind dumps its counters before every ``getppid``, so every second dump
holds exactly one case's ``N`` requests::

    PYTHONPATH=$PWD/src valgrind --tool=callgrind --dump-instr=no --dump-before=getppid \\
        --callgrind-out-file=/tmp/cg/cg.out.%p /work/main/.venv/bin/python \\
        benchmarks/callgrind_asgi.py /tmp/cg 300 [case ...]
    PYTHONPATH=$PWD/src /work/main/.venv/bin/python benchmarks/callgrind_asgi.py --report /tmp/cg

The report gives instructions per request and the ``asgi_*_vs_floor`` ratios by instructions (each
guarded app minus the open endpoint). Redis (hybrid's store and feed) must be up, as for the
benchmark. Inspect one case with ``callgrind_annotate /tmp/cg/cg.out.<pid>.<dump>``. ``--loop CASE
SECONDS`` runs one case for a sampling profiler::

    py-spy record -r 1000 -f raw -o out.txt -- python benchmarks/callgrind_asgi.py --loop asgi_keyfob_jwt 20
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import sys
import tempfile

from _callgrind import dumps, total  # benchmarks/_callgrind.py (the script's own folder is on sys.path)

RATIOS = {"hybrid": "asgi_floor_hs256", "jwt": "asgi_floor_jwe", "db_sqlite": "asgi_floor_sqlite"}


async def _measure(out_dir: str, n: int, only: set[str], seconds: float = 0.0) -> None:
    from keyfob._bench._core import Case, Config
    from keyfob._bench._stores import Stores
    from keyfob._bench.asgi import _build

    cfg = Config.for_mode("quick", workdir=tempfile.mkdtemp(prefix="kfcg"))
    stores = Stores(cfg)
    order: list[str] = []
    try:
        built = await _build(cfg, stores, "asgi")
        cases = [c for c in built if isinstance(c, Case) and (not only or c.name in only)]
        for c in built:
            if not isinstance(c, Case):
                print(f"skipped {c.name}: {c.reason}", file=sys.stderr)
        if seconds:  # --loop: one case for a sampling profiler (py-spy record -- python ... --loop CASE S)
            import time

            end = time.monotonic() + seconds
            while time.monotonic() < end:
                for _ in range(100):
                    await cases[0].op()
            return
        for case in cases:
            for _ in range(50):  # warm: caches, prepared statements, lazy imports
                await case.op()
            gc.collect()
            os.getppid()  # dump: the warm-up (discarded)
            for _ in range(n):
                await case.op()
            os.getppid()  # dump: exactly this case's n requests
            order.append(case.name)
    finally:
        await stores.close()
    with open(os.path.join(out_dir, "cases.json"), "w") as f:
        json.dump({"n": n, "order": order, "pid": os.getpid()}, f)


def report(out_dir: str) -> dict[str, float]:
    with open(os.path.join(out_dir, "cases.json")) as f:
        meta = json.load(f)
    pid, n = meta["pid"], meta["n"]
    files = dumps(out_dir, pid)
    # dump k (1-based) holds what ran since dump k-1; case i's requests are in dump 2i+2
    per: dict[str, float] = {}
    for i, name in enumerate(meta["order"]):
        per[name] = total(files[2 * i + 1]) / n
    o = per.get("asgi_open")
    for name, v in per.items():
        added = f"  added {v - o:10,.0f}" if o is not None else ""
        print(f"{name:28s} {v:10,.0f} instr/request{added}")
    if o is not None:
        for key, floor in RATIOS.items():
            k, fl = per.get(f"asgi_keyfob_{key}"), per.get(floor)
            if k is not None and fl is not None:
                print(f"asgi_{key}_vs_floor (instructions): {(k - o) / (fl - o):.2f}")
        if "asgi_keyfob_hybrid" in per and "asgi_pyjwt" in per:
            print(f"hybrid / pyjwt added (instructions): "
                  f"{(per['asgi_keyfob_hybrid'] - o) / (per['asgi_pyjwt'] - o):.2f}")
    return per


if __name__ == "__main__":
    if sys.argv[1] == "--report":
        report(sys.argv[2])
    elif sys.argv[1] == "--loop":
        asyncio.run(_measure(tempfile.mkdtemp(), 0, {sys.argv[2]}, float(sys.argv[3])))
    else:
        asyncio.run(_measure(sys.argv[1], int(sys.argv[2]), set(sys.argv[3:])))

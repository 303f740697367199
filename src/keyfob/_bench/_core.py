"""Shared pieces of the benchmark: configuration, results, and the interleaved micro-benchmark runner.

Every micro case is a zero-argument callable (sync) or coroutine function (async) performing
one operation. The runner calibrates an iteration count per case, then runs **rounds**: in each
round every case runs one timed batch of ``n`` operations (``time.perf_counter_ns`` around the
whole loop; async cases are awaited in a plain loop inside one running event loop). The order of
the cases rotates from round to round, so a slow phase of the machine hits every case alike.
Per case we keep one per-operation time per round and report the median, min and max across
rounds.
"""

from __future__ import annotations

import gc
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Case",
    "Config",
    "Results",
    "Skip",
    "log",
    "run_rounds",
]

SECRET = "kfbench-secret-0123456789abcdef0123456789abcdef0123456789abcdef"
"""The app secret every benchmark Keyfob (and every peer, for its own key) is built from."""

#: The claims the peers carry: what a keyfob session carries (``role``, ``name``, ``email``).
SESSION_DATA: dict[str, Any] = {"role": "admin", "name": "Ada Lovelace", "email": "ada.lovelace@example.com"}
USER_ID = "user-0000001"


def log(msg: str) -> None:
    """Progress to stderr (stdout is reserved for ``--json``)."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


@dataclass
class Config:
    """What to run and how long. Built by :func:`keyfob._bench.main` from the command line."""

    mode: str = "full"  # "full" | "quick" | "smoke"
    rounds: int = 15
    batch_ms: float = 20.0
    max_batch: int = 1_000_000
    pg_url: str = "postgresql://postgres@127.0.0.1:5432/test"
    redis_url: str = "redis://127.0.0.1:6379/14"
    scale_sizes: tuple[int, int] = (10_000, 1_000_000)
    http: bool = True
    http_workers: tuple[int, ...] = (1, 2)
    http_duration: float = 2.0
    http_warmup: float = 1.0
    http_rounds: int = 5
    http_concurrency: int = 32
    http_loadgen: str = "auto"  # "auto" (wrk when installed) | "wrk" | "python" (the in-repo generator)
    wsgi_concurrency: int = 8  # connections against a one-worker gunicorn sync server (Flask, Django)
    wsgi_duration: float = 2.0
    asgi_rounds: int = 41
    asgi_batch_ms: float = 10.0
    groups: tuple[str, ...] = ()  # the selected groups (keyfob._bench.GROUPS), in run order
    propagation: bool = True
    propagation_samples: int = 200
    propagation_workers: int = 2
    scale: bool = True
    workdir: str = ""
    out: str = ""

    @classmethod
    def for_mode(cls, mode: str, **overrides: Any) -> Config:
        """Defaults per mode: ``full`` (minutes), ``quick`` (< 1 minute), ``smoke`` (seconds, for CI)."""
        base: dict[str, Any] = {}
        if mode == "quick":
            base = dict(
                rounds=7,
                batch_ms=6.0,
                scale_sizes=(10_000, 100_000),
                http_workers=(1,),
                http_duration=1.0,
                http_warmup=0.25,
                http_rounds=1,
                wsgi_duration=1.0,
                asgi_rounds=15,
                asgi_batch_ms=5.0,
                propagation_samples=20,
            )
        elif mode == "smoke":
            base = dict(
                rounds=3,
                batch_ms=0.5,
                max_batch=20,
                scale_sizes=(100, 1_000),  # 10x apart, as in a full run: the scale ratio still compares
                http_workers=(1,),
                http_duration=0.2,  # proves every endpoint answers; numbers are not the point here
                http_warmup=0.05,
                http_rounds=1,
                http_concurrency=4,
                http_loadgen="python",  # wrk runs whole seconds; the smoke run proves endpoints answer
                wsgi_concurrency=2,
                wsgi_duration=0.2,
                asgi_rounds=3,
                asgi_batch_ms=0.5,
                propagation_samples=3,
                propagation_workers=1,
            )
        base.update({k: v for k, v in overrides.items() if v is not None})
        return cls(mode=mode, **base)


@dataclass
class Skip:
    """A case (or a whole area) that could not run, and why."""

    name: str
    reason: str
    group: str = ""
    label: str = ""


@dataclass
class Case:
    """One micro-benchmark case: ``op`` performs one operation (sync callable or coroutine function)."""

    name: str
    group: str  # floor | keyfob | peer | raw | scale
    label: str
    op: Callable[[], Any]
    is_async: bool = False
    n: int = 1
    samples_ns: list[float] = field(default_factory=list)
    #: what a batch is timed with: wall time by default; ``time.process_time_ns`` (this process's CPU
    #: time, which other processes taking the cores do not move) for cases that never wait on I/O
    clock: Callable[[], int] = time.perf_counter_ns


@dataclass
class Results:
    """Everything one run measured; :meth:`to_json` is the ``--json`` document."""

    meta: dict[str, Any] = field(default_factory=dict)
    cases: dict[str, dict[str, Any]] = field(default_factory=dict)
    http: dict[str, Any] = field(default_factory=dict)
    propagation: dict[str, Any] = field(default_factory=dict)
    ratios: dict[str, float | None] = field(default_factory=dict)
    ratio_reasons: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    #: one top-level JSON key per group that reports more than micro cases (``asgi``, ``flask``, ...)
    sections: dict[str, Any] = field(default_factory=dict)

    def add_case(self, case: Case) -> None:
        per_op_us = sorted(s / 1000.0 for s in case.samples_ns)
        self.cases[case.name] = {
            "group": case.group,
            "label": case.label,
            "median_us": round(statistics.median(per_op_us), 3),
            "min_us": round(per_op_us[0], 3),
            "max_us": round(per_op_us[-1], 3),
            "rounds": len(per_op_us),
            "ops_per_round": case.n,
            "clock": "wall" if case.clock is time.perf_counter_ns else "cpu",
        }

    def add_skip(self, skip: Skip) -> None:
        self.cases[skip.name] = {
            "group": skip.group,
            "label": skip.label or skip.name,
            "median_us": None,
            "min_us": None,
            "max_us": None,
            "reason": skip.reason,
        }

    def median(self, name: str) -> float | None:
        c = self.cases.get(name)
        return None if c is None else c.get("median_us")

    def to_json(self) -> dict[str, Any]:
        return {
            "meta": self.meta,
            "cases": self.cases,
            "http": self.http,
            "propagation": self.propagation,
            **self.sections,
            "ratios": self.ratios,
            "ratio_reasons": self.ratio_reasons,
            "notes": self.notes,
        }


async def _batch(case: Case, n: int) -> int:
    op = case.op
    rng = range(n)
    clock = case.clock
    if case.is_async:
        t0 = clock()
        for _ in rng:
            await op()
        return clock() - t0
    t0 = clock()
    for _ in rng:
        op()
    return clock() - t0


async def _calibrate(case: Case, cfg: Config) -> None:
    target_ns = cfg.batch_ms * 1e6
    n = 1
    await _batch(case, 3)  # warm caches, prepared statements, lazy imports
    while True:
        took = await _batch(case, n)
        if took >= target_ns / 4 or n >= cfg.max_batch:
            break
        n *= 4 if took < target_ns / 40 else 2
    per_op = max(took / n, 1.0)
    case.n = int(max(1, min(cfg.max_batch, target_ns / per_op)))


async def run_rounds(cases: list[Case], cfg: Config) -> None:
    """Calibrate each case, then run ``cfg.rounds`` interleaved rounds (rotating order)."""
    for case in cases:
        await _calibrate(case, cfg)
    k = len(cases)
    gc_every = max(1, cfg.rounds // 40)  # a full collection costs tens of ms with a large heap
    for r in range(cfg.rounds):
        if r % gc_every == 0:
            gc.collect()
        order = cases[r % k :] + cases[: r % k] if k else []
        if r % 2:
            order.reverse()
        for case in order:
            took = await _batch(case, case.n)
            case.samples_ns.append(took / case.n)


def check(cond: bool, what: str) -> None:
    """Fail a case's setup (not a timing assertion): the operation did not do what it should."""
    if not cond:
        raise RuntimeError(what)

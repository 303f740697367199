"""The benchmark's groups: what ``keyfob bench --only NAME,...`` selects, in the order they run.

A group is a ``run(cfg, results)`` function (it fills ``results.cases``, ``results.http``,
``results.propagation`` or its own ``results.sections[name]``), optionally a ``ratios(results)``
function returning ``(ratios, reasons, inputs)`` from what it measured, and the ratio keys it
promises (each is reported even when the group was not selected or could not run: ``null`` with a
reason). Functions are named as ``"module:function"`` strings and imported only when the group
runs, so selecting ``--only asgi`` never imports Django.

Adding a group (the Redis Cluster rows, say):

1. write ``src/keyfob/_bench/cluster.py`` with ``run(cfg, results)`` and ``ratios(results)``;
   reuse :class:`~keyfob._bench._stores.Stores` for isolation (run-id prefixes, cleanup),
   :func:`~keyfob._bench._core.run_rounds` for interleaved micro cases, and
   :func:`~keyfob._bench.http.run_targets` for servers under load;
2. add a :class:`Group` to :data:`GROUPS` below, at the place in the run order it belongs, with the
   ratio keys it reports;
3. add each key's target to :data:`keyfob._bench.report.TARGETS` (display only, never asserted)
   and a row to ``docs/BENCHMARKS.md``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["GROUPS", "Group", "resolve"]


@dataclass(frozen=True)
class Group:
    """One selectable part of the benchmark."""

    name: str
    help: str
    run: str  # "module:function", called as function(cfg, results)
    ratios: str | None = None  # "module:function" -> (ratios, reasons, inputs)
    keys: tuple[str, ...] = field(default=())  # ratio keys always present in the JSON

    def runner(self) -> Callable[..., None]:
        fn: Callable[..., None] = resolve(self.run)
        return fn

    def ratio_fn(self) -> Callable[..., tuple[dict[str, Any], dict[str, str], dict[str, str]]] | None:
        return resolve(self.ratios) if self.ratios else None


def resolve(ref: str) -> Any:
    """Import ``"keyfob._bench.module:function"`` (relative names are under ``keyfob._bench``)."""
    module, _, attr = ref.partition(":")
    if module.startswith("."):
        module = "keyfob._bench" + module
    return getattr(importlib.import_module(module), attr)


_STRATS = ("hybrid", "jwt", "db_sqlite")

#: every group, in run order (``--only`` keeps this order whatever order it is given in)
GROUPS: dict[str, Group] = {
    g.name: g
    for g in (
        Group(
            "micro",
            "token and store micro-benchmarks: floors, peers, raw drivers, 10k vs 1M sessions",
            ".micro:run",
        ),
        Group(
            "asgi",
            "one FastAPI request in process over ASGI: keyfob vs the floor guard of its kind (issue 9)",
            ".asgi:run_asgi",
            ".asgi:ratios",
            tuple(f"asgi_{s}_vs_floor" for s in _STRATS),
        ),
        Group(
            "metrics",
            "the asgi ratios with keyfob.metrics on vs off (issue 13)",
            ".asgi:run_metrics",
            ".asgi:ratios",
            tuple(f"metrics_{s}_cost" for s in _STRATS),
        ),
        Group(
            "http",
            "uvicorn + FastAPI under wrk: keyfob vs floor-guarded, PyJWT, open, fastapi-users",
            ".http:run_http",
            None,
            (*(f"http_{s}_vs_floor_guarded" for s in _STRATS), "http_hybrid_vs_pyjwt_guarded"),
        ),
        Group(
            "flask",
            "gunicorn + Flask under wrk: keyfob vs Flask-Login on the signed-cookie session (issue 10)",
            ".wsgi:run_flask",
            ".wsgi:flask_ratios",
            tuple(f"flask_{s}_vs_anchor" for s in _STRATS),
        ),
        Group(
            "django",
            "gunicorn + Django under wrk: keyfob vs the db, cached_db, signed_cookies backends (issue 12)",
            ".wsgi:run_django",
            ".wsgi:django_ratios",
            (
                "django_keyfob_vs_db_sqlite",
                "django_keyfob_vs_db_postgres",
                "django_hybrid_vs_signed_cookies_sqlite",
                "django_hybrid_vs_signed_cookies_postgres",
            ),
        ),
        Group(
            "propagation",
            "hybrid revocation latency across processes (Redis, PostgreSQL)",
            ".propagation:run_propagation",
        ),
        Group("cluster", "Redis Cluster (3 masters, started here): validate, propagation (issue 11)",
              ".cluster:run", ".cluster:ratios", ("cluster_db_vs_raw", "cluster_hybrid_vs_raw",
              "cluster_revocation_p99_ms", "cluster_revocation_p99_ms_postgres")),
    )
}

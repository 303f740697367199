"""ASGI in process: what keyfob adds to one FastAPI request, against the floor guard of its kind.

Every app (:mod:`keyfob._bench.guards`, :func:`keyfob._bench.apps.keyfob_app`) is called directly as an
ASGI callable in this process: no socket, no HTTP parsing, no server. One operation is one
``GET /p`` with the cookies a signed-in browser sends: a fresh scope, ``receive`` returning the
empty body, ``send`` dropping the messages. Cases run in interleaved rounds (the runner of
:mod:`keyfob._bench._core`: rotating order, every case one batch per round), so a slow phase of the
shared machine hits keyfob and its floor alike.

What is reported (see :func:`ratios`):

* ``asgi_<strategy>_vs_floor`` — keyfob's added µs per request (its endpoint minus the open one)
  over the floor guard's added µs (the floor's endpoint minus the open one). The ratio is taken
  per round, from cases measured side by side, and the median over rounds is reported.
* ``metrics_<strategy>_cost`` (the ``metrics`` group) — the same ratio with :mod:`keyfob.metrics`
  on, over the ratio with it off, minus one (0.02 = metrics add 2 % to keyfob's guarded-floor
  ratio).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ._core import Case, Config, Results, Skip, check, log, run_rounds
from ._stores import Stores

__all__ = ["STRATEGIES", "asgi_op", "ratios", "run_asgi", "run_metrics"]

#: keyfob case → (strategy, store, fill?, floor guard)
STRATEGIES: dict[str, tuple[str, str, bool, str]] = {
    "hybrid": ("hybrid", "redis", False, "floor_hs256"),
    "jwt": ("jwt", "sqlite", False, "floor_jwe"),
    "db_sqlite": ("database", "sqlite", True, "floor_sqlite"),
}


async def _receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


def asgi_op(app: Any, path: str, cookies: dict[str, str]) -> tuple[Callable[[], Awaitable[None]], list[int]]:
    """(one request as a coroutine function, the list the response statuses are appended to)."""
    headers = [(b"host", b"127.0.0.1:8000"), (b"user-agent", b"kfbench"), (b"accept", b"*/*")]
    if cookies:
        headers.append((b"cookie", "; ".join(f"{k}={v}" for k, v in cookies.items()).encode("latin-1")))
    base: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    statuses: list[int] = []

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    async def op() -> None:
        await app(dict(base), _receive, send)

    return op, statuses


_STATUSES: dict[str, list[int]] = {}


async def _case(name: str, label: str, app: Any, path: str, cookies: dict[str, str]) -> Case | Skip:
    """The case, or a Skip saying why the app does not answer 200 (never a wrong measurement)."""
    op, statuses = asgi_op(app, path, cookies)
    try:
        await op()
        await op()
        check(statuses[-2:] == [200, 200], f"GET {path} answered {statuses}")
    except Exception as exc:
        return Skip(name, f"{type(exc).__name__}: {exc}", "asgi", label)
    statuses.clear()
    _STATUSES[name] = statuses
    # CPU time of this process: nothing here waits on I/O, and on a machine shared with other
    # processes wall time measures the scheduler as much as the code
    return Case(name, "asgi", label, op, is_async=True, clock=time.process_time_ns)


async def _fob(stores: Stores, key: str, variant: str = "") -> tuple[Any, dict[str, str], str]:
    strategy, store, fill, _floor = STRATEGIES[key]
    size = stores.cfg.scale_sizes[0] if fill else None
    try:
        fob, cookies = await stores.session(strategy, store, size, variant=variant)
    except Exception:
        if key != "hybrid":
            raise
        store = "sqlite"  # no Redis: hybrid on SQLite (one node, no feed needed)
        fob, cookies = await stores.session(strategy, store, size, variant=variant)
    return fob, cookies, store


async def _build(cfg: Config, stores: Stores, group: str) -> list[Case | Skip]:
    """``asgi``: open, the floors, PyJWT, keyfob per strategy. ``metrics``: open, keyfob per strategy
    with metrics off and on (its own cases: ``metrics_open``, ``metrics_keyfob_<s>``, ``..._on``)."""
    from . import apps, guards

    p = group
    out: list[Case | Skip] = [await _case(f"{p}_open", "FastAPI, open endpoint", guards.open_app(), "/p", {})]
    made: dict[str, tuple[Any, dict[str, str], str]] = {}
    for key in STRATEGIES:
        try:
            made[key] = await _fob(stores, key)
        except Exception as exc:
            out.append(Skip(f"{p}_keyfob_{key}", f"{type(exc).__name__}: {exc}", "asgi"))
    if group == "asgi":
        out += await _floors(cfg, stores, made)
    for key, (fob, cookies, store) in made.items():
        strategy = STRATEGIES[key][0]
        app = apps.keyfob_app(fob, lifespan=False)
        out.append(
            await _case(f"{p}_keyfob_{key}", f"FastAPI + keyfob {strategy} ({store})", app, "/p", cookies)
        )
        if group == "asgi" and key == "jwt":
            label = "FastAPI + keyfob middleware, unprotected route, no cookie"
            out.append(await _case("asgi_keyfob_mw_open", label, app, "/open", {}))
        if group == "metrics":
            mfob, mcookies, mstore = await _fob(stores, key, variant="metrics")
            mapp = apps.keyfob_app(mfob, lifespan=False, metrics=True)
            label = f"FastAPI + keyfob {strategy} ({mstore}), keyfob.metrics on"
            out.append(await _case(f"metrics_keyfob_{key}_on", label, mapp, "/p", mcookies))
    return out


async def _floors(
    cfg: Config, stores: Stores, made: dict[str, tuple[Any, dict[str, str], str]]
) -> list[Case | Skip]:
    """The floor guards (and PyJWT): HS256 signs the hybrid access token's claims; the JWE and
    sqlite3 guards read keyfob's own jwt and database cookies."""
    from . import guards

    hs_conf, hs_cookies = guards.hs256_conf(
        guards.access_claims(made["hybrid"][1]) if "hybrid" in made else None
    )
    floors: dict[str, tuple[dict[str, Any], dict[str, str]] | str] = {
        "floor_hs256": (hs_conf, hs_cookies),
        "floor_jwe": (guards.jwe_conf(made["jwt"][1]), made["jwt"][1])
        if "jwt" in made
        else "keyfob jwt did not run",
        "floor_sqlite": (
            (
                guards.sqlite_conf(
                    stores.sqlite_paths[("database", cfg.scale_sizes[0])], made["db_sqlite"][1]
                ),
                made["db_sqlite"][1],
            )
            if "db_sqlite" in made
            else "keyfob database on SQLite did not run"
        ),
        "pyjwt": (hs_conf, hs_cookies),
    }
    labels = {
        "floor_hs256": "FastAPI + stdlib HS256 Depends (floor for signed tokens)",
        "floor_jwe": "FastAPI + hand JWE dir+A256CBC-HS512 Depends (floor for encrypted cookies)",
        "floor_sqlite": "FastAPI + stdlib sqlite3 SHA-256(token) lookup Depends (database floor)",
        "pyjwt": "FastAPI + PyJWT HS256 Depends",
    }
    out: list[Case | Skip] = []
    for kind, got in floors.items():
        name = f"asgi_{kind}"
        if isinstance(got, str):
            out.append(Skip(name, got, "asgi"))
            continue
        conf, cookies = got
        try:
            out.append(await _case(name, labels[kind], guards.guard_app(kind, conf), "/p", cookies))
        except ImportError as exc:
            out.append(Skip(name, f"{exc}; pip install 'keyfob[bench]'", "asgi"))
    return out


async def _run(cfg: Config, results: Results, group: str) -> None:
    stores = Stores(cfg)
    try:
        built = await _build(cfg, stores, group)
        cases = [c for c in built if isinstance(c, Case)]
        for c in built:
            c.group = group
            if isinstance(c, Skip):
                log(f"{group}: skipped {c.name}: {c.reason}")
                results.add_skip(c)
        rounds, batch = cfg.asgi_rounds, cfg.asgi_batch_ms
        if group == "metrics" and cfg.mode != "smoke":
            # a ~1 µs difference on ~60 µs: many short rounds (seconds in all); a smoke run only
            # proves that every metrics case answers and gives a number
            rounds, batch = rounds * 5, batch / 2
        rounds_cfg = Config(**{**cfg.__dict__, "rounds": rounds, "batch_ms": batch})
        log(f"{group}: {len(cases)} apps x {rounds} interleaved rounds (~{batch:g} ms batches)")
        await run_rounds(cases, rounds_cfg)
        section = results.sections.setdefault(group, {})
        section.update({"rounds": rounds, "batch_ms": batch, "clock": "process CPU time", "samples_us": {}})
        for c in cases:
            bad = [s for s in _STATUSES.pop(c.name, []) if s != 200]
            if bad:  # an app that stopped answering 200 mid-run measured something else
                results.add_skip(Skip(c.name, f"{len(bad)} responses were not 200 (first {bad[0]})", group))
                continue
            results.add_case(c)
            section["samples_us"][c.name] = [round(s / 1000.0, 3) for s in c.samples_ns]
    finally:
        await stores.close()


def run_asgi(cfg: Config, results: Results) -> None:
    """The ``asgi`` group: open, the four guards, keyfob per strategy."""
    import asyncio

    asyncio.run(_run(cfg, results, "asgi"))


def run_metrics(cfg: Config, results: Results) -> None:
    """The ``metrics`` group: keyfob per strategy with :mod:`keyfob.metrics` off and on, same rounds."""
    import asyncio

    from .apps import metrics_available

    why = metrics_available()
    if why:  # nothing to compare: say so once, without spending the rounds
        for key in STRATEGIES:
            results.add_skip(Skip(f"metrics_keyfob_{key}_on", why, "metrics"))
        results.sections["metrics"] = {"skipped": why}
        return
    asyncio.run(_run(cfg, results, "metrics"))


def _paired(results: Results, group: str, num: str, den: str) -> float | None:
    """median over rounds of (num - open) / (den - open), each round's cases measured side by side."""
    s = results.sections.get(group, {}).get("samples_us", {})
    o = f"{group}_open"
    if not all(k in s for k in (num, den, o)):
        return None
    per_round = [(n - op) / (d - op) for n, d, op in zip(s[num], s[den], s[o], strict=True) if d - op > 0]
    return statistics.median(per_round) if per_round else None


def ratios(results: Results) -> tuple[dict[str, float | None], dict[str, str], dict[str, str]]:
    """``asgi_*`` and ``metrics_*`` ratios, with the reason for each that could not be computed."""
    r: dict[str, float | None] = {}
    reasons: dict[str, str] = {}
    inputs: dict[str, str] = {}

    def put(key: str, group: str, num: str, den: str, what: str, minus: float = 0.0) -> None:
        v = _paired(results, group, num, den)
        if v is None:
            r[key] = None
            missing = next((n for n in (num, den, f"{group}_open") if results.median(n) is None), num)
            reasons[key] = str(results.cases.get(missing, {}).get("reason") or f"{missing} was not measured")
        else:
            r[key] = round(v - minus, 4 if minus else 3)
            inputs[key] = what

    if "asgi" in results.sections:
        for key, (_s, _st, _f, floor) in STRATEGIES.items():
            put(
                f"asgi_{key}_vs_floor",
                "asgi",
                f"asgi_keyfob_{key}",
                f"asgi_{floor}",
                f"added µs over open: keyfob {key} / {floor} (median of per-round ratios)",
            )
        put("asgi_pyjwt_vs_floor", "asgi", "asgi_pyjwt", "asgi_floor_hs256", "added µs: PyJWT / floor_hs256")
        put(
            "asgi_hybrid_vs_pyjwt",
            "asgi",
            "asgi_keyfob_hybrid",
            "asgi_pyjwt",
            "added µs: keyfob hybrid / PyJWT",
        )
        o, m = results.median("asgi_open"), results.median("asgi_keyfob_mw_open")
        if o and m:
            r["asgi_mw_open_added_us"] = round(m - o, 2)
            inputs["asgi_mw_open_added_us"] = "µs: keyfob middleware on an unprotected route minus open"
    if "metrics" in results.sections:
        for key in STRATEGIES:
            put(
                f"metrics_{key}_cost",
                "metrics",
                f"metrics_keyfob_{key}_on",
                f"metrics_keyfob_{key}",
                f"keyfob {key}: added µs with metrics on / off, minus 1 (the guarded-floor ratio's change)",
                minus=1.0,
            )
    return r, reasons, inputs

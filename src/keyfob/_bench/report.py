"""Ratios, the Rich table, the Markdown report and the PNG plots of a benchmark run.

Ratio conventions (as in the JSON): a ``*_vs_*`` time ratio is keyfob's median time over the
reference's (lower is better); an ``http_*`` ratio is req/s over req/s (higher is better);
``revocation_p99_ms`` is milliseconds. A ratio whose inputs could not be measured is ``null``
and ``ratio_reasons`` says why. Targets are shown, never asserted.
"""

from __future__ import annotations

import os
from typing import Any, TextIO

from ._core import Results

__all__ = ["TARGETS", "compute_ratios", "markdown", "plots", "print_table"]

#: ratio → (comparison, target) from the benchmark issue; display only.
TARGETS: dict[str, tuple[str, float]] = {
    "jwt_vs_floor": ("<=", 1.3),
    "jwt_vs_joserfc": ("<=", 0.5),
    "hybrid_vs_floor": ("<=", 1.5),
    "hybrid_vs_pyjwt": ("<=", 0.33),
    "db_sqlite_vs_raw": ("<=", 2.0),
    "db_postgres_vs_raw": ("<=", 1.5),
    "db_redis_vs_raw": ("<=", 1.5),
    "http_jwt_vs_open": (">=", 0.8),
    "http_db_sqlite_vs_open": (">=", 0.8),
    "http_hybrid_vs_open": (">=", 0.85),
    "http_db_postgres_vs_open": (">=", 0.5),
    "http_db_redis_vs_open": (">=", 0.5),
    "http_vs_fastapi_users": (">=", 10.0),
    "revocation_p99_ms": ("<", 50.0),
    "cluster_db_vs_raw": ("<=", 1.5),  # issue 11: the cluster group
    "cluster_revocation_p99_ms": ("<", 50.0),
    "cluster_revocation_p99_ms_postgres": ("<", 50.0),
    # issue 9: against the guarded floor
    "asgi_hybrid_vs_floor": ("<=", 1.3),
    "asgi_jwt_vs_floor": ("<=", 1.25),
    "asgi_db_sqlite_vs_floor": ("<=", 1.25),
    "http_hybrid_vs_floor_guarded": (">=", 0.9),
    "http_jwt_vs_floor_guarded": (">=", 0.9),
    "http_db_sqlite_vs_floor_guarded": (">=", 0.9),
    "http_hybrid_vs_pyjwt_guarded": (">=", 1.5),
    # issue 10: Flask, against Flask-Login on Flask's signed-cookie session
    "flask_hybrid_vs_anchor": (">=", 0.9),
    "flask_jwt_vs_anchor": (">=", 0.9),
    "flask_db_sqlite_vs_anchor": (">=", 0.9),
    # issue 12: Django, against Django's own session backends on the same database
    "django_keyfob_vs_db_sqlite": (">=", 2.0),
    "django_keyfob_vs_db_postgres": (">=", 2.0),
    "django_hybrid_vs_signed_cookies_sqlite": (">=", 0.9),
    "django_hybrid_vs_signed_cookies_postgres": (">=", 0.9),
    # issue 13: metrics on vs off, on the guarded-floor ratio
    "metrics_hybrid_cost": ("<=", 0.03),
    "metrics_jwt_cost": ("<=", 0.03),
    "metrics_db_sqlite_cost": ("<=", 0.03),
    "scale_sqlite_large_vs_small": ("<=", 1.25),
    "scale_postgres_large_vs_small": ("<=", 1.25),
    "scale_redis_large_vs_small": ("<=", 1.25),
}

_TIME_RATIOS: dict[str, tuple[str | tuple[str, ...], str]] = {
    "jwt_vs_floor": ("keyfob_jwt", "floor_jwe"),
    "jwt_vs_joserfc": ("keyfob_jwt", "joserfc_jwe"),
    "hybrid_vs_floor": (
        ("keyfob_hybrid_redis", "keyfob_hybrid_postgres", "keyfob_hybrid_sqlite"),
        "floor_hs256",
    ),
    "hybrid_vs_pyjwt": (
        ("keyfob_hybrid_redis", "keyfob_hybrid_postgres", "keyfob_hybrid_sqlite"),
        "pyjwt_hs256",
    ),
    "db_sqlite_vs_raw": ("keyfob_db_sqlite", "raw_sqlite3"),
    "db_postgres_vs_raw": ("keyfob_db_postgres", "raw_asyncpg"),
    "db_redis_vs_raw": ("keyfob_db_redis", "raw_redis"),
    "jwt_vs_pyjwt": ("keyfob_jwt", "pyjwt_hs256"),
    "hybrid_vs_joserfc_hs256": (("keyfob_hybrid_redis", "keyfob_hybrid_sqlite"), "joserfc_hs256"),
    "hybrid_vs_itsdangerous": (("keyfob_hybrid_redis", "keyfob_hybrid_sqlite"), "itsdangerous_session"),
    "jwt_vs_fastapi_users_jwt": ("keyfob_jwt", "fastapi_users_jwt"),
    "db_sqlite_vs_fastapi_users_db": ("keyfob_db_sqlite", "fastapi_users_db"),
    "floor_jwe_vs_floor_hs256": ("floor_jwe", "floor_hs256"),
}
_HTTP = ("jwt", "hybrid", "db_sqlite", "db_postgres", "db_redis")
#: keyfob endpoint → its guarded floor over HTTP (issue 9)
_HTTP_FLOORS = {"hybrid": "floor_hs256", "jwt": "floor_jwe", "db_sqlite": "floor_sqlite"}


def _pick(results: Results, names: str | tuple[str, ...]) -> tuple[str | None, float | None]:
    for name in (names,) if isinstance(names, str) else names:
        v = results.median(name)
        if v is not None:
            return name, v
    first = names if isinstance(names, str) else names[0]
    return first, None


def _reason(results: Results, name: str | None) -> str:
    if name is None:
        return "not measured"
    c = results.cases.get(name)
    if c is None:
        return f"{name} was not measured"
    return f"{name}: {c.get('reason', 'not measured')}"


def compute_ratios(results: Results) -> None:
    """Fill ``results.ratios`` (and ``ratio_reasons`` / ``meta['ratio_inputs']``) from the measurements."""
    r: dict[str, float | None] = {}
    reasons: dict[str, str] = {}
    inputs: dict[str, str] = {}
    small_large = results.meta.get("config", {}).get("scale_sizes", (10_000, 1_000_000))
    large_tag = _tag(int(small_large[1]))
    ratios = dict(_TIME_RATIOS)
    for store, raw in (("sqlite", "raw_sqlite3"), ("postgres", "raw_asyncpg"), ("redis", "raw_redis")):
        ratios[f"scale_{store}_large_vs_small"] = (f"keyfob_db_{store}_{large_tag}", f"keyfob_db_{store}")
        ratios[f"scale_raw_{store}_large_vs_small"] = (f"{raw}_{large_tag}", raw)
    for key, (num, den) in ratios.items():
        n_name, n = _pick(results, num)
        d_name, d = _pick(results, den)
        if n is None or d is None or d == 0:
            r[key] = None
            reasons[key] = _reason(results, n_name if n is None else d_name)
        else:
            r[key] = round(n / d, 3)
            inputs[key] = f"{n_name} / {d_name}"
    runs = results.http.get("runs", {})
    for w, wruns in runs.items():
        suffix = "" if w == "w1" else f"_{w}"
        for name in (*_HTTP, "open_keyfob_mw"):
            _rps_ratio(results, r, reasons, inputs, f"http_{name}_vs_open{suffix}", wruns, name, "open", w)
        for name, floor in (*_HTTP_FLOORS.items(), ("pyjwt", "floor_hs256")):
            key = f"http_{name}_vs_floor_guarded{suffix}"
            _rps_ratio(results, r, reasons, inputs, key, wruns, name, floor, w, cpu=True)
        _rps_ratio(
            results,
            r,
            reasons,
            inputs,
            f"http_hybrid_vs_pyjwt_guarded{suffix}",
            wruns,
            "hybrid",
            "pyjwt",
            w,
            cpu=True,
        )
        _rps_ratio(
            results, r, reasons, inputs, f"http_vs_fastapi_users{suffix}", wruns, "jwt", "fastapi_users", w
        )
    for key in (*(f"http_{n}_vs_open" for n in _HTTP), "http_vs_fastapi_users"):
        if key not in r:
            r[key] = None
            reasons[key] = str(results.http.get("skipped", "HTTP was not measured"))
    p99s = {k: v.get("p99_ms") for k, v in results.propagation.items() if isinstance(v, dict)}
    measured = {k: v for k, v in p99s.items() if v is not None}
    if measured:
        r["revocation_p99_ms"] = max(measured.values())
        inputs["revocation_p99_ms"] = "worst p99 of: " + ", ".join(sorted(measured))
    else:
        r["revocation_p99_ms"] = None
        reasons["revocation_p99_ms"] = "; ".join(
            f"{k}: {v.get('reason')}" for k, v in results.propagation.items() if isinstance(v, dict)
        ) or str(results.propagation.get("skipped", "propagation was not measured"))
    for k, v in p99s.items():
        r[f"revocation_p99_ms_{k}"] = v
    from ._registry import GROUPS

    ran = results.meta.get("groups", list(GROUPS))
    done: set[str] = set()
    for g in GROUPS.values():
        fn = g.ratio_fn() if g.name in ran else None
        if fn is not None and g.ratios not in done:
            done.add(str(g.ratios))
            gr, greasons, ginputs = fn(results)
            r.update(gr)
            reasons.update(greasons)
            inputs.update(ginputs)
    for g in GROUPS.values():
        for key in g.keys:
            if key not in r:
                r[key] = None
                reasons[key] = (
                    f"the {g.name} group was not selected"
                    if g.name not in ran
                    else str(results.meta.get("failed_groups", {}).get(g.name) or f"{key} was not measured")
                )
    results.ratios = r
    results.ratio_reasons = reasons
    results.meta["ratio_inputs"] = inputs


def _rps_ratio(
    results: Results,
    r: dict[str, float | None],
    reasons: dict[str, str],
    inputs: dict[str, str],
    key: str,
    wruns: dict[str, Any],
    num: str,
    den: str,
    w: str,
    *,
    cpu: bool = False,
) -> None:
    from .http import paired_ratio

    v = paired_ratio(wruns.get(num), wruns.get(den))
    if v is None:
        r[key] = None
        reasons[key] = _http_reason(results, den if (wruns.get(num) or {}).get("rps") else num, w)
    else:
        r[key] = round(v, 3)
        inputs[key] = f"req/s {num} / {den} ({w[1:]} worker(s); median of per-round ratios)"
        c = paired_ratio(wruns.get(num), wruns.get(den), "rps_cpu")
        if c is not None and cpu:
            r[f"{key}_cpu"] = round(c, 3)
            inputs[f"{key}_cpu"] = f"req per server CPU-second, {num} / {den} ({w[1:]} worker(s))"


def _http_reason(results: Results, name: str, w: str) -> str:
    sk = results.http.get("skipped", {})
    if isinstance(sk, dict):
        return str(sk.get(f"{name}_{w}") or sk.get(name) or f"{name} was not measured ({w})")
    return str(sk)


def _tag(n: int) -> str:
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}m"
    if n >= 1000 and n % 1000 == 0:
        return f"{n // 1000}k"
    return str(n)


def status(key: str, value: float | None) -> str:
    """ "met" / "MISSED" / "" (no target) / "n/a" (not measured) for one ratio."""
    if key not in TARGETS:
        return ""
    if value is None:
        return "n/a"
    op, target = TARGETS[key]
    ok = {"<=": value <= target, ">=": value >= target, "<": value < target}[op]
    return "met" if ok else "MISSED"


def _fmt(v: float | None, digits: int = 2) -> str:
    return "—" if v is None else f"{v:,.{digits}f}"


# -- terminal --------------------------------------------------------------------------------------
def print_table(results: Results, file: TextIO) -> None:
    """Rich tables: ratios against targets, micro cases, HTTP, propagation."""
    from rich.console import Console
    from rich.table import Table

    console = Console(file=file, width=130)
    t = Table(title="keyfob bench — ratios (time ratios: lower is better; http_*: higher is better)")
    for col in ("ratio", "value", "target", "status", "inputs / reason"):
        t.add_column(col)
    for key, value in results.ratios.items():
        tgt = TARGETS.get(key)
        st = status(key, value)
        style = {"met": "green", "MISSED": "bold red"}.get(st, "")
        t.add_row(
            key,
            _fmt(value, 3),
            f"{tgt[0]} {tgt[1]:g}" if tgt else "",
            f"[{style}]{st}[/]" if style else st,
            results.meta.get("ratio_inputs", {}).get(key) or results.ratio_reasons.get(key, ""),
        )
    console.print(t)
    m = Table(title="micro-benchmarks, µs per operation (median of rounds, min-max)")
    for col in ("case", "group", "median µs", "min-max µs", "what"):
        m.add_column(col)
    for name, c in results.cases.items():
        if c.get("median_us") is None:
            m.add_row(name, c.get("group", ""), "null", "", f"[yellow]{c.get('reason', '')}[/]")
        else:
            m.add_row(
                name,
                c["group"],
                _fmt(c["median_us"], 1),
                f"{c['min_us']:,.1f}-{c['max_us']:,.1f}",
                c["label"],
            )
    console.print(m)
    runs = results.http.get("runs", {})
    if runs:
        h = Table(
            title=f"HTTP, {results.http.get('concurrency')} keep-alive connections, req/s median (p99 ms)"
        )
        h.add_column("endpoint")
        for w in runs:
            h.add_column(f"{w[1:]} worker(s)")
        names = list(dict.fromkeys(n for wr in runs.values() for n in wr))
        for n in names:
            h.add_row(n, *(_http_cell(runs[w].get(n)) for w in runs))
        console.print(h)
    if results.http.get("skipped"):
        console.print(f"HTTP skipped: {results.http['skipped']}")
    for name in ("flask", "django"):
        sec = results.sections.get(name)
        if not sec:
            continue
        w = Table(title=f"{name}: {sec.get('server')}, req/s median (p99 ms)")
        for col in ("endpoint", "req/s (p99 ms)", "what"):
            w.add_column(col)
        for n, x in sec.get("runs", {}).items():
            w.add_row(n, _http_cell(x), sec.get("labels", {}).get(n, ""))
        for n, why in sec.get("skipped", {}).items():
            w.add_row(n, "not available", f"[yellow]{why}[/]")
        console.print(w)
    if results.propagation:
        p = Table(title="hybrid revocation propagation across processes, ms")
        for col in ("feed", "p50", "p99", "max", "samples", "note"):
            p.add_column(col)
        for k, v in results.propagation.items():
            if isinstance(v, dict):
                p.add_row(
                    k,
                    _fmt(v.get("p50_ms")),
                    _fmt(v.get("p99_ms")),
                    _fmt(v.get("max_ms")),
                    str(v.get("samples", "")),
                    v.get("reason", ""),
                )
        console.print(p)


def _asgi_markdown(results: Results, group: str, title: str) -> list[str]:
    cases = {n: c for n, c in results.cases.items() if c.get("group") == group}
    if not cases:
        return []
    sec = results.sections.get(group, {})
    open_us = (cases.get(f"{group}_open") or {}).get("median_us")
    lines = [
        "",
        f"## {title}",
        "",
        f"Each app is called as an ASGI callable in this process (no socket, no HTTP parsing): "
        f"{sec.get('rounds')} interleaved rounds of ~{sec.get('batch_ms')} ms batches timed in "
        f"{sec.get('clock', 'wall time')}, rotating order. `added µs` is the endpoint's median minus the "
        "open endpoint's; the ratios are the median over rounds of the per-round ratio of added µs.",
        "",
        "| case | median µs | added µs over open | min-max µs | what |",
        "|---|---:|---:|---:|---|",
    ]
    for name, c in cases.items():
        if c.get("median_us") is None:
            lines.append(f"| `{name}` | null | | | {c.get('reason', '')} |")
            continue
        added = "-" if name == f"{group}_open" or open_us is None else f"{c['median_us'] - open_us:,.1f}"
        lines.append(
            f"| `{name}` | {c['median_us']:,.1f} | {added} | {c['min_us']:,.1f}-{c['max_us']:,.1f} | "
            f"{c['label']} |"
        )
    return lines


def _wsgi_markdown(results: Results, name: str, title: str) -> list[str]:
    sec = results.sections.get(name)
    if not sec:
        return []
    gen = "wrk (1 thread)" if sec.get("loadgen") == "wrk" else "the in-repo load generator"
    lines = [
        "",
        f"## HTTP ({title})",
        "",
        f"{sec.get('server')}, {gen}: {sec.get('concurrency')} connections (a sync worker closes each "
        f"after one response), {sec.get('duration_s')} s per run, {sec.get('rounds')} interleaved round(s). "
        "req/s median (min-max), latency p50/p99 in ms.",
        "",
        "| endpoint | req/s | min-max | p50 ms | p99 ms | errors | what |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    labels = sec.get("labels", {})
    for n, x in sec.get("runs", {}).items():
        lines.append(
            f"| `{n}` | {x['rps']:,.0f} | {x['rps_min']:,.0f}-{x['rps_max']:,.0f} | "
            f"{_fmt(x.get('p50_ms'))} | {_fmt(x.get('p99_ms'))} | {x.get('errors', 0)} | "
            f"{labels.get(n, '')} |"
        )
    for n, why in sec.get("skipped", {}).items():
        lines.append(f"| `{n}` | not available | | | | | {why} |")
    return lines


def _http_cell(x: dict[str, Any] | None) -> str:
    if not x:
        return "—"
    err = f", {x['errors']} errors" if x.get("errors") else ""
    return f"{x['rps']:,.0f} ({_fmt(x.get('p99_ms'), 1)}){err}"


# -- Markdown ----------------------------------------------------------------------------------------
def markdown(results: Results, plot_files: list[str]) -> str:
    """The report as Markdown (what ``docs/BENCHMARKS.md`` carries)."""
    meta = results.meta
    mach = meta.get("machine", {})
    lines = [
        "# keyfob benchmark results",
        "",
        f"Run {meta.get('started', '?')}, mode `{meta.get('mode')}`, {meta.get('duration_s', '?')} s: "
        f"`{meta.get('command', 'keyfob bench')}`.",
        "",
        f"Machine: {mach.get('cpu', '?')}, {mach.get('cpus', '?')} CPUs, "
        f"{mach.get('memory_gb', '?')} GB RAM, "
        f"{mach.get('platform', '?')}; {mach.get('implementation', '')} {mach.get('python', '')}. "
        f"Load average (1, 5, 15 min) at the start {meta.get('loadavg_start')}, at the end "
        f"{meta.get('loadavg_end')}; groups run: {', '.join(meta.get('groups', []))} "
        f"({', '.join(f'{k} {v:g} s' for k, v in meta.get('group_durations_s', {}).items())}).",
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in mach.get("versions", {}).items() if v) + ".",
        "",
        "## Ratios",
        "",
        "Time ratios (`*_vs_*`) are keyfob's median time over the reference's: lower is better. "
        "`http_*` ratios are req/s over req/s: higher is better. "
        "Targets are from the benchmark issue; they are reported, not asserted.",
        "",
        "| ratio | value | target | status | inputs (or why null) |",
        "|---|---:|---:|---|---|",
    ]
    for key, value in results.ratios.items():
        tgt = TARGETS.get(key)
        st = status(key, value)
        lines.append(
            f"| `{key}` | {_fmt(value, 3)} | {f'{tgt[0]} {tgt[1]:g}' if tgt else ''} | "
            f"{'**MISSED**' if st == 'MISSED' else st} | "
            f"{results.meta.get('ratio_inputs', {}).get(key) or results.ratio_reasons.get(key, '')} |"
        )
    cfg = meta.get("config", {})
    lines += [
        "",
        "## Per-operation cost (µs)",
        "",
        f"Interleaved rounds ({cfg.get('rounds')} rounds, batches of ~{cfg.get('batch_ms')} ms, rotating "
        "order) in one process; median of the per-round means, and the min-max across rounds.",
        "",
        "| case | group | median µs | min-max µs | what |",
        "|---|---|---:|---:|---|",
    ]
    for name, c in results.cases.items():
        if c.get("group") in ("asgi", "metrics"):
            continue
        if c.get("median_us") is None:
            lines.append(f"| `{name}` | {c.get('group', '')} | null | | {c.get('reason', '')} |")
        else:
            lines.append(
                f"| `{name}` | {c['group']} | {c['median_us']:,.1f} | {c['min_us']:,.1f}-{c['max_us']:,.1f}"
                f" | {c['label']} |"
            )
    lines += _asgi_markdown(results, "asgi", "One FastAPI request over ASGI, in process (guarded floors)")
    lines += _asgi_markdown(results, "metrics", "keyfob.metrics on vs off (ASGI, in process)")
    http = results.http
    runs = http.get("runs", {})
    lines += ["", "## HTTP (FastAPI)", ""]
    if runs:
        gen = "wrk (1 thread)" if http.get("loadgen") == "wrk" else "the in-repo load generator"
        lines += [
            f"uvicorn (httptools, uvloop) + FastAPI on 127.0.0.1, {gen} on the same "
            f"machine: {http.get('concurrency')} keep-alive connections, {http.get('warmup_s')} s warm-up + "
            f"{http.get('duration_s')} s per run, {http.get('rounds')} interleaved round(s). "
            "req/s median (min-max), latency p50/p99 in ms.",
            "",
            "| endpoint | workers | req/s | min-max | p50 ms | p99 ms | errors | what |",
            "|---|---:|---:|---:|---:|---:|---:|---|",
        ]
        labels = http.get("labels", {})
        for w, wr in runs.items():
            for n, x in wr.items():
                lines.append(
                    f"| `{n}` | {w[1:]} | {x['rps']:,.0f} | {x['rps_min']:,.0f}-{x['rps_max']:,.0f} | "
                    f"{_fmt(x.get('p50_ms'))} | {_fmt(x.get('p99_ms'))} | {x.get('errors', 0)} | "
                    f"{labels.get(n, '')} |"
                )
    if http.get("skipped"):
        lines += ["", f"Not measured: {http['skipped']}"]
    for name, title in (("flask", "Flask"), ("django", "Django")):
        lines += _wsgi_markdown(results, name, title)
    lines += [
        "",
        "## Revocation propagation (hybrid)",
        "",
        "`fob.revoke(sid)` in one process until another process's view has applied it (and "
        "`authenticate` refuses the cookies).",
        "",
        "| feed | p50 ms | p99 ms | max ms | samples | revoke() call p50 ms | note |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for k, v in results.propagation.items():
        if isinstance(v, dict):
            lines.append(
                f"| {v.get('feed', k)} | {_fmt(v.get('p50_ms'))} | {_fmt(v.get('p99_ms'))} | "
                f"{_fmt(v.get('max_ms'))} | {v.get('samples', '')} | {_fmt(v.get('revoke_call_p50_ms'))} | "
                f"{v.get('reason', '')} |"
            )
        else:
            lines.append(f"| — | | | | | | {v} |")
    if plot_files:
        lines += ["", "## Plots", ""] + [
            f"![{os.path.basename(p)}]({os.path.basename(p)})" for p in plot_files
        ]
    if results.notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in results.notes]
    return "\n".join(lines) + "\n"


# -- plots --------------------------------------------------------------------------------------------
_COLORS = {"floor": "#7f7f7f", "keyfob": "#1f77b4", "peer": "#ff7f0e", "raw": "#2ca02c", "scale": "#9467bd"}


def plots(results: Results, out: str) -> list[str]:
    """Write the PNG plots into ``out``; return their paths (none if matplotlib is missing)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        results.notes.append("plots skipped: matplotlib is not installed (pip install 'keyfob[bench]')")
        return []
    files: list[str] = []
    cases = [(n, c) for n, c in results.cases.items() if c.get("median_us") is not None]
    if cases:
        cases.sort(key=lambda nc: nc[1]["median_us"])
        fig, ax = plt.subplots(figsize=(10, 0.32 * len(cases) + 1.5))
        med = [c["median_us"] for _, c in cases]
        lo = [c["median_us"] - c["min_us"] for _, c in cases]
        hi = [c["max_us"] - c["median_us"] for _, c in cases]
        ax.barh(
            [n for n, _ in cases],
            med,
            xerr=[lo, hi],
            color=[_COLORS.get(c["group"], "#333") for _, c in cases],
        )
        ax.set_xscale("log")
        ax.set_xlabel("µs per operation (median, min-max across rounds; log scale)")
        ax.set_title("keyfob vs floors, peers and raw drivers")
        from matplotlib.patches import Patch

        ax.legend(handles=[Patch(color=v, label=k) for k, v in _COLORS.items()], loc="lower right")
        fig.tight_layout()
        files.append(_save(fig, out, "micro.png"))
        plt.close(fig)
    runs = results.http.get("runs", {})
    if runs:
        names = list(dict.fromkeys(n for wr in runs.values() for n in wr))
        fig, ax = plt.subplots(figsize=(10, 4.5))
        width = 0.8 / max(1, len(runs))
        for i, (w, wr) in enumerate(runs.items()):
            xs = [j + i * width for j in range(len(names))]
            ax.bar(xs, [wr.get(n, {}).get("rps", 0) for n in names], width, label=f"{w[1:]} worker(s)")
        ax.set_xticks([j + width * (len(runs) - 1) / 2 for j in range(len(names))])
        ax.set_xticklabels(names, rotation=30, ha="right")
        ax.set_ylabel("req/s")
        ax.set_title("HTTP: protected FastAPI endpoint per strategy vs open")
        ax.legend()
        fig.tight_layout()
        files.append(_save(fig, out, "http.png"))
        plt.close(fig)
    scale = [
        (
            s,
            results.cases.get(f"keyfob_db_{s}"),
            next((c for n, c in results.cases.items() if n.startswith(f"keyfob_db_{s}_")), None),
        )
        for s in ("sqlite", "postgres", "redis")
    ]
    pairs = [(s, a, b) for s, a, b in scale if a and b and a.get("median_us") and b.get("median_us")]
    if pairs:
        fig, ax = plt.subplots(figsize=(7, 4))
        sizes = results.meta.get("config", {}).get("scale_sizes", ("small", "large"))
        pos = list(range(len(pairs)))
        ax.bar(
            [x - 0.2 for x in pos], [a["median_us"] for _, a, _ in pairs], 0.4, label=f"{sizes[0]:,} sessions"
        )
        ax.bar(
            [x + 0.2 for x in pos], [b["median_us"] for _, _, b in pairs], 0.4, label=f"{sizes[1]:,} sessions"
        )
        ax.set_xticks(pos)
        ax.set_xticklabels([s for s, _, _ in pairs])
        ax.set_ylabel("µs per authenticate (database strategy)")
        ax.set_title("Store size: latency should stay flat")
        ax.legend()
        fig.tight_layout()
        files.append(_save(fig, out, "scale.png"))
        plt.close(fig)
    prop = {
        k: v for k, v in results.propagation.items() if isinstance(v, dict) and v.get("p50_ms") is not None
    }
    if prop:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ppos = list(range(len(prop)))
        ax.bar([x - 0.2 for x in ppos], [v["p50_ms"] for v in prop.values()], 0.4, label="p50")
        ax.bar([x + 0.2 for x in ppos], [v["p99_ms"] for v in prop.values()], 0.4, label="p99")
        ax.axhline(50, color="red", linestyle="--", linewidth=1, label="target p99 < 50 ms")
        ax.set_xticks(ppos)
        ax.set_xticklabels(list(prop))
        ax.set_ylabel("ms")
        ax.set_title("Hybrid revocation propagation across processes")
        ax.legend()
        fig.tight_layout()
        files.append(_save(fig, out, "propagation.png"))
        plt.close(fig)
    return files


def _save(fig: Any, out: str, name: str) -> str:
    path = os.path.join(out, name)
    fig.savefig(path, dpi=110)
    return path

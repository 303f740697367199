"""WSGI groups: keyfob in Flask and in Django, against each framework's own session, over HTTP.

Every app runs in its own gunicorn process (one ``sync`` worker: the server most WSGI apps are
deployed on, and one process per app so req/s compare one core's worth of work) on a free
127.0.0.1 port, driven by ``wrk`` (or the in-repo generator) with a few connections; a sync worker
answers one request per connection, so each request is a new TCP connection for every app alike.
Apps are interleaved in rounds and the median req/s is reported (:func:`keyfob._bench.http.run_targets`).

* ``flask`` (issue 10): a keyfob-protected Flask view (``KeyfobFlask``, ``@login_required``) per
  strategy, against the same view behind Flask's default signed-cookie session with Flask-Login
  (the anchor, which cannot revoke at all). Ratio ``flask_<strategy>_vs_anchor``.
* ``django`` (issue 12): a request that loads a session, through keyfob's session engine and
  middleware against Django's ``db``, ``cached_db`` and ``signed_cookies`` backends, on the same
  database (SQLite, then PostgreSQL). Ratios ``django_keyfob_vs_db_<db>`` (the engine, database
  strategy) and ``django_hybrid_vs_signed_cookies_<db>`` (the middleware, hybrid). Rows whose
  keyfob module is not installed are reported as not available, with the reason.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import subprocess
import sys
from typing import Any
from urllib.parse import unquote, urlsplit

from ._core import Config, Results, log
from ._stores import RUN_ID, Stores
from .http import Server, Target, loadgen, paired_ratio, run_targets

__all__ = ["django_ratios", "flask_ratios", "run_django", "run_flask"]

_FLASK_APP = "keyfob._bench.wsgi_apps:flask_app()"
_DJANGO_APP = "keyfob._bench.wsgi_apps:django_app()"
#: (name, strategy, store, filled?) — the same stores as the FastAPI groups
_PLAN = (
    ("hybrid", "hybrid", "redis", False),
    ("jwt", "jwt", "sqlite", False),
    ("db_sqlite", "database", "sqlite", True),
)


def _section(cfg: Config, server: str) -> dict[str, Any]:
    gen = loadgen(cfg)
    return {
        "server": server,
        "loadgen": gen,
        "concurrency": cfg.wsgi_concurrency,
        "duration_s": cfg.wsgi_duration if gen == "python" else max(1, round(cfg.wsgi_duration)),
        "rounds": cfg.http_rounds,
        "runs": {},
        "skipped": {},
        "labels": {},
    }


async def _run(
    cfg: Config, servers: dict[str, Server], targets: list[Target], out: dict[str, Any], label: str
) -> None:
    out["labels"].update({t.name: t.label for t in targets})
    out["runs"].update(
        await run_targets(
            cfg,
            servers,
            targets,
            out,
            label=label,
            duration=cfg.wsgi_duration,
            warmup=min(cfg.http_warmup, 1.0),
            concurrency=cfg.wsgi_concurrency,
            rounds=cfg.http_rounds,
        )
    )


# -- Flask ---------------------------------------------------------------------------------------------
async def _flask(cfg: Config, results: Results) -> None:
    out = _section(cfg, "gunicorn, 1 sync worker per app")
    results.sections["flask"] = out
    try:
        import flask_login  # noqa: F401
    except ImportError as exc:
        out["skipped"]["anchor"] = f"Flask-Login is not installed ({exc}); pip install flask-login"
    servers: dict[str, Server] = {}
    targets: list[Target] = []
    if "anchor" not in out["skipped"]:
        servers["anchor"] = Server(
            "flask_anchor", {"kind": "flask_login"}, 1, app=_FLASK_APP, kind="gunicorn"
        )
        targets.append(
            Target(
                "anchor",
                "anchor",
                "/p",
                {},
                "Flask + Flask-Login, Flask's signed-cookie session",
                login="/login",
            )
        )
    stores = Stores(cfg)
    try:
        for name, strategy, store, filled in _PLAN:
            if cfg.mode == "smoke" and name != "hybrid":
                out["skipped"][name] = "not run in --smoke (one KeyfobFlask server proves the setup)"
                continue
            fill = cfg.scale_sizes[0] if filled else None
            try:
                _fob, cookies = await stores.session(strategy, store, fill)
            except Exception as exc:
                if name != "hybrid":
                    out["skipped"][name] = f"{type(exc).__name__}: {exc}"
                    continue
                store = "sqlite"  # no Redis: hybrid on SQLite (one node, no feed)
                _fob, cookies = await stores.session(strategy, store, fill)
            conf = {
                "kind": "flask_keyfob",
                "strategy": strategy,
                "store": store,
                **stores.server_conf(strategy, store, fill),
            }
            servers[name] = Server(f"flask_{name}", conf, 1, app=_FLASK_APP, kind="gunicorn")
            targets.append(Target(name, name, "/p", cookies, f"Flask + KeyfobFlask {strategy} ({store})"))
        await _run(cfg, servers, targets, out, "flask")
    finally:
        await stores.close()


def run_flask(cfg: Config, results: Results) -> None:
    """The ``flask`` group."""
    asyncio.run(_flask(cfg, results))


def _ratio(
    out: dict[str, Any],
    key: str,
    num: str,
    den: str,
    r: dict[str, float | None],
    why: dict[str, str],
    inputs: dict[str, str],
) -> None:
    runs, skipped = out.get("runs", {}), out.get("skipped", {})
    v = paired_ratio(runs.get(num), runs.get(den))
    if v is None:
        r[key] = None
        missing = den if (runs.get(num) or {}).get("rps") else num
        why[key] = _skip_reason(skipped, missing)
    else:
        r[key] = round(v, 3)
        inputs[key] = f"req/s {num} / {den} (median of per-round ratios)"
        c = paired_ratio(runs.get(num), runs.get(den), "rps_cpu")
        if c is not None:
            r[f"{key}_cpu"] = round(c, 3)
            inputs[f"{key}_cpu"] = f"req per server CPU-second, {num} / {den}"


def _skip_reason(skipped: dict[str, str], name: str) -> str:
    for k, v in skipped.items():
        if k == name or k.startswith(f"{name}_"):
            return v
    return f"{name} was not measured"


def flask_ratios(results: Results) -> tuple[dict[str, float | None], dict[str, str], dict[str, str]]:
    r: dict[str, float | None] = {}
    why: dict[str, str] = {}
    inputs: dict[str, str] = {}
    out = results.sections.get("flask")
    if out is not None:
        for name, *_ in _PLAN:
            _ratio(out, f"flask_{name}_vs_anchor", name, "anchor", r, why, inputs)
    return r, why, inputs


# -- Django --------------------------------------------------------------------------------------------
#: Django's PostgreSQL rows get a database of their own for the run (created and dropped here):
#: Django's tables and keyfob's (derived from ``DATABASES``) never meet another run's
_PG_DB = f"kfb{RUN_ID}_django"


def _keyfob_django(*modules: str) -> str | None:
    """None when these modules of keyfob's Django integration are installed, else why not."""
    for mod in ("keyfob.django", *modules):
        try:
            if importlib.util.find_spec(mod) is None:
                return f"{mod} is not available in this checkout yet (issue 12): not measured"
        except ImportError as exc:
            return f"{mod} cannot be imported ({exc}): not measured"
    return None


def _pg_database(url: str) -> dict[str, Any]:
    u = urlsplit(url)
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": _PG_DB,
        "USER": unquote(u.username or "postgres"),
        "PASSWORD": unquote(u.password or ""),
        "HOST": u.hostname or "127.0.0.1",
        "PORT": str(u.port or 5432),
    }


async def _pg_db(url: str, *, drop: bool) -> None:
    import asyncpg

    conn = await asyncpg.connect(url, timeout=5)
    try:
        if drop:
            await conn.execute(f'DROP DATABASE IF EXISTS "{_PG_DB}" WITH (FORCE)')
        else:
            await conn.execute(f'CREATE DATABASE "{_PG_DB}"')
    finally:
        await conn.close()


def _migrate(conf: dict[str, Any]) -> None:
    env = {**os.environ, "KFBENCH_APP": json.dumps(conf), "PYTHONWARNINGS": "ignore"}
    done = subprocess.run(
        [sys.executable, "-m", "keyfob._bench.django_app", "migrate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    if done.returncode != 0:
        raise RuntimeError(f"migrate failed: {(done.stderr or done.stdout).strip()[-400:]}")


def _store_url(database: dict[str, Any]) -> str:
    """The keyfob store URL for Django's database (what keyfob.django derives from ``DATABASES``)."""
    if database["ENGINE"].endswith("sqlite3"):
        return "sqlite:///" + os.path.abspath(str(database["NAME"]))
    auth = database["USER"] + (f":{database['PASSWORD']}" if database.get("PASSWORD") else "")
    return f"postgresql://{auth}@{database['HOST']}:{database['PORT']}/{database['NAME']}"


async def _keyfob_session(strategy: str, database: dict[str, Any]) -> dict[str, str]:
    """Cookies of a session keyfob creates on the Django project's own database."""
    from keyfob import Keyfob

    from ._core import SECRET, SESSION_DATA, USER_ID

    fob = Keyfob(strategy=strategy, secret=SECRET, store=_store_url(database), cookie_secure=False)
    await fob.start()
    try:
        issued = await fob.create(USER_ID, dict(SESSION_DATA))
    finally:
        await fob.close()
    return {c.name: c.value for c in issued.cookies}


def _keyfob_settings(strategy: str) -> dict[str, Any]:
    from ._core import SECRET

    return {"strategy": strategy, "secret": SECRET, "cookie_secure": False}


async def _django(cfg: Config, results: Results) -> None:
    out = _section(cfg, "gunicorn, 1 sync worker per app")
    results.sections["django"] = out
    try:
        import django

        out["django"] = django.get_version()
    except ImportError as exc:
        out["skipped"]["django"] = f"Django is not installed ({exc}); pip install 'keyfob[django]'"
        return
    no_engine = _keyfob_django("keyfob.django.session_backend")
    no_middleware = _keyfob_django("keyfob.django.middleware")
    stores = Stores(cfg)
    pg_url: str | None = None
    dbs: dict[str, dict[str, Any]] = {
        "sqlite": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.path.join(cfg.workdir, "django.db")}
    }
    try:
        try:
            import psycopg  # noqa: F401

            await _pg_db(cfg.pg_url, drop=False)
            pg_url = cfg.pg_url
            dbs["postgres"] = _pg_database(pg_url)
        except Exception as exc:
            for b in ("db", "cached_db", "keyfob_engine", "keyfob_hybrid"):
                out["skipped"][f"{b}_postgres"] = f"PostgreSQL for Django: {type(exc).__name__}: {exc}"
        servers: dict[str, Server] = {}
        targets: list[Target] = []
        # each database's migrate is a Django process of its own: run them side by side
        migrated = await asyncio.gather(*(
            asyncio.to_thread(_migrate, {
                "backend": "db",
                "database": database,
                "with_keyfob": no_engine is None,
                "keyfob": _keyfob_settings("database"),
            })
            for database in dbs.values()
        ), return_exceptions=True)  # fmt: skip
        for (db, database), failed in zip(dbs.items(), migrated, strict=True):
            if isinstance(failed, BaseException):
                for b in ("db", "cached_db", "keyfob_engine", "keyfob_hybrid"):
                    out["skipped"][f"{b}_{db}"] = f"{type(failed).__name__}: {failed}"
                continue
            # each keyfob row next to the backend it is compared with (see http.run_targets' rounds)
            backends = ["db", "keyfob_engine", "cached_db", "keyfob_hybrid"]
            if db == "sqlite":
                backends.append("signed_cookies")
            for backend in backends:
                name = backend if backend == "signed_cookies" else f"{backend}_{db}"
                if cfg.mode == "smoke" and (backend == "cached_db" or (db != "sqlite" and backend != "db")):
                    out["skipped"][name] = (
                        "not run in --smoke (each kind of server runs once; a full run has it)"
                    )
                    continue
                unavailable = {"keyfob_engine": no_engine, "keyfob_hybrid": no_middleware}.get(backend)
                if unavailable:
                    out["skipped"][name] = unavailable
                    continue
                strategy = "hybrid" if backend == "keyfob_hybrid" else "database"
                conf = {
                    "kind": "django",
                    "backend": backend,
                    "database": database,
                    "keyfob": _keyfob_settings(strategy),
                }
                servers[name] = Server(f"django_{name}", conf, 1, app=_DJANGO_APP, kind="gunicorn")
                label = {
                    "db": "Django db session backend",
                    "cached_db": "Django cached_db session backend (local-memory cache)",
                    "signed_cookies": "Django signed_cookies session backend (no database; cannot revoke)",
                    "keyfob_engine": "keyfob's Django session engine (database strategy)",
                    "keyfob_hybrid": "keyfob's Django middleware, hybrid strategy",
                }[backend]
                where = "" if backend == "signed_cookies" else f" on {db}"
                if backend == "keyfob_hybrid":
                    # signed in by keyfob itself on the store the middleware derives from DATABASES
                    try:
                        cookies = await _keyfob_session(strategy, database)
                    except Exception as exc:
                        out["skipped"][name] = f"cannot sign in through keyfob: {type(exc).__name__}: {exc}"
                        del servers[name]
                        continue
                    targets.append(Target(name, name, "/p", cookies, label + where))
                else:
                    targets.append(Target(name, name, "/p", {}, label + where, login="/login"))
        await _run(cfg, servers, targets, out, "django")
    finally:
        if pg_url is not None:
            try:
                await _pg_db(pg_url, drop=True)
            except Exception as exc:
                log(f"django: could not drop database {_PG_DB}: {exc}")
        await stores.close()


def run_django(cfg: Config, results: Results) -> None:
    """The ``django`` group."""
    asyncio.run(_django(cfg, results))


def django_ratios(results: Results) -> tuple[dict[str, float | None], dict[str, str], dict[str, str]]:
    r: dict[str, float | None] = {}
    why: dict[str, str] = {}
    inputs: dict[str, str] = {}
    out = results.sections.get("django")
    if out is None:
        return r, why, inputs
    for db in ("sqlite", "postgres"):
        _ratio(out, f"django_keyfob_vs_db_{db}", f"keyfob_engine_{db}", f"db_{db}", r, why, inputs)
        _ratio(
            out,
            f"django_hybrid_vs_signed_cookies_{db}",
            f"keyfob_hybrid_{db}",
            "signed_cookies",
            r,
            why,
            inputs,
        )
        _ratio(
            out, f"django_keyfob_vs_cached_db_{db}", f"keyfob_engine_{db}", f"cached_db_{db}", r, why, inputs
        )
        _ratio(out, f"django_db_{db}_vs_signed_cookies", f"db_{db}", "signed_cookies", r, why, inputs)
    return r, why, inputs

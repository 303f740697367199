"""The FastAPI apps the HTTP benchmark serves (``uvicorn keyfob._bench.apps:factory --factory``).

The app is chosen by the ``KFBENCH_APP`` environment variable (JSON): ``{"kind": "open"}``, ``{"kind":
"keyfob", "strategy": ..., "store": ..., "url": ..., "prefix": ..., "channel": ...}``, ``{"kind":
"fastapi_users", "url": ...}``, or one of the guarded floors of :mod:`keyfob._bench.guards`
(``{"kind": "floor_hs256" | "floor_jwe" | "floor_sqlite" | "pyjwt", ...}``). Every app answers
``GET /p`` with the same small JSON body; only
what guards it differs. ``GET /health`` is open everywhere (readiness probe). In the keyfob apps the
endpoints are declared before ``install`` adds keyfob's ``/auth`` routes, so every app matches ``/p``
on its first route (the comparison is the guard, not the length of the route table).
"""

import contextlib
import importlib
import json
import os
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import Depends, FastAPI

from ._core import SECRET
from .guards import GUARDS, guard_app, open_app

__all__ = ["build_fob", "factory", "keyfob_app"]


def build_fob(conf: dict[str, Any]) -> Any:
    """A Keyfob on the store (and feed) ``conf`` names — the same one the parent process measures."""
    from keyfob import Keyfob
    from keyfob.stores import open_feed, open_store

    strategy, store, url = conf["strategy"], conf["store"], conf["url"]
    feed: Any = None
    if store == "postgres":
        from keyfob.stores.sql import SQLStore

        store_obj: Any = SQLStore(url, table_prefix=conf["prefix"])
    elif store == "redis":
        store_obj = open_store(url, prefix=conf["prefix"])
    else:
        store_obj = open_store(url)
    if strategy != "database" and conf.get("channel"):
        feed = open_feed(url, channel=conf["channel"])
    return Keyfob(strategy=strategy, secret=SECRET, store=store_obj, feed=feed, cookie_secure=True)


def keyfob_app(fob: Any, *, lifespan: bool = True, metrics: bool = False) -> FastAPI:
    """The endpoint behind keyfob (middleware + ``Depends(require_session)``) on ``fob``.

    ``lifespan=False`` for a fob that is already started (the in-process ASGI benchmark);
    ``metrics=True`` turns :mod:`keyfob.metrics` on for this fob (see :func:`enable_metrics`)."""
    from keyfob import Session
    from keyfob.fastapi import install, require_session

    if metrics:
        enable_metrics(fob)

    @contextlib.asynccontextmanager
    async def run(_app: FastAPI) -> AsyncIterator[None]:
        await fob.start()
        yield
        await fob.close()

    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None, lifespan=run if lifespan else None)

    @app.get("/p")
    async def protected(session: Annotated[Session, Depends(require_session)]) -> dict[str, Any]:
        return {"ok": True, "user": session.user_id}

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"ok": True}

    @app.get("/open")
    async def open_route() -> dict[str, Any]:
        return {"ok": True, "user": "anonymous"}

    # After the app's own routes, so /p is matched first here as in the open app: Starlette tries
    # routes in order, and eight /auth routes in front would bill FastAPI's route matching to keyfob.
    install(app, fob)
    return app


def _keyfob_app(conf: dict[str, Any]) -> FastAPI:
    """The keyfob app for a ``KFBENCH_APP`` conf (tests/integrations/_hybrid_node.py serves it)."""
    return keyfob_app(build_fob(conf), metrics=bool(conf.get("metrics")))


def metrics_available() -> str | None:
    """None when :mod:`keyfob.metrics` can be turned on here, else why not."""
    try:
        m = importlib.import_module("keyfob.metrics")
    except ImportError as exc:
        return f"keyfob.metrics is not available in this checkout yet (issue 13): {exc}"
    if not hasattr(m, "instrument"):
        return "keyfob.metrics has no instrument(fob)"
    return None


def enable_metrics(fob: Any) -> None:
    """Turn keyfob's metrics on for ``fob`` (Prometheus counters and histograms, via its events)."""
    from prometheus_client import CollectorRegistry

    # a registry of its own: the benchmark never adds series to the process's default REGISTRY
    importlib.import_module("keyfob.metrics").instrument(fob, registry=CollectorRegistry())


def _fastapi_users_app(conf: dict[str, Any]) -> FastAPI:
    from ._fastapi_users import make_app_parts

    _fu, current_user = make_app_parts(conf["url"])
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)

    @app.get("/p")
    async def protected(user: Annotated[Any, Depends(current_user)]) -> dict[str, Any]:
        return {"ok": True, "user": str(user.id)}

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"ok": True}

    return app


def factory() -> FastAPI:
    """Build the app ``KFBENCH_APP`` names."""
    conf: dict[str, Any] = json.loads(os.environ.get("KFBENCH_APP", '{"kind": "open"}'))
    kind = conf.get("kind")
    if kind == "open":
        return open_app()
    if kind == "keyfob":
        return _keyfob_app(conf)
    if kind in GUARDS:
        return guard_app(kind, conf)
    if kind == "fastapi_users":
        return _fastapi_users_app(conf)
    raise SystemExit(f"unknown KFBENCH_APP kind {kind!r}")

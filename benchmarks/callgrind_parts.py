"""Instructions per call of the parts of one keyfob request, under callgrind (the load does not move them).

On CPython 3.11 ``callgrind_annotate`` names C functions only (every Python frame is
``_PyEval_EvalFrameDefault``), so this script measures keyfob's request path part by part instead:
each part (a whole app, or one step of the middleware, the engine, the strategy or the store) is
called ``N`` times between two ``os.getppid()`` calls, and callgrind dumps before each ``getppid``,
as in :mod:`benchmarks.callgrind_asgi`. The apps next to keyfob's split its cost: the middleware
without a cookie, with one but no ``Depends``, a trivial ``Depends`` (what FastAPI costs a guard of
any kind, the floor's included)::

    PYTHONPATH=$PWD/src valgrind --tool=callgrind --dump-instr=no --dump-before=getppid \\
        --callgrind-out-file=/tmp/cgp/cg.out.%p /work/main/.venv/bin/python \\
        benchmarks/callgrind_parts.py /tmp/cgp 300 db_sqlite     # or jwt, hybrid
    PYTHONPATH=$PWD/src /work/main/.venv/bin/python benchmarks/callgrind_parts.py --report /tmp/cgp

Redis must be up (hybrid's store and feed), as for the benchmark.
"""

# No ``from __future__ import annotations``: FastAPI must see the real ``Depends(...)`` of the
# apps built in functions here.

import asyncio
import gc
import json
import os
import sys
import tempfile
from collections.abc import Callable
from typing import Annotated, Any

from _callgrind import dumps, total  # benchmarks/_callgrind.py (the script's own folder is on sys.path)
from fastapi import Depends, FastAPI, Request


def _bare() -> FastAPI:
    return FastAPI(openapi_url=None, docs_url=None, redoc_url=None)


def trivial_depends_app() -> FastAPI:
    """``GET /p`` behind a ``Depends`` that checks nothing: FastAPI's own cost of any guard."""
    app = _bare()

    async def guard(request: Request) -> str:
        return "x"

    @app.get("/p")
    async def protected(user: Annotated[str, Depends(guard)]) -> dict[str, Any]:
        return {"ok": True, "user": user}

    return app


def keyfob_open_app(fob: Any) -> FastAPI:
    """keyfob installed, ``GET /p`` with no dependency: the middleware's cost alone."""
    from keyfob.fastapi import install

    app = _bare()

    @app.get("/p")
    async def open_route() -> dict[str, Any]:
        return {"ok": True, "user": "anonymous"}

    install(app, fob)
    return app


async def _measure(out_dir: str, n: int, key: str) -> None:
    from keyfob._bench import apps, guards
    from keyfob._bench._core import Config
    from keyfob._bench._stores import Stores
    from keyfob._bench.asgi import _fob, asgi_op
    from keyfob.starlette import KeyfobMiddleware, _view, _with_headers
    from keyfob.web import RequestState, parse_cookie_header

    cfg = Config.for_mode("quick", workdir=tempfile.mkdtemp(prefix="kfcg"))
    stores = Stores(cfg)
    parts: list[tuple[str, Callable[[], Any], bool]] = []  # (name, callable, is it a coroutine function)
    try:
        fob, cookies, _store = await _fob(stores, key)
        app = apps.keyfob_app(fob, lifespan=False)
        for name, a, path, ck in (
            ("app: open endpoint, no cookie", guards.open_app(), "/p", {}),
            ("app: open endpoint, keyfob's cookies", guards.open_app(), "/p", cookies),
            ("app: trivial Depends, keyfob's cookies", trivial_depends_app(), "/p", cookies),
            ("app: keyfob middleware, open route, no cookie", keyfob_open_app(fob), "/p", {}),
            ("app: keyfob middleware, open route, cookies", keyfob_open_app(fob), "/p", cookies),
            ("app: keyfob (middleware + require_session)", app, "/p", cookies),
        ):
            op, statuses = asgi_op(a, path, ck)
            await op()
            assert statuses == [200], (name, statuses)
            parts.append((name, op, True))

        stack: Any = app.middleware_stack
        while not isinstance(stack, KeyfobMiddleware):
            stack = stack.app
        core = stack.core
        header = "; ".join(f"{k}={v}" for k, v in cookies.items())
        base = [(b"host", b"127.0.0.1:8000"), (b"user-agent", b"kfbench"), (b"accept", b"*/*")]
        scope = {"type": "http", "method": "GET", "scheme": "http", "path": "/p",
                 "headers": [*base, (b"cookie", header.encode("latin-1"))], "client": ("127.0.0.1", 50000)}
        scope0 = {**scope, "headers": base}
        view, view0 = _view(scope, core.binds), _view(scope0, core.binds)
        req, req0 = RequestState(core, view), RequestState(core, view0)
        strategy = fob._for(req.secure)
        token, refresh = strategy.cookies.read(req.cookies)
        result = await core.authenticate(req)
        req.admit(result)
        start = {"type": "http.response.start", "status": 200,
                 "headers": [(b"content-length", b"27"), (b"content-type", b"application/json")]}

        async def core_authenticate() -> None:
            await core.authenticate(req)

        async def core_authenticate_no_cookie() -> None:
            await core.authenticate(req0)

        async def strategy_authenticate() -> None:
            await strategy.authenticate(token, refresh, now=fob.clock())

        parts += [
            ("_view (no cookie)", lambda: _view(scope0, core.binds), False),
            ("_view", lambda: _view(scope, core.binds), False),
            ("  parse_cookie_header", lambda: parse_cookie_header(header), False),
            ("RequestState", lambda: RequestState(core, view), False),
            ("core.authenticate (no cookie)", core_authenticate_no_cookie, True),
            ("core.authenticate", core_authenticate, True),
            ("  cookies.read", lambda: strategy.cookies.read(req.cookies), False),
            ("  strategy.authenticate", strategy_authenticate, True),
            ("_with_headers (signed in)", lambda: _with_headers(start, req), False),
        ]
        if key == "db_sqlite":
            from keyfob.stores.sql._statements import live
            from keyfob.strategies._base import session_from_record, token_hash

            store: Any = fob.store
            h = token_hash(token or "")
            one_now, sql = store._driver.one_now, store._get_live_sql
            row = one_now(sql, (h,))
            rec = live(row)

            async def store_get_live() -> None:
                await store.get_live(h)

            parts += [
                ("    store.get_live", store_get_live, True),
                ("      the SELECT (one_now)", lambda: one_now(sql, (h,)), False),
                ("      live(row)", lambda: live(row), False),
                ("    token_hash", lambda: token_hash(token or ""), False),
                ("    session_from_record", lambda: session_from_record(rec, "database"), False),
            ]
        else:
            from keyfob.strategies._access import session_from_claims

            now = fob.clock()
            decode = strategy.codec.decode if key == "jwt" else strategy.verifier.verify
            claims = decode(token, now=now, leeway=0)
            parts += [
                ("    decrypt/verify the token", lambda: decode(token, now=now, leeway=0), False),
                ("    session_from_claims", lambda: session_from_claims(claims, key, None), False),
            ]

        async def empty() -> None:
            return None

        parts += [("(an empty coroutine)", empty, True), ("(an empty call)", lambda: None, False)]
        order = []
        for name, fn, is_async in parts:
            for _ in range(50):
                await fn() if is_async else fn()
            gc.collect()
            os.getppid()  # dump: the warm-up (discarded)
            if is_async:
                for _ in range(n):
                    await fn()
            else:
                for _ in range(n):
                    fn()
            os.getppid()  # dump: exactly this part's n calls
            order.append(name)
    finally:
        await stores.close()
    with open(os.path.join(out_dir, "parts.json"), "w") as f:
        json.dump({"n": n, "order": order, "pid": os.getpid(), "key": key}, f)


def report(out_dir: str) -> None:
    with open(os.path.join(out_dir, "parts.json")) as f:
        meta = json.load(f)
    pid, n = meta["pid"], meta["n"]
    files = dumps(out_dir, pid)
    print(f"{meta['key']}: instructions per call (the loop's own cost included: see the empty call)")
    for i, name in enumerate(meta["order"]):
        print(f"{name:48s} {total(files[2 * i + 1]) / n:10,.0f}")


if __name__ == "__main__":
    if sys.argv[1] == "--report":
        report(sys.argv[2])
    else:
        asyncio.run(_measure(sys.argv[1], int(sys.argv[2]), sys.argv[3]))

"""One Django request that loads a session, in process through Django's WSGI handler (no server, no
network): keyfob's session engine and KeyfobMiddleware against Django's own session backends.

    PYTHONPATH=src python benchmarks/django_requests.py [--rounds 9] [-n 2000]

Every case serves the same view (``request.session["n"]`` or ``request.keyfob_session``), with the
cookie of a signed-in session, on one SQLite database; medians of interleaved rounds, µs per request.
``keyfob bench`` measures req/s over a real server; this shows where the time goes in process.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

SECRET = "kf-bench-secret-0123456789abcdef0123456789abcdef0123456789ab"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("-n", type=int, default=2000)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp()
    from django.conf import settings

    import django

    settings.configure(
        SECRET_KEY="bench-" + "x" * 60, USE_TZ=True, ALLOWED_HOSTS=["*"], ROOT_URLCONF=__name__,
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3",
                               "NAME": os.path.join(tmp, "db.sqlite3")}},
        INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "django.contrib.sessions",
                        "keyfob.django"],
        MIDDLEWARE=[], KEYFOB={"SECRET": SECRET},
    )
    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from django.core.handlers.wsgi import WSGIHandler
    from django.http import HttpResponse
    from django.test import override_settings

    from django.urls import path
    from keyfob import Keyfob
    from keyfob.django._loop import home
    from keyfob.django.conf import use_fob

    def session_view(request: Any) -> HttpResponse:
        return HttpResponse(str(request.session.get("n", 0)))

    def keyfob_view(request: Any) -> HttpResponse:
        return HttpResponse("1" if request.keyfob_session is not None else "0")

    def open_view(request: Any) -> HttpResponse:
        return HttpResponse("open")

    globals()["urlpatterns"] = [path("s", session_view), path("k", keyfob_view), path("o", open_view)]

    def environ(path_: str, cookie: str) -> dict[str, Any]:
        return {"REQUEST_METHOD": "GET", "PATH_INFO": path_, "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "80",
                "HTTP_HOST": "127.0.0.1", "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(b""),
                "HTTP_COOKIE": cookie, "REMOTE_ADDR": "127.0.0.1", "wsgi.errors": sys.stderr}

    def runner(path_: str, cookie: str, middleware: list[str], **overrides: Any) -> Callable[[], None]:
        with override_settings(MIDDLEWARE=middleware, **overrides):
            handler = WSGIHandler()

        body: list[bytes] = []

        def start(status: str, headers: list[tuple[str, str]]) -> None:
            assert status.startswith("200"), status

        def call() -> None:
            body.clear()
            for chunk in handler(environ(path_, cookie), start):
                body.append(chunk)
            assert body in ([b"1"], [b"0"], [b"open"]) or body[0].isdigit()
            assert body != [b"0"], f"the session was not found ({path_}, {middleware})"

        return call

    session_mw = ["django.contrib.sessions.middleware.SessionMiddleware"]
    cases: dict[str, Callable[[], None]] = {"open (no session)": runner("/o", "", [])}

    def django_cookie(engine: str) -> str:
        from importlib import import_module

        with override_settings(SESSION_ENGINE=engine):
            store = import_module(engine).SessionStore()
            store["n"] = 1
            store["_auth_user_id"] = "1"
            store.save()
            return f"sessionid={store.session_key}"

    for label, engine in (("Django signed_cookies", "django.contrib.sessions.backends.signed_cookies"),
                          ("Django db", "django.contrib.sessions.backends.db"),
                          ("Django cached_db", "django.contrib.sessions.backends.cached_db"),
                          ("keyfob session engine", "keyfob.django.session_backend")):
        cookie = django_cookie(engine)
        with override_settings(SESSION_ENGINE=engine):
            cases[label] = runner("/s", cookie, session_mw, SESSION_ENGINE=engine)

    engines: dict[str, Keyfob] = {}
    for strategy in ("jwt", "database", "hybrid"):
        fob = Keyfob(strategy=strategy, secret=SECRET, store=f"sqlite:///{tmp}/kf-{strategy}.db")
        home.run(fob.start())
        issued = home.run(fob.create("1", {"role": "user"}, secure=False))  # http://127.0.0.1
        cookie = "; ".join(f"{c.name}={c.value}" for c in issued.cookies)
        with use_fob(fob):
            cases[f"KeyfobMiddleware {strategy}"] = runner("/k", cookie,
                                                           ["keyfob.django.middleware.KeyfobMiddleware"])
        engines[f"KeyfobMiddleware {strategy}"] = fob

    def timeit(fn: Callable[[], None], n: int) -> float:
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        return (time.perf_counter() - t0) / n * 1e6

    def measure(name: str, n: int) -> float:
        if name in engines:  # the engine KeyfobMiddleware uses, pinned for the whole batch
            with use_fob(engines[name]):
                return timeit(cases[name], n)
        return timeit(cases[name], n)

    results: dict[str, list[float]] = {k: [] for k in cases}
    for name in cases:
        measure(name, 50)
    for _ in range(args.rounds):
        for name in cases:
            results[name].append(measure(name, args.n))
    base = statistics.median(results["open (no session)"])
    db = statistics.median(results["Django db"])
    print(f"{'request':<28} {'µs':>8} {'added':>8} {'time / Django db':>20}")
    for name, values in results.items():
        m = statistics.median(values)
        print(f"{name:<28} {m:8.1f} {m - base:8.1f} {m / db:20.2f}")


if __name__ == "__main__":
    main()

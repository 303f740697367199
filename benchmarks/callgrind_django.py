"""Instructions, syscalls and PostgreSQL round trips per request of the ``django`` benchmark's apps.

Builds one server's app of ``keyfob bench --only django`` (:mod:`keyfob._bench.django_app`, the same
settings) and drives it in process through Django's WSGI handler (no gunicorn, no socket to the
client). One backend per process (Django's settings are configured once)::

    BACKEND ∈ db | cached_db | signed_cookies | keyfob_engine | keyfob_hybrid ; DB ∈ sqlite | postgres

(also ``keyfob_jwt`` and ``keyfob_database``: KeyfobMiddleware with that strategy, which the benchmark
does not serve). Only the keyfob backends install the ``keyfob.django`` app, as in the benchmark.

Around the measured requests it calls ``os.getppid()``; callgrind dumps its counters before every
``getppid``, so the second dump holds exactly the ``N`` requests::

    PYTHONPATH=$PWD/src valgrind --tool=callgrind --dump-instr=no --dump-before=getppid \\
        --callgrind-out-file=/tmp/cgd/cg.out.%p /work/main/.venv/bin/python \\
        benchmarks/callgrind_django.py run /tmp/cgd 300 keyfob_engine postgres
    PYTHONPATH=$PWD/src /work/main/.venv/bin/python benchmarks/callgrind_django.py report /tmp/cgd

Instructions miss what the kernel does (socket reads and writes, ``epoll_wait``) and what the
PostgreSQL server does. ``syscalls`` counts both ends' share without valgrind: it runs the same
requests under ``strace -f`` (between the two ``getppid`` markers): each PostgreSQL round trip is
one ``sendto`` on a connection's socket (the in-process driver has no other socket)::

    PYTHONPATH=$PWD/src /work/main/.venv/bin/python benchmarks/callgrind_django.py syscalls 2000 \\
        keyfob_engine postgres

``parts`` splits one request into its steps, each measured alone in a loop of ``N`` (same app, same
cookie): for ``keyfob_*`` the middleware's steps (``_view`` and its cookie parse, ``core.begin``,
``home.run(core.authenticate)`` and the same coroutine stepped directly without the loop, ``_attach``,
``_write``); for Django's backends ``SessionMiddleware.process_request`` plus the session read, and
``process_response``; for both the full request, ``WSGIRequest`` and an ``HttpResponse``::

    PYTHONPATH=$PWD/src valgrind --tool=callgrind --dump-instr=no --dump-before=getppid \\
        --callgrind-out-file=/tmp/cgp/cg.out.%p /work/main/.venv/bin/python \\
        benchmarks/callgrind_django.py parts /tmp/cgp 200 keyfob_hybrid sqlite

PostgreSQL must be up (``postgresql://postgres@127.0.0.1:5432/test``, or ``KFBENCH_PG``); each run
creates and drops a database of its own.
"""

from __future__ import annotations

import asyncio
import collections
import gc
import glob
import io
import json
import os
import re
import subprocess
import sys
import tempfile
from typing import Any

from _callgrind import dumps, total  # benchmarks/_callgrind.py (the script's own folder is on sys.path)

PG_URL = os.environ.get("KFBENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")


def _database(db: str, workdir: str, name: str) -> dict[str, Any]:
    if db == "sqlite":
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": os.path.join(workdir, "django.db")}
    from keyfob._bench.wsgi import _pg_database

    return {**_pg_database(PG_URL), "NAME": name}


async def _pg(sql: str) -> Any:
    import asyncpg

    conn = await asyncpg.connect(PG_URL, timeout=5)
    try:
        return await conn.fetch(sql)
    finally:
        await conn.close()


def _environ(cookie: str, path: str) -> dict[str, Any]:
    return {"REQUEST_METHOD": "GET", "PATH_INFO": path, "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "80",
            "HTTP_HOST": "127.0.0.1", "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(b""),
            "HTTP_COOKIE": cookie, "REMOTE_ADDR": "127.0.0.1", "HTTP_USER_AGENT": "kfbench",
            "wsgi.errors": sys.stderr}


class App:
    """One benchmark server's Django app, in process, with a signed-in cookie."""

    def __init__(self, backend: str, db: str) -> None:
        self.workdir = tempfile.mkdtemp(prefix="kfcgd")
        self.pg_name = f"kfcgd{os.getpid()}_django" if db == "postgres" else None
        if self.pg_name:
            asyncio.run(_pg(f'CREATE DATABASE "{self.pg_name}"'))
        self.database = _database(db, self.workdir, self.pg_name or "")
        from keyfob._bench.django_app import configure
        from keyfob._bench.wsgi import _keyfob_session, _keyfob_settings

        middleware = backend in ("keyfob_hybrid", "keyfob_jwt", "keyfob_database")
        strategy = backend.removeprefix("keyfob_") if middleware else "database"
        self.conf = {"kind": "django", "backend": backend, "database": self.database,
                     "keyfob": _keyfob_settings(strategy)}
        # as the benchmark's servers: Django's backends without the keyfob.django app (its receiver)
        configure({**self.conf, "with_keyfob": backend.startswith("keyfob")})
        from django.core.management import call_command

        call_command("migrate", verbosity=0, interactive=False)
        from django.core.handlers.wsgi import WSGIHandler

        self.handler = WSGIHandler()
        if middleware:
            cookies = asyncio.run(_keyfob_session(strategy, self.database))
            self.cookie = "; ".join(f"{k}={v}" for k, v in cookies.items())
        else:
            headers: list[tuple[str, str]] = []
            self._call("/login", "", headers)
            self.cookie = "; ".join(v.split(";", 1)[0] for k, v in headers if k.lower() == "set-cookie")

    def _call(self, path: str, cookie: str, headers: list[tuple[str, str]] | None = None) -> bytes:
        status_line: list[str] = []

        def start(status: str, hdrs: list[tuple[str, str]], exc_info: Any = None) -> None:
            status_line.append(status)
            if headers is not None:
                headers.extend(hdrs)

        body = b"".join(self.handler(_environ(cookie, path), start))
        if not status_line[0].startswith("200"):
            raise SystemExit(f"{path}: {status_line[0]} {body!r}")
        return body

    def request(self) -> None:
        body = self._call("/p", self.cookie)
        assert b'"user"' in body, body

    def close(self) -> None:
        from django.db import connections

        from keyfob.django.conf import reset

        connections.close_all()
        try:
            reset()
        except Exception as exc:
            print(f"reset: {exc}", file=sys.stderr)
        if self.pg_name:
            asyncio.run(_pg(f'DROP DATABASE IF EXISTS "{self.pg_name}" WITH (FORCE)'))


def run(out_dir: str, n: int, backend: str, db: str) -> None:
    app = App(backend, db)
    try:
        for _ in range(50):  # warm: caches, prepared statements, lazy imports
            app.request()
        gc.collect()
        os.getppid()  # dump: the warm-up (discarded)
        for _ in range(n):
            app.request()
        os.getppid()  # dump: exactly the n requests
    finally:
        app.close()
    with open(os.path.join(out_dir, f"case.{os.getpid()}.json"), "w") as f:
        json.dump({"n": n, "case": f"{backend}_{db}", "pid": os.getpid()}, f)


def report(out_dir: str) -> dict[str, float]:
    per: dict[str, float] = {}
    for meta_path in sorted(glob.glob(os.path.join(out_dir, "case.*.json"))):
        with open(meta_path) as f:
            meta = json.load(f)
        per[meta["case"]] = total(dumps(out_dir, meta["pid"])[1]) / meta["n"]
    for name, v in sorted(per.items()):
        print(f"{name:28s} {v:12,.0f} instr/request")
    for db in ("sqlite", "postgres"):
        k, d = per.get(f"keyfob_engine_{db}"), per.get(f"db_{db}")
        if k and d:
            print(f"db_{db} / keyfob_engine_{db} (instructions): {d / k:.2f}")
    return per


def syscalls(n: int, backend: str, db: str) -> None:
    """The n requests under ``strace -f``: syscalls per request, and PostgreSQL transactions."""
    if os.environ.get("_KFCGD_CHILD"):
        app = App(backend, db)
        try:
            for _ in range(50):
                app.request()
            os.getppid()
            for _ in range(n):
                app.request()
            os.getppid()
        finally:
            app.close()
        return
    trace = tempfile.mktemp(prefix="kfcgd-strace")
    env = {**os.environ, "_KFCGD_CHILD": "1"}
    subprocess.run(["strace", "-f", "-qq", "-o", trace, sys.executable, __file__, "syscalls", str(n),
                    backend, db], env=env, check=True)
    counts: collections.Counter[str] = collections.Counter()
    marks = 0
    with open(trace) as f:
        for line in f:
            m = re.match(r"\d+\s+(\w+)\(", line)
            if not m:
                continue
            name = m.group(1)
            if name == "getppid":
                marks += 1
            elif marks == 1:
                counts[name] += 1
    os.unlink(trace)
    # every request's PostgreSQL round trip is one send (sendto) on a connection's socket
    print(f"{backend}_{db}: {sum(counts.values()) / n:.2f} syscalls/request")
    for name, c in counts.most_common():
        print(f"  {name:20s} {c / n:8.2f}")


def cpu(n: int, backend: str, db: str) -> None:
    """Wall, user and system µs per request of n requests (no valgrind; moves with the machine's load)."""
    import time

    app = App(backend, db)
    try:
        for _ in range(200):
            app.request()
        t0, c0 = time.perf_counter(), os.times()
        for _ in range(n):
            app.request()
        t1, c1 = time.perf_counter(), os.times()
    finally:
        app.close()
    user = (c1.user - c0.user) / n * 1e6
    print(f"{backend}_{db}: wall {(t1 - t0) / n * 1e6:7.1f} µs, user {user:7.1f} µs, "
          f"system {(c1.system - c0.system) / n * 1e6:7.1f} µs per request")


def _parts(app: App, backend: str) -> dict[str, Any]:
    """The statements ``parts`` measures, and their namespace."""
    from django.core.handlers.wsgi import WSGIRequest
    from django.http import HttpResponse

    def env() -> dict[str, Any]:
        return _environ(app.cookie, "/p")

    ns: dict[str, Any] = {"app": app, "WSGIRequest": WSGIRequest, "HttpResponse": HttpResponse, "env": env}
    stmts = {"full request": "app.request()", "WSGIRequest": "WSGIRequest(env())",
             "HttpResponse": "HttpResponse(b'x')"}
    if backend.startswith("keyfob_"):
        from keyfob.django import middleware as m

        core = m.KeyfobMiddleware(lambda r: None).core()
        request = WSGIRequest(env())
        view = m._view(request, core.binds)
        req = core.begin(view)
        res = m.home.run(core.authenticate(req))
        req.result, req.session = res, res.session

        def stepped() -> None:  # the same coroutine, no task and no loop (what home.run adds is the rest)
            coro = core.fob.authenticate(req.cookies, secure=req.secure)
            try:
                coro.send(None)
            except StopIteration:
                return
            raise SystemExit("authenticate waited for I/O: no direct step to measure")

        ns.update(m=m, core=core, request=request, view=view, req=req, stepped=stepped)
        stmts.update({
            "_view": "m._view(request, core.binds)",
            "  cookie parse": "m.parse_joined_cookie_header(app.cookie)",
            "core.begin": "core.begin(view)",
            "home.run(core.authenticate)": "m.home.run(core.authenticate(req))",
            "  authenticate stepped directly": "stepped()",
            "_attach": "m._attach(request, req)",
            "_write (with HttpResponse)": "m._write(req, HttpResponse(b'x'))",
        })
    else:
        from django.contrib.sessions.middleware import SessionMiddleware

        smw = SessionMiddleware(lambda r: None)

        def load() -> Any:
            r = WSGIRequest(env())
            smw.process_request(r)
            r.session.get("uid")
            return r

        def load_respond() -> None:
            smw.process_response(load(), HttpResponse(b"x"))

        ns.update(load=load, load_respond=load_respond)
        stmts.update({"WSGIRequest + process_request + session read": "load()",
                      "  ... + process_response (with HttpResponse)": "load_respond()"})
    return {"ns": ns, "stmts": stmts}


def parts(out_dir: str, n: int, backend: str, db: str) -> None:
    app = App(backend, db)
    try:
        spec = _parts(app, backend)
        labels = ["(loop)", *spec["stmts"]]
        codes = [compile(f"for _i in range({n}):\n    {s}", "<part>", "exec")
                 for s in ["pass", *spec["stmts"].values()]]
        for code in codes:
            exec(code, spec["ns"])  # warm
        gc.collect()
        for code in codes:
            os.getppid()
            exec(code, spec["ns"])
            os.getppid()
    finally:
        app.close()
    counts = [total(p) for p in dumps(out_dir, os.getpid())]
    print(f"{backend}_{db}: instructions per call ({n} calls each)")
    for i, label in enumerate(labels):  # dump 2i+1 holds statement i's loop
        print(f"{counts[2 * i + 1] / n:12,.0f}  {label}")


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "run":
        run(sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5])
    elif cmd == "report":
        report(sys.argv[2])
    elif cmd == "syscalls":
        syscalls(int(sys.argv[2]), sys.argv[3], sys.argv[4])
    elif cmd == "parts":
        parts(sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5])
    elif cmd == "cpu":
        cpu(int(sys.argv[2]), sys.argv[3], sys.argv[4])
    else:
        raise SystemExit(__doc__)

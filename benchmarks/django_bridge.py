"""How much does each way from Django to keyfob's async store cost? (keyfob.django._loop's choice)

    PYTHONPATH=src python benchmarks/django_bridge.py [--pg postgresql://postgres@127.0.0.1/test]

One session load (``SessionStore(key).load()``, the per-request work of Django's
``SessionMiddleware``), measured interleaved in one process, median µs per load of N rounds:

* keyfob, sync load, SQLite: the store's synchronous lookup in the caller's thread (no hand-off);
* keyfob, sync load through the home loop (``run_coroutine_threadsafe``): what every store without a
  sync lookup pays (PostgreSQL, Redis), and SQLite writes;
* the rejected alternative: ``async_to_sync`` per call (outside ASGI it starts an event loop in a
  new thread each time; loop-bound pools such as asyncpg's cannot even survive it);
* keyfob, async ``aload`` from another event loop (``asyncio.wrap_future`` on the home loop), and
  ``sync_to_async(load)`` for comparison (what "async wrapping sync" would cost);
* Django's own ``db`` backend on the same SQLite database (Django ORM, one query).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable

SECRET = "kf-bench-secret-0123456789abcdef0123456789abcdef0123456789ab"


def setup(pg: str | None, tmp: str) -> None:
    from django.conf import settings

    import django

    databases: dict[str, dict[str, object]] = {
        "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.path.join(tmp, "db.sqlite3")}}
    if pg:
        from urllib.parse import urlsplit

        u = urlsplit(pg)
        databases["pg"] = {"ENGINE": "django.db.backends.postgresql", "NAME": u.path.lstrip("/"),
                           "USER": u.username or "", "HOST": u.hostname or "", "PORT": u.port or 5432,
                           "CONN_MAX_AGE": None}
    settings.configure(
        SECRET_KEY="bench-" + "x" * 60, USE_TZ=True, DATABASES=databases,
        INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "django.contrib.sessions",
                        "keyfob.django"],
        KEYFOB={"SECRET": SECRET}, SESSION_ENGINE="keyfob.django.session_backend",
    )
    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def timeit(fn: Callable[[], object], n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pg", default=None, help="PostgreSQL URL (adds the PostgreSQL rows)")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("-n", type=int, default=2000)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp()
    setup(args.pg, tmp)
    from asgiref.sync import async_to_sync, sync_to_async
    from django.contrib.sessions.backends.db import SessionStore as DjangoDB

    from keyfob.django._loop import home
    from keyfob.django.conf import get_fob
    from keyfob.django.session_backend import SessionStore

    def keyfob_key() -> str:
        s = SessionStore()
        s["_auth_user_id"] = "1"
        s.save()
        return str(s.session_key)

    cases: dict[str, Callable[[], object]] = {}
    sqlite_key = keyfob_key()
    fob = get_fob()
    cases["keyfob sync load, SQLite (sync lookup, no hand-off)"] = lambda: SessionStore(sqlite_key).load()

    def via_home_loop() -> object:
        store = SessionStore(sqlite_key)
        h = store._key_hash(sqlite_key)
        return home.run(fob.store.get(h))  # the lookup as every async-only store runs it

    cases["keyfob sync lookup via the home loop, SQLite"] = via_home_loop

    def via_async_to_sync() -> object:
        h = SessionStore()._key_hash(sqlite_key)
        return async_to_sync(fob.store.get)(h)

    cases["rejected: async_to_sync per call, SQLite"] = via_async_to_sync
    other_loop = asyncio.new_event_loop()
    cases["keyfob aload from another loop, SQLite"] = (
        lambda: other_loop.run_until_complete(SessionStore(sqlite_key).aload()))
    cases["sync_to_async(load) from a loop, SQLite"] = (
        lambda: other_loop.run_until_complete(sync_to_async(SessionStore(sqlite_key).load)()))
    d = DjangoDB()
    d["_auth_user_id"] = "1"
    d.save()
    dj_key = d.session_key
    cases["Django db backend load, SQLite"] = lambda: DjangoDB(dj_key).load()

    if args.pg:
        from keyfob import Keyfob
        from keyfob.stores import open_store

        pg_fob = Keyfob(secret=SECRET, store=open_store(args.pg, table_prefix=f"kfbb{os.getpid()}_"))
        home.run(pg_fob.start())
        issued = home.run(pg_fob.create("1"))
        pg_key = str(issued.access_token)
        from keyfob.django._sync_read import django_connection_reader

        read_on_django_connection = django_connection_reader("pg", f"kfbb{os.getpid()}_")
        pg_hash = SessionStore()._key_hash(pg_key)
        assert read_on_django_connection(pg_hash or b"") is not None
        cases["keyfob sync lookup on Django's connection, PostgreSQL (psycopg)"] = (
            lambda: read_on_django_connection(pg_hash or b""))

        def keyfob_pg() -> object:
            with_pg = SessionStore(pg_key)
            return home.run(pg_fob.store.get(with_pg._key_hash(pg_key)))

        cases["keyfob sync lookup via the home loop, PostgreSQL (asyncpg)"] = keyfob_pg
        cases["keyfob aload from another loop, PostgreSQL"] = (
            lambda: other_loop.run_until_complete(home.arun(pg_fob.store.get(pg_hash))))


    results: dict[str, list[float]] = {k: [] for k in cases}
    for fn in cases.values():  # warm up
        timeit(fn, 50)
    for _ in range(args.rounds):
        for name, fn in cases.items():
            n = args.n // 10 if "async_to_sync" in name else args.n
            results[name].append(timeit(fn, n))
    width = max(len(k) for k in results)
    print(f"{'path':<{width}}  median µs/load")
    for name, values in results.items():
        print(f"{name:<{width}}  {statistics.median(values):8.1f}")
    if args.pg:
        import asyncpg

        async def drop() -> None:
            conn = await asyncpg.connect(args.pg)
            for t in ("sessions", "user_versions", "revocations", "meta"):
                await conn.execute(f"DROP TABLE IF EXISTS kfbb{os.getpid()}_{t}")
            await conn.close()

        asyncio.run(drop())
    sys.stdout.flush()


if __name__ == "__main__":
    main()

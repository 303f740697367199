"""How much does each way from Django to keyfob's async store cost? (keyfob.django._loop's choice)

    PYTHONPATH=src python benchmarks/django_bridge.py [--pg postgresql://postgres@127.0.0.1/test]

One session lookup (the per-request work of Django's ``SessionMiddleware``), measured interleaved in
one process, median µs per lookup over the rounds:

* keyfob's sync load on SQLite: the store's synchronous lookup in the caller's thread, no loop at all;
* a store call on the home loop, run in the calling thread (``run_until_complete`` under a lock): what
  writes cost, and reads on stores without a sync lookup (Redis, a PostgreSQL that is not Django's);
* rejected: handing the call to a loop thread (``run_coroutine_threadsafe``, two thread wake-ups),
  and ``async_to_sync`` per call (a new loop in a new thread each time outside ASGI; loop-bound pools
  such as asyncpg's cannot survive it);
* ``aload`` from another event loop (SQLite: the in-thread lookup; PostgreSQL: the home loop run in
  a worker thread), and ``sync_to_async(load)`` for comparison;
* Django's own ``db`` backend on the same SQLite database (Django ORM, one query);
* PostgreSQL (``--pg``): the store's asyncpg lookup on the home loop, in the calling thread and from
  another loop.
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

    sqlite_hash = SessionStore()._key_hash(sqlite_key) or b""
    cases["keyfob store call on the home loop, run in the calling thread, SQLite"] = (
        lambda: home.run(fob.store.get(sqlite_hash)))  # what writes, and reads on async-only stores, cost

    import threading

    loop_thread = asyncio.new_event_loop()
    threading.Thread(target=loop_thread.run_forever, daemon=True).start()
    cases["rejected: hand-off to a loop thread (run_coroutine_threadsafe), SQLite"] = (
        lambda: asyncio.run_coroutine_threadsafe(fob.store.get(sqlite_hash), loop_thread).result())

    def via_async_to_sync() -> object:
        return async_to_sync(fob.store.get)(sqlite_hash)

    cases["rejected: async_to_sync per call, SQLite"] = via_async_to_sync
    other_loop = asyncio.new_event_loop()
    cases["keyfob aload from another loop, SQLite (in-thread lookup)"] = (
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
        pg_hash = SessionStore()._key_hash(str(issued.access_token)) or b""

        def keyfob_pg() -> object:
            return home.run(pg_fob.store.get(pg_hash))

        cases["keyfob store call on the home loop in the calling thread, PostgreSQL (asyncpg)"] = keyfob_pg
        cases["keyfob async store call from another loop (to_thread), PostgreSQL"] = (
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

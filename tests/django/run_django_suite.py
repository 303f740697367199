"""Run Django 5.2's own session backend tests against ``keyfob.django.session_backend``.

``python -m tests.django.run_django_suite --sources DIR --store KIND --out result.json``

The test classes are Django's (``sessions_tests/tests.py`` from the sdist, see ``_django_sources``),
pointed at keyfob's engine by thin subclasses: ``backend = keyfob's SessionStore`` and
``SESSION_ENGINE`` overridden. The only other adaptation: where Django's tests count or read rows
through ``Session.objects`` (the db backend's model), ``model`` is a read-only view over keyfob's
store (``count()`` is the store's row count, ``get(session_key=)`` loads through the engine).
Every test that cannot apply is skipped with the reason in ``SKIPPED``.

Runs in its own process: Django settings are process-wide.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import unittest
from typing import Any

SECRET = "kf-test-secret-0123456789abcdef0123456789abcdef0123456789ab"

#: Django test → why it does not apply to keyfob's engine.
SKIPPED: dict[str, str] = {
    "test_sessionmanager_save": (
        "Django's SessionManager.save() writes a django_session model row; keyfob's engine has no "
        "Django model (rows live in keyfob's store, keyed by the token's SHA-256)"),
}

# Django's test classes that exercise other backends (cache, cached_db, file, signed_cookies),
# Django's db model hooks (CustomDatabaseSessionTests: a custom Session model subclass), the
# abstract SessionBase (SessionBaseTests) and clearsessions on an engine without clear_expired
# (ClearSessionsCommandTests) are not run: they test no behaviour of keyfob's engine.
NOT_APPLICABLE_CLASSES = (
    "CustomDatabaseSessionTests", "CacheDBSessionTests", "CacheDBSessionWithTimeZoneTests",
    "FileSessionTests", "FileSessionPathLibTests", "CacheSessionTests", "CookieSessionTests",
    "ClearSessionsCommandTests", "SessionBaseTests", "DatabaseSessionTests (model-only tests)",
)


def configure(store: str, tmp: str) -> None:
    from django.conf import settings

    import django

    keyfob: dict[str, Any] = {"SECRET": SECRET}
    pid = os.getpid()
    if store == "postgresql":
        keyfob["STORE"] = os.environ.get("KEYFOB_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
        keyfob["STORE_OPTIONS"] = {"table_prefix": f"kfdj{pid}_"}
    elif store == "redis":
        keyfob["STORE"] = os.environ.get("KEYFOB_TEST_REDIS_DJANGO", "redis://127.0.0.1:6379/13")
        keyfob["STORE_OPTIONS"] = {"prefix": f"kfdj{pid}:"}
    # sqlite, postgresql-databases: no STORE, keyfob derives it from DATABASES["default"] (the test
    # database Django creates: a file, or a PostgreSQL database private to this process)
    databases: dict[str, Any] = {"default": {
        "ENGINE": "django.db.backends.sqlite3", "NAME": os.path.join(tmp, "db.sqlite3"),
        "TEST": {"NAME": os.path.join(tmp, "test.sqlite3")}}}
    if store == "postgresql-databases":
        from urllib.parse import urlsplit

        u = urlsplit(os.environ.get("KEYFOB_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test"))
        databases = {"default": {
            "ENGINE": "django.db.backends.postgresql", "NAME": u.path.lstrip("/"), "USER": u.username or "",
            "PASSWORD": u.password or "", "HOST": u.hostname or "", "PORT": u.port or 5432,
            "TEST": {"NAME": f"test_kfdj_{pid}"}}}
    settings.configure(
        SECRET_KEY="django-tests-" + "x" * 60,
        INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "django.contrib.sessions",
                        "keyfob.django", "sessions_tests"],
        DATABASES=databases,
        SESSION_ENGINE="keyfob.django.session_backend",
        KEYFOB=keyfob,
        USE_TZ=False,
        DEFAULT_AUTO_FIELD="django.db.models.AutoField",
        MIDDLEWARE=[],
        ROOT_URLCONF=None,
        CACHES={"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}},
    )
    django.setup()


def build_suite() -> unittest.TestSuite:
    from django.test import override_settings
    from sessions_tests import tests as dj

    from keyfob.django._loop import home
    from keyfob.django.conf import astarted_fob, started_fob
    from keyfob.django.session_backend import SessionStore

    class _Row:
        def __init__(self, key: str) -> None:
            self.session_key = key

        def __str__(self) -> str:
            return self.session_key

        def get_decoded(self) -> dict[str, Any]:
            return SessionStore(self.session_key).load()

    class _Rows:
        """``Session.objects`` as far as Django's tests read it, over keyfob's store."""

        def count(self) -> int:
            return home.run(started_fob().store.count())

        async def acount(self) -> int:
            return await home.arun((await astarted_fob()).store.count())

        def get(self, *, session_key: str) -> _Row:
            if not SessionStore().exists(session_key):
                raise LookupError(session_key)
            return _Row(session_key)

    class _Model:
        objects = _Rows()

    engine = "keyfob.django.session_backend"
    patch = {"DatabaseSession": SessionStore, "Session": _Model}

    class _Patched:
        """Point the module-level names Django's tests use (``DatabaseSession``, ``Session``) at keyfob."""

        def setUp(self) -> None:
            from unittest import mock

            for name, value in patch.items():
                p = mock.patch.object(dj, name, value)
                p.start()
                self.addCleanup(p.stop)  # type: ignore[attr-defined]
            super().setUp()  # type: ignore[misc]

    @override_settings(SESSION_ENGINE=engine)
    class KeyfobSessionTests(_Patched, dj.DatabaseSessionTests):
        backend = SessionStore
        session_engine = engine

        @property
        def model(self) -> type[_Model]:
            return _Model

        def setUp(self) -> None:
            home.run(started_fob().store.delete_expired(float("inf")))  # every test starts on an empty store
            super().setUp()

    @override_settings(SESSION_ENGINE=engine, USE_TZ=True)
    class KeyfobSessionWithTimeZoneTests(KeyfobSessionTests):
        pass

    @override_settings(SESSION_ENGINE=engine)
    class KeyfobSessionMiddlewareTests(_Patched, dj.SessionMiddlewareTests):
        pass

    for cls in (KeyfobSessionTests, KeyfobSessionWithTimeZoneTests):
        for name, why in SKIPPED.items():
            setattr(cls, name, unittest.skip(why)(lambda self: None))
    loader = unittest.TestLoader()
    suite = unittest.TestSuite()
    for cls in (KeyfobSessionTests, KeyfobSessionWithTimeZoneTests, KeyfobSessionMiddlewareTests):
        suite.addTests(loader.loadTestsFromTestCase(cls))
    return suite


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sources", required=True)
    ap.add_argument("--store", default="sqlite", 
                    choices=["sqlite", "postgresql", "postgresql-databases", "redis"])
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    sys.path.insert(0, args.sources)
    with tempfile.TemporaryDirectory() as tmp:
        configure(args.store, tmp)
        from django.test.utils import get_runner

        from keyfob.django._loop import home
        from keyfob.django.conf import get_fob, reset, sync_get

        runner = get_runner(__import__("django.conf").conf.settings)(verbosity=1, interactive=False)
        runner.setup_test_environment()
        old = runner.setup_databases()
        try:
            result = runner.run_suite(build_suite())
            reader = sync_get()
            sync_read = None if reader is None else getattr(reader, "__qualname__", repr(reader))
        finally:
            if args.store in ("postgresql", "redis"):
                _drop(args.store, get_fob())
            reset()
            home.stop()
            runner.teardown_databases(old)
            runner.teardown_test_environment()
    out = {
        "run": result.testsRun,
        "failures": [f"{t.id()}: {tb}" for t, tb in result.failures],
        "errors": [f"{t.id()}: {tb}" for t, tb in result.errors],
        "skipped": [f"{t.id()}: {why}" for t, why in result.skipped],
        "not_applicable_classes": list(NOT_APPLICABLE_CLASSES),
        "sync_read": sync_read,
    }
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
    return 0 if result.wasSuccessful() else 1


def _drop(store: str, fob: Any) -> None:
    """Remove this process's private tables / keys from the shared server."""
    from keyfob.django._loop import home

    pid = os.getpid()

    async def drop() -> None:
        if store == "postgresql":
            import asyncpg

            conn = await asyncpg.connect(fob.settings.store)
            try:
                tables = ("sessions", "user_versions", "revocations", "meta")
                names = ", ".join(f"kfdj{pid}_{t}" for t in tables)
                await conn.execute(f"DROP TABLE IF EXISTS {names}")
            finally:
                await conn.close()
        elif store == "redis":
            import redis.asyncio as aioredis

            client = aioredis.Redis.from_url(fob.settings.store)
            try:
                keys = [k async for k in client.scan_iter(match=f"kfdj{pid}:*", count=1000)]
                if keys:
                    await client.delete(*keys)
            finally:
                await client.aclose()

    home.run(drop())


if __name__ == "__main__":
    sys.exit(main())

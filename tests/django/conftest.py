"""Django, configured once for this process from ``tests.django.settings``, with migrated tables.

Each test starts on an empty keyfob store and no users; ``keyfob_settings(**changes)`` overrides
``settings.KEYFOB`` for one test (the engine is rebuilt on the change).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

import pytest
from django.conf import settings

import django

if not settings.configured:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.django.settings")
    django.setup()

from django.core.management import call_command
from django.test import override_settings

from keyfob import Keyfob
from keyfob.django._loop import home
from keyfob.django.conf import reset, started_fob
from tests.conftest import PG_URL, SECRET, require_postgres, require_redis

#: Redis db 15 is FLUSHDB'd by other suites' store fixtures at any moment: these tests use db 13, under a
#: key prefix private to this process, and delete only their own keys.
REDIS_DJANGO_URL = os.environ.get("KEYFOB_TEST_REDIS_DJANGO", "redis://127.0.0.1:6379/13")


@pytest.fixture(scope="session")
def _migrated() -> Iterator[None]:
    call_command("migrate", verbosity=0)
    yield
    _drop_private_tables()


def _drop_private_tables() -> None:
    """Remove this process's PostgreSQL tables and Redis keys (if the run used those stores)."""
    import asyncio

    from tests.conftest import port_open
    from tests.contract.conftest import delete_redis_keys, drop_postgres_tables

    pid = os.getpid()

    async def drop() -> None:
        if port_open("127.0.0.1", 5432):
            await drop_postgres_tables(f"kfdjt{pid}_")
        if port_open("127.0.0.1", 6379):
            await delete_redis_keys(f"kfdjt{pid}:", REDIS_DJANGO_URL)

    reset()
    asyncio.run(drop())


STORES = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
    pytest.param("redis", id="redis", marks=pytest.mark.redis),
]


@pytest.fixture
def django_store(request: pytest.FixtureRequest) -> str:
    """Which store keyfob's engine uses: ``sqlite`` (derived from DATABASES) unless parametrized."""
    return str(getattr(request, "param", "sqlite"))


def _store_keys(kind: str) -> dict[str, Any]:
    pid = os.getpid()
    if kind == "postgresql":
        require_postgres()
        return {"STORE": PG_URL, "STORE_OPTIONS": {"table_prefix": f"kfdjt{pid}_"}}
    if kind == "redis":
        require_redis()
        return {"STORE": REDIS_DJANGO_URL, "STORE_OPTIONS": {"prefix": f"kfdjt{pid}:"}}
    return {}


@pytest.fixture
def fob(_migrated: None, django_store: str) -> Iterator[Keyfob]:
    """The engine Django uses, on an empty store of ``django_store``'s kind, with no Django users."""
    from django.contrib.auth import get_user_model

    get_user_model().objects.all().delete()
    with override_settings(KEYFOB={"SECRET": SECRET, **_store_keys(django_store)}):
        engine = started_fob()
        home.run(engine.store.delete_expired(float("inf")))
        yield engine
        home.run(started_fob().store.delete_expired(float("inf")))
    reset()


KeyfobSettings = Callable[..., AbstractContextManager[Any]]


@pytest.fixture
def keyfob_settings(fob: Keyfob) -> KeyfobSettings:
    """``with keyfob_settings(IDLE_TIMEOUT=60): ...``: more KEYFOB keys on the same store."""

    def change(**keys: Any) -> AbstractContextManager[Any]:
        return override_settings(KEYFOB={**settings.KEYFOB, **{k.upper(): v for k, v in keys.items()}})

    return change

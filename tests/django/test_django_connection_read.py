"""The session engine's per-request read on Django's own PostgreSQL connection (keyfob.django._django_db).

These tests add a PostgreSQL alias of their own to Django's connections (the project's default
database is SQLite here), pointing at the database the keyfob store uses.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.db import connections

from keyfob import Keyfob, StoreUnavailable
from keyfob.django._django_db import django_connection_get
from keyfob.django._loop import home
from keyfob.stores import open_store
from keyfob.stores.sql import SQLStore
from keyfob.strategies._base import token_hash
from tests.conftest import PG_URL, SECRET, require_postgres

pytestmark = pytest.mark.postgres
ALIAS = "kf_read_pg"


def _alias(conn_max_age: int | None) -> None:
    u = urlsplit(PG_URL)
    conf = {"ENGINE": "django.db.backends.postgresql", "NAME": u.path.lstrip("/"), "USER": u.username or "",
            "PASSWORD": u.password or "", "HOST": u.hostname or "", "PORT": u.port or 5432,
            "CONN_MAX_AGE": conn_max_age}
    _add(conf)


def _add(conf: dict[str, Any]) -> None:
    if ALIAS in connections.settings:  # a new wrapper for the new settings
        connections[ALIAS].close()
        del connections[ALIAS]
    # Django's defaults filled in (configure_settings wants a 'default' alias: this one stands in)
    connections.settings[ALIAS] = connections.configure_settings({"default": conf})["default"]


@pytest.fixture
def fob() -> Iterator[Keyfob]:
    require_postgres()
    prefix = f"kfdjr{os.getpid()}_"
    engine = Keyfob(strategy="database", secret=SECRET, store=open_store(PG_URL, table_prefix=prefix))
    home.run(engine.start())
    _alias(None)
    try:
        yield engine
    finally:
        if ALIAS in connections.settings:
            connections[ALIAS].close()
            del connections[ALIAS]
            del connections.settings[ALIAS]
        home.run(engine.close())
        from tests.contract.conftest import drop_postgres_tables

        asyncio.run(drop_postgres_tables(prefix))


def _session(fob: Keyfob) -> bytes:
    issued = home.run(fob.create("u1", {"n": 1}))
    assert issued.access_token is not None
    return token_hash(str(issued.access_token))


def test_the_read_runs_on_djangos_connection_not_the_stores_pool(fob: Keyfob) -> None:
    h = _session(fob)
    get = django_connection_get(fob.store, ALIAS)
    assert get is not None
    expected = home.run(fob.store.get(h))
    home.run(fob.store.close())  # the store's pool is gone: only Django's connection can answer
    assert get(h) == expected
    assert get(b"\0" * 32) is None
    assert connections[ALIAS].connection is not None


def test_a_broken_django_connection_hands_the_read_to_the_stores_pool(fob: Keyfob) -> None:
    h = _session(fob)
    get = django_connection_get(fob.store, ALIAS)
    assert get is not None
    assert get(h) is not None
    connections[ALIAS].connection.close()  # a server restart, as Django's connection sees it
    rec = get(h)
    assert rec is not None and rec.user_id == "u1"
    assert connections[ALIAS].errors_occurred  # Django closes it at the end of the request


def test_with_both_ways_down_the_read_fails_closed(fob: Keyfob) -> None:
    h = _session(fob)
    get = django_connection_get(fob.store, ALIAS)
    assert get is not None
    assert get(h) is not None
    connections[ALIAS].connection.close()
    home.run(fob.store.close())
    with pytest.raises(StoreUnavailable):
        get(h)


def test_a_non_persistent_closed_connection_is_not_opened_for_the_read(fob: Keyfob) -> None:
    h = _session(fob)
    _alias(0)  # CONN_MAX_AGE = 0: a connection per request; the store's pool answers instead
    get = django_connection_get(fob.store, ALIAS)
    assert get is not None
    assert get(h) is not None
    assert connections[ALIAS].connection is None


def test_no_django_read_where_it_could_differ(fob: Keyfob, tmp_path: Any) -> None:
    sqlite_store = open_store(f"sqlite:///{tmp_path / 'kf.db'}")
    assert django_connection_get(sqlite_store) is None  # SQLite has its own plain lookup
    assert django_connection_get(fob.store, "default") is None  # Django's default here is SQLite
    authjs = open_store(PG_URL, authjs_compat=True, table_prefix=f"kfdjr{os.getpid()}_")
    # its get is its own (Auth.js tables): the home loop reads
    assert isinstance(authjs, SQLStore) and authjs.get_statement() is None
    u = urlsplit(PG_URL)
    conf = {"ENGINE": "django.db.backends.postgresql", "NAME": u.path.lstrip("/"), "USER": u.username or "",
            "HOST": u.hostname or "", "PORT": u.port or 5432, "OPTIONS": {"options": "-c search_path=other"}}
    _add(conf)
    assert django_connection_get(fob.store, ALIAS) is None  # another search_path: not the same tables

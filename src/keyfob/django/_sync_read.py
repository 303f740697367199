"""The per-request lookup without a thread hand-off, where one exists.

``SessionStore.load`` (every request with a session cookie) needs one row by token hash. Handing
that to the home event loop costs two thread wake-ups; on a loaded 2-core machine that is
~200 µs, more than the query itself (``benchmarks/django_bridge.py``). So the sync path reads in
the caller's thread when it can:

* **SQLite**: the store's own ``get_sync`` (a primary-key lookup on its held connection);
* **PostgreSQL that is Django's default database** (the default store): the same ``SELECT`` on
  Django's own connection for this thread (psycopg, opened by Django for the request anyway);
* anything else (another PostgreSQL, Redis, memory): the home loop.

Writes (save, touch, delete) always go to the store through the home loop, so locking, limits and
events stay in one place. The reader follows keyfob's SQL schema (``keyfob.stores._schema``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ..engine import Keyfob
from ..stores import SessionRecord
from ..stores._schema import make_tables

__all__ = ["SyncGet", "sync_reader"]

SyncGet = Callable[[bytes], SessionRecord | None]


def _record(names: list[str], row: Any) -> SessionRecord:
    values = dict(zip(names, row, strict=True))
    data = values.get("data")
    values["data"] = json.loads(data) if data and data != "{}" else {}
    token_hash = values["token_hash"]
    if not isinstance(token_hash, bytes):
        values["token_hash"] = bytes(token_hash)
    return SessionRecord(**values)


def django_connection_reader(alias: str, table_prefix: str) -> SyncGet:
    """``get(token_hash)`` as one query on Django's connection ``alias`` (its thread's own)."""
    from django.db import connections

    sessions = make_tables(table_prefix).sessions
    names = [c.name for c in sessions.columns]
    quote = connections[alias].ops.quote_name
    sql = (f"SELECT {', '.join(quote(n) for n in names)} FROM {quote(sessions.name)} "
           f"WHERE {quote('token_hash')} = %s")

    def get(token_hash: bytes) -> SessionRecord | None:
        with connections[alias].cursor() as cursor:
            cursor.execute(sql, [token_hash])
            row = cursor.fetchone()
        return None if row is None else _record(names, row)

    return get


def sync_reader(fob: Keyfob, *, default_db_url: str | None, store_options: dict[str, Any]) -> SyncGet | None:
    """The thread-local lookup for ``fob``'s store, or None (use the home loop)."""
    get_sync: SyncGet | None = getattr(fob.store, "get_sync", None)
    if get_sync is not None:
        return get_sync
    url = fob.settings.store
    if default_db_url is None or not url.startswith(("postgresql", "postgres")):
        return None
    if url.split("?", 1)[0] != default_db_url or getattr(fob.store, "stores_raw_tokens", False):
        return None
    prefix = store_options.get("table_prefix") or parse_qs(urlsplit(url).query).get("table_prefix", [None])[0]
    return django_connection_reader("default", str(prefix or "keyfob_"))

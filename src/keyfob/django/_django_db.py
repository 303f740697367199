"""The session engine's per-request read on Django's own PostgreSQL connection.

When keyfob's store is the project's default database (``KEYFOB`` names no ``STORE``: the store is
derived from ``DATABASES``), the row ``SessionStore.load()`` reads is in the database Django is
already connected to. Reading it there, with a plain blocking ``SELECT`` on Django's connection,
skips the home loop that the store's asyncpg pool needs: a sync call into the loop costs ~80k CPU
instructions before any I/O (``run_until_complete``: a task, the loop's start and stop, selector
rounds), the asyncpg lookup through it ~250k (~280k with the catch-up of a store with a feed),
this read ~65k with the row codec. In ``keyfob bench``'s gunicorn worker that is ~1,385k → ~1,167k
instructions a request, against ~2,421k for Django's ``db`` backend (``django_keyfob_vs_db_postgres``
by instructions 1.75 → 2.07; ``benchmarks/callgrind_django.py``). One PostgreSQL round trip a
request either way.

Only where it costs nothing and changes nothing:

* psycopg 3 only (psycopg2 returns ``memoryview`` for ``bytea``: the store's own pool answers);
* not under ``DATABASES["default"]["OPTIONS"]["options"]`` (it may set a ``search_path`` the
  store's own connections do not have);
* Django's connection is used when it is open, or when it is persistent (``CONN_MAX_AGE`` is not
  0). With ``CONN_MAX_AGE = 0`` a closed connection is not opened for the read (that would be a
  new PostgreSQL connection each request): the store's pool answers;
* the statement is one unnamed ``SELECT`` (no prepared statement: PgBouncer-safe, as Django's own
  queries are), sent with libpq's ``PQexecParams`` on Django's psycopg connection under its lock,
  the row loaded by psycopg's adapters (``psycopg.pq``, ``psycopg.adapt.Transformer``). Measured
  against a psycopg cursor on the same connection: 30k instructions against 80k a lookup (a
  cursor's ``execute`` and ``fetchone`` are Python code), 4% of the gunicorn worker's request, the
  difference between 1.97 and 2.07 on ``django_keyfob_vs_db_postgres`` by instructions;
* any database error on Django's connection (a restarted server, a transaction the view left
  aborted) hands the read to the store's own pool, which retries on a fresh connection or raises
  ``StoreUnavailable`` (fail closed: 503 under the middleware); Django closes its broken connection
  at the end of the request, as for any error (``wrap_database_errors``).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from typing import Any

from ..stores import SessionRecord, SessionStore
from ._loop import home
from .conf import SyncGet

__all__ = ["django_connection_get"]


def django_connection_get(store: SessionStore, alias: str = "default") -> SyncGet | None:
    """The store's lookup on Django's connection ``alias``, or None when that is not possible here."""
    statement = getattr(store, "get_statement", None)
    found: tuple[str, Callable[[Sequence[Any]], SessionRecord]] | None = (
        statement() if statement is not None else None)
    if found is None:
        return None
    from django.db import DatabaseError, connections

    wrapper = connections[alias]
    if wrapper.vendor != "postgresql" or "options" in (wrapper.settings_dict.get("OPTIONS") or {}):
        return None
    from django.db.backends.postgresql.psycopg_any import is_psycopg3

    if not is_psycopg3:
        return None
    import psycopg
    from psycopg import pq
    from psycopg.adapt import Transformer

    sql, to_record = found
    query = sql.encode()
    tuples_ok = pq.ExecStatus.TUPLES_OK
    persistent = wrapper.settings_dict.get("CONN_MAX_AGE", 0) != 0
    # the row loader of each psycopg connection (its adapters: bytea → bytes, float8 → float...)
    loaders: weakref.WeakKeyDictionary[psycopg.Connection[Any], Any] = weakref.WeakKeyDictionary()

    def get(token_hash: bytes) -> SessionRecord | None:
        db = connections[alias]
        if db.connection is None and not persistent:
            return home.run(store.get(token_hash))
        try:
            with db.wrap_database_errors:
                if db.connection is None:
                    db.ensure_connection()
                raw: psycopg.Connection[Any] = db.connection
                tx = loaders.get(raw)
                if tx is None:
                    tx = loaders[raw] = Transformer(raw)
                with raw.lock:  # as psycopg's cursors do: one statement at a time on a connection
                    res = raw.pgconn.exec_params(query, [token_hash], None, [1], 1)  # binary in and out
                if res.status != tuples_ok:
                    raise psycopg.OperationalError(
                        res.error_message.decode("utf-8", "replace") or f"the lookup returned {res.status!r}")
                if not res.ntuples:
                    return None
                tx.set_pgresult(res)
                row = tx.load_row(0, tuple)
        except DatabaseError:
            return home.run(store.get(token_hash))  # the store's own pool: a fresh connection, or 503
        return None if row is None else to_record(row)

    return get

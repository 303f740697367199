"""SQL session stores: SQLite (the embedded default) and PostgreSQL, one backend per module.

```python
store = open_store("sqlite:///keyfob.db")                                   # also sqlite+aiosqlite:///
store = open_store("postgresql://postgres@127.0.0.1/app?table_prefix=app1_&pool_size=4")
store = open_store("postgresql://…@pgbouncer:6432/app?pgbouncer=1&listen_url=postgresql://…@db:5432/app")
store = open_store("postgresql://…/app", authjs_compat=True)               # Auth.js's sessions table
await store.migrate()
```

Modules (like Django's ``contrib/sessions/backends``):

* :mod:`._statements` — every statement, rendered once per dialect by SQLAlchemy Core, and the
  row codec; :mod:`keyfob.stores._schema` holds the tables and the migration steps.
* :mod:`.sqlite` — the SQLite driver: one held stdlib ``sqlite3`` connection, in the event loop.
* :mod:`.postgres` — the PostgreSQL driver: asyncpg connections from a pool of our own.
* :mod:`.store` — :class:`SQLStore`, keyfob's schema over either driver.
* :mod:`.authjs` — :class:`AuthjsSQLStore`, Auth.js's ``sessions`` table.
* :mod:`.feed` — :class:`PostgresFeed`, LISTEN/NOTIFY with one listener per process.
* :mod:`._options` — the URL options (``?table_prefix=``, ``?pool_size=``, ``?pgbouncer=``,
  ``?listen_url=``, ``?busy_timeout=``) and their ConfigErrors.

Why SQLAlchemy only for the schema
----------------------------------
The store is read on every request of the ``database`` strategy, so its ``get`` is measured
against the raw drivers (``docs/BASELINES``): a stdlib ``sqlite3`` SHA-256 + primary-key lookup
costs ≈13 µs, an ``asyncpg`` ``fetchrow`` on a held connection ≈110 µs, while the same lookup
through SQLAlchemy's async ORM/Core costs 240-650 µs. So SQLAlchemy renders the DDL and every
statement once per dialect into a plain SQL string, and nothing from SQLAlchemy runs per call.

Every driver or OS error becomes :class:`~keyfob.StoreUnavailable` (``from`` the driver error).
"""

from __future__ import annotations

from .._schema import SCHEMA_VERSION
from .authjs import AuthjsSQLStore
from .feed import CHANNEL, PostgresFeed, channel_for
from .store import SQLStore

__all__ = ["CHANNEL", "SCHEMA_VERSION", "AuthjsSQLStore", "PostgresFeed", "SQLStore", "channel_for"]


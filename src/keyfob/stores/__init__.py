"""Layer 2: session storage. One protocol, thin adapters chosen by URL; no driver imported here.

```python
store = open_store("sqlite:///keyfob.db")      # embedded default
store = open_store("postgresql://127.0.0.1/test?table_prefix=app1_&pool_size=4")
store = open_store("redis://127.0.0.1:6379/0?prefix=myapp")
store = open_store("redis+cluster://10.0.0.1:6379,10.0.0.2:6379")   # Redis Cluster seed nodes
store = open_store("memory://")                 # tests and demos
```

Each store has a namespace (``?table_prefix=`` on SQL, ``?prefix=`` on Redis and memory) and
``store.feed()`` gives the revocation feed that matches it; see ``keyfob.stores.sql`` for the SQL
options (``pool_size``, ``pgbouncer``, ``listen_url``).
"""

from __future__ import annotations

import importlib
from typing import Any

from ..errors import ConfigError
from ._protocol import ChangePage, FeedHandler, LiveRow, RevocationFeed, SessionRecord, SessionStore

__all__ = [
    "ChangePage",
    "FeedHandler",
    "LiveRow",
    "RevocationFeed",
    "SessionRecord",
    "SessionStore",
    "open_feed",
    "open_store",
]

_STORES: dict[str, tuple[str, str]] = {
    "memory": ("keyfob.stores.memory:MemoryStore", ""),
    "sqlite": ("keyfob.stores.sql:SQLStore", ""),
    "sqlite+aiosqlite": ("keyfob.stores.sql:SQLStore", ""),
    "postgresql": ("keyfob.stores.sql:SQLStore", "postgres"),
    "postgresql+asyncpg": ("keyfob.stores.sql:SQLStore", "postgres"),
    "postgres": ("keyfob.stores.sql:SQLStore", "postgres"),
    "redis": ("keyfob.stores.redis:RedisStore", "redis"),
    "rediss": ("keyfob.stores.redis:RedisStore", "redis"),
    "redis+cluster": ("keyfob.stores.redis:RedisStore", "redis"),
    "rediss+cluster": ("keyfob.stores.redis:RedisStore", "redis"),
}

#: ``open_store(url, authjs_compat=True)``: Auth.js's own sessions table (SQL URLs only)
_AUTHJS_STORES: dict[str, tuple[str, str]] = {
    scheme: ("keyfob.stores.sql:AuthjsSQLStore", extra)
    for scheme, (target, extra) in _STORES.items()
    if target.startswith("keyfob.stores.sql:")
}

_FEEDS: dict[str, tuple[str, str]] = {
    "memory": ("keyfob.stores.memory:MemoryFeed", ""),
    "postgresql": ("keyfob.stores.sql:PostgresFeed", "postgres"),
    "postgresql+asyncpg": ("keyfob.stores.sql:PostgresFeed", "postgres"),
    "postgres": ("keyfob.stores.sql:PostgresFeed", "postgres"),
    "redis": ("keyfob.stores.redis:RedisFeed", "redis"),
    "rediss": ("keyfob.stores.redis:RedisFeed", "redis"),
    "redis+cluster": ("keyfob.stores.redis:RedisFeed", "redis"),
    "rediss+cluster": ("keyfob.stores.redis:RedisFeed", "redis"),
}


def _load(table: dict[str, tuple[str, str]], url: str, what: str) -> Any:
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme not in table:
        raise ConfigError(
            f"no {what} for URL scheme {scheme!r}",
            hint=f"use one of: {', '.join(sorted(table))} (e.g. sqlite:///keyfob.db)",
        )
    target, extra = table[scheme]
    module_name, cls_name = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        if not extra:
            raise
        raise ConfigError(
            f"the {scheme} {what} needs a driver that is not installed ({exc.name})",
            hint=f"pip install 'keyfob[{extra}]'",
        ) from exc
    return getattr(module, cls_name)


def open_store(url: str, *, authjs_compat: bool = False, **options: Any) -> SessionStore:
    """Open the store a URL names (lazily importing its driver). Call ``await store.migrate()`` once.

    ``authjs_compat=True`` (SQL URLs) opens Auth.js's own ``sessions`` table instead of keyfob's
    (:class:`keyfob.stores.sql.AuthjsSQLStore`). Options the store does not know raise ConfigError.
    """
    if authjs_compat:
        scheme = url.split("://", 1)[0].lower() if "://" in url else ""
        if scheme not in _AUTHJS_STORES:
            raise ConfigError(
                f"authjs_compat needs a SQL store, not {scheme!r}",
                hint="use a sqlite:/// or postgresql:// store URL, or drop authjs_compat",
            )
        cls = _load(_AUTHJS_STORES, url, "store")
    else:
        cls = _load(_STORES, url, "store")
    store: SessionStore = cls(url, **options)
    return store


def open_feed(url: str, **options: Any) -> RevocationFeed | None:
    """The revocation feed that goes with a store URL, or None where the store has none (SQLite)."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme not in _FEEDS:
        return None
    cls = _load(_FEEDS, url, "revocation feed")
    feed: RevocationFeed = cls(url, **options)
    return feed

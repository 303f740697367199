"""Redis session store and revocation feed, on one Redis server or a Redis Cluster (``redis.asyncio``).

```python
open_store("redis://127.0.0.1:6379/0?prefix=myapp")              # one server, namespace "myapp"
open_store("redis+cluster://10.0.0.1:6379,10.0.0.2:6379?prefix=myapp")  # a Cluster (seed nodes)
```

One concern per module: ``_url`` (URLs, namespaces, the feed channel), ``_keys`` (the key layout:
which key lives in which Cluster slot), ``_lua`` (the atomic scripts), ``_client`` (the redis-py
client, error translation, the persistence warning), ``_store`` (:class:`RedisStore`), ``_feed``
(:class:`RedisFeed`).
"""

from __future__ import annotations

from ._feed import RedisFeed
from ._lua import LIVENESS_LUA
from ._store import RedisStore

__all__ = ["LIVENESS_LUA", "RedisFeed", "RedisStore"]

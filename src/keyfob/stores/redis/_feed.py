"""``RedisFeed``: the revocation feed over Redis pub/sub, on one server or a Redis Cluster.

The channel derives from the store's namespace and database (``RedisTarget.channel``:
``<prefix>feed:db<n>``), because pub/sub ignores db numbers: two apps on one Redis — different
prefixes, or different db numbers — never hear each other.

On a Cluster the feed uses **sharded** pub/sub (``SPUBLISH`` / ``SSUBSCRIBE``, Redis ≥ 7.0): a
message goes only to the master that owns the channel's slot (and its replicas), where every
listener of that namespace is subscribed. Classic ``PUBLISH`` on a Cluster is broadcast over the
cluster bus to *every* node, so its cost grows with the cluster, not with the listeners; the
measurement is in docs/SCALING.md. When the slot moves (reshard) the server ends the subscription
(``sunsubscribe``) and the listener reconnects to the new owner; when the master dies the
connection drops and the listener reconnects once the replica is promoted. Either way the engine
is told (``on_state(False)``) and resyncs, so nothing published meanwhile is lost.

The listener reads with ``get_message(timeout=health_interval)`` and PINGs when a read heard
nothing; two more reads without an answer drop the line, so a dead connection is noticed within
about ``3 * health_interval`` (≈1 s) of the loop running. Silence is counted in reads, not wall
time: a loop that does not run between requests (Flask's, Django's private one) has not been
waiting for the reply meanwhile, so an idle worker's gaps are not a silent line. A silent
reconnect inside redis-py is reported as a drop too, because events may have been missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisClusterException, RedisError

from ...errors import StoreUnavailable
from .._feedloop import ReconnectingFeed, deliver
from .._protocol import FeedHandler
from ._client import connect
from ._url import parse_redis_url

__all__ = ["RedisFeed"]


class RedisFeed(ReconnectingFeed):
    """:class:`~keyfob.stores.RevocationFeed` over Redis pub/sub (sharded pub/sub on a Cluster).

    ``url`` is the store's URL (its ``?prefix=`` and db pick the channel); ``prefix`` overrides the
    URL's, ``channel`` overrides the derived name. ``sharded`` (Cluster only; default True) picks
    SPUBLISH/SSUBSCRIBE over PUBLISH/SUBSCRIBE.
    """

    _task_name = "keyfob-redis-feed"

    def __init__(self, url: str, *, channel: str | None = None, prefix: str | None = None,
                 sharded: bool | None = None, health_interval: float = 0.3,
                 connect_timeout: float = 2.0) -> None:  # fmt: skip
        super().__init__()
        self.target = parse_redis_url(url, prefix=prefix)
        self.channel = channel or self.target.channel
        self.sharded = self.target.cluster if sharded is None else (sharded and self.target.cluster)
        self._health = health_interval
        self._connect_timeout = connect_timeout
        self._pub = connect(self.target, socket_timeout=5.0, connect_timeout=connect_timeout)
        self._reconnected = False
        self._attempt = 0

    async def publish(self, event: Mapping[str, Any]) -> None:
        payload = json.dumps(event, separators=(",", ":"))
        try:
            if isinstance(self._pub, RedisCluster) and self._pub._initialize:
                await self._pub.initialize()  # see RedisStore._errors: redis-py routes before it initializes
            if self.sharded:
                await self._pub.spublish(self.channel, payload)
            else:
                await self._pub.publish(self.channel, payload)
        except (RedisError, RedisClusterException, OSError) as exc:
            raise StoreUnavailable(f"cannot publish to Redis: {type(exc).__name__}: {exc}") from exc

    async def _on_connect(self, _conn: Any) -> None:
        self._reconnected = True

    async def _subscriber(self) -> aioredis.Redis:
        """A plain connection to the node to listen on (the channel's owner when sharded)."""
        if not isinstance(self._pub, RedisCluster):
            return aioredis.Redis.from_url(self.target.url, socket_connect_timeout=self._connect_timeout,
                                           socket_timeout=5.0, retry=Retry(NoBackoff(), 0))
        cluster = self._pub
        if self._attempt:  # after a drop the slot map may be stale (failover, reshard): re-read it
            await cluster.nodes_manager.initialize()
        else:
            await cluster.initialize()
        node = cluster.get_node_from_key(self.channel) if self.sharded else None
        if node is None:  # classic pub/sub: any master will do; rotate through them on reconnects
            primaries = cluster.get_primaries()
            node = primaries[self._attempt % len(primaries)]
        return aioredis.Redis(host=node.host, port=int(node.port), username=self.target.username,
                              password=self.target.password, ssl=self.target.tls,
                              socket_connect_timeout=self._connect_timeout, socket_timeout=5.0,
                              retry=Retry(NoBackoff(), 0))

    async def _listen(self, handler: FeedHandler, subscribed: Callable[[], Awaitable[None]]) -> None:
        loop = asyncio.get_running_loop()
        self._attempt += 1
        client = await self._subscriber()
        pubsub = client.pubsub()
        try:
            if isinstance(self._pub, RedisCluster) and self._pub._initialize:
                await self._pub.initialize()  # see RedisStore._errors: redis-py routes before it initializes
            if self.sharded:
                await pubsub.ssubscribe(self.channel)
            else:
                await pubsub.subscribe(self.channel)
            if pubsub.connection is not None:
                pubsub.connection.register_connect_callback(self._on_connect)
            self._reconnected = False
            await subscribed()
            # Silence is counted in reads that heard nothing, not in wall time: a loop that is not
            # running (Flask's runs only during requests) has had no chance to read the reply.
            quiet = 0
            while not self._closing:
                started = loop.time()
                msg = await pubsub.get_message(timeout=self._health)
                if self._reconnected:
                    raise ConnectionError("redis-py reconnected under us; events may be lost")
                if msg is not None:
                    quiet = 0
                    kind = msg.get("type")
                    if kind in ("message", "smessage"):
                        deliver(handler, msg["data"])
                    elif kind == "sunsubscribe":  # the channel's slot moved to another master
                        raise ConnectionError("the sharded channel moved (reshard or failover)")
                elif loop.time() - started >= self._health / 2:  # a whole read timed out (no spurious None)
                    quiet += 1
                    if quiet >= 3:  # the PING sent after the first has gone unanswered for two more reads
                        raise ConnectionError("no answer to PING")
                    if quiet == 1:
                        await pubsub.ping()
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(pubsub.aclose(), 1)  # type: ignore[no-untyped-call]
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.aclose(), 1)

    async def _close_publisher(self) -> None:
        with contextlib.suppress(Exception):
            await self._pub.aclose()

"""The redis-py client for a target (standalone ``Redis`` or ``RedisCluster``) and error translation.

Connection errors become :class:`~keyfob.StoreUnavailable` (503: retry later). Errors that only a
misconfiguration produces — a plain ``redis://`` URL pointed at a Cluster node (``MOVED``, "non
local key"), ``redis+cluster://`` at a server without cluster support, ``CROSSSLOT`` — become
:class:`~keyfob.ConfigError` naming the setting to change: retrying would never help.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.exceptions import (
    ClusterCrossSlotError,
    MovedError,
    RedisClusterException,
    RedisError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ...errors import ConfigError, KeyfobError, StoreUnavailable
from ._url import RedisTarget

__all__ = ["Client", "connect", "translate_errors", "warn_if_not_persistent"]

log = logging.getLogger("keyfob.stores.redis")

Client = aioredis.Redis | RedisCluster

_WARNED: set[str] = set()


def connect(target: RedisTarget, *, socket_timeout: float, connect_timeout: float) -> Client:
    """A client for ``target``; nothing is sent until the first command."""
    if not target.cluster:
        try:
            client = aioredis.Redis.from_url(
                target.url,
                socket_timeout=socket_timeout,
                socket_connect_timeout=connect_timeout,
                retry=Retry(NoBackoff(), 1),
                retry_on_error=[RedisConnectionError, RedisTimeoutError],
                decode_responses=False,
            )
            # redis-py parses the URL here but builds connections lazily: build one (it opens
            # nothing) so that an unknown query parameter fails now, not at the first request
            pool = client.connection_pool
            pool.connection_class(**pool.connection_kwargs)
        except (ValueError, TypeError) as exc:  # a bad port or value (ValueError), unknown option (TypeError)
            raise ConfigError(
                f"bad Redis store URL {describe(target)}: {exc}",
                hint="fix the store URL (store setting / KEYFOB_STORE): host:port with a numeric port; "
                "keyfob's own option is ?prefix=, the other query parameters are redis-py's "
                "(e.g. ?socket_timeout=5, ?health_check_interval=30)",
            ) from exc
        return client
    if target.params:
        raise ConfigError(
            "unsupported query parameter(s) on a redis+cluster:// URL: "
            + ", ".join(k for k, _ in target.params),
            hint="redis+cluster:// takes only ?prefix=; pass other client options to open_store() instead",
        )
    return RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in target.seeds],
        username=target.username,
        password=target.password,
        ssl=target.tls,
        socket_timeout=socket_timeout,
        socket_connect_timeout=connect_timeout,
        # a failover or a reshard: re-read the slot map and retry a few times (≈ 0.1 + 0.2 + 0.4 s)
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.1), 3),
        decode_responses=False,
    )


def describe(target: RedisTarget) -> str:
    """host:port (or the seed list) without credentials, for messages."""
    if target.cluster:
        return "Redis Cluster " + ",".join(f"{h}:{p}" for h, p in target.seeds)
    rest = target.url.split("://", 1)[1].rsplit("@", 1)[-1].split("?", 1)[0]
    return f"Redis {rest}"


def config_error(exc: BaseException, target: RedisTarget) -> ConfigError | None:
    """The ConfigError a Redis error means, or None when it is an outage (or unknown)."""
    text = str(exc)
    where = describe(target)
    moved = isinstance(exc, MovedError) or text.startswith("MOVED")
    if moved or (not target.cluster and "non local key" in text):
        return ConfigError(
            f"{where} is a Redis Cluster node, but the store URL is a plain redis:// one",
            hint="set the store URL to redis+cluster://host:port[,host:port…] (seed nodes; no /db)",
        )
    cross = "CROSSSLOT" in text or "non local key" in text or "must map to the same key slot" in text
    if isinstance(exc, ClusterCrossSlotError) or cross:
        return ConfigError(
            f"{where} refused a keyfob command across Cluster slots ({type(exc).__name__})",
            hint="use keyfob's own key layout: do not rename keys and keep braces out of prefix=",
        )
    if "DB index is out of range" in text:
        return ConfigError(
            f"{where}: the server has no database /{target.db}",
            hint="set the /db in the store URL below the server's `databases` setting (16 by default)",
        )
    if "cluster support disabled" in text or "cluster mode is not enabled" in text.lower():
        return ConfigError(
            f"{where} is not a Redis Cluster, but the store URL is redis+cluster://",
            hint="set the store URL to redis://host:port/db for a single Redis server",
        )
    return None


@contextlib.contextmanager
def translate_errors(target: RedisTarget) -> Iterator[None]:
    """Driver errors → ConfigError (misconfiguration) or StoreUnavailable (outage)."""
    try:
        yield
    except KeyfobError:
        raise
    except (RedisError, RedisClusterException, OSError) as exc:  # RedisClusterException is no RedisError
        cfg = config_error(exc, target)
        if cfg is not None:
            raise cfg from exc
        raise StoreUnavailable(
            f"the Redis store failed: {type(exc).__name__}: {exc}",
        ) from exc


async def warn_if_not_persistent(client: Client, target: RedisTarget) -> None:
    """Log once per process and server when Redis keeps nothing on disk (``save ""``, ``appendonly no``).

    CONFIG may be disabled (managed Redis): then nothing is said.
    """
    where = describe(target)
    if where in _WARNED:
        return
    _WARNED.add(where)
    try:
        if isinstance(client, RedisCluster):
            result = await client.config_get("save", "appendonly", target_nodes=RedisCluster.PRIMARIES)
            replies: list[Any] = list(result.values())
        else:
            replies = [await client.config_get("save", "appendonly")]
    except (RedisError, RedisClusterException, OSError):
        return
    for conf in replies:
        conf = {_text(k): _text(v) for k, v in dict(conf).items()}
        if conf.get("appendonly", "no") == "no" and not conf.get("save", "").strip():
            log.warning(
                "%s keeps nothing on disk (save \"\", appendonly no): a restart loses every session, "
                "revocation and token version. keyfob notices (the store epoch changes) and refuses "
                "tokens minted before the loss, so users sign in again; to keep them, turn on "
                "persistence (appendonly yes, or RDB snapshots with save).", where)
            return


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)

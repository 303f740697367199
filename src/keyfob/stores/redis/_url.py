"""Parse a Redis store URL into what the client, the key layout and the feed need.

``redis://[user:pass@]host:port/db[?prefix=NAME]``, ``rediss://…`` (TLS), and
``redis+cluster://host:port[,host:port…][?prefix=NAME]`` / ``rediss+cluster://…`` (seed nodes of a
Redis Cluster; any one reachable node is enough, the client discovers the rest). keyfob's own query
parameter (``prefix``) is taken out; every other one is handed to redis-py unchanged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

from ...errors import ConfigError

__all__ = ["DEFAULT_PREFIX", "RedisTarget", "parse_redis_url"]

DEFAULT_PREFIX = "kf:"
_PREFIX_RE = re.compile(r"[A-Za-z0-9_.:-]+")
_KEYFOB_PARAMS = ("prefix",)


@dataclass(frozen=True, slots=True)
class RedisTarget:
    """Where a Redis store lives and which corner of it keyfob uses."""

    url: str  # for redis-py (standalone): keyfob's parameters removed
    cluster: bool
    tls: bool
    seeds: tuple[tuple[str, int], ...]  # cluster seed nodes (host, port)
    username: str | None
    password: str | None
    db: int
    prefix: str  # key prefix, always ending in ':'
    params: tuple[tuple[str, str], ...]  # other query parameters (cluster: passed as client options)

    @property
    def namespace(self) -> str:
        """The prefix without its trailing ':' ("" for the default ``kf:``), as ``keyfob doctor`` shows it."""
        return "" if self.prefix == DEFAULT_PREFIX else self.prefix[:-1]

    @property
    def channel(self) -> str:
        """The revocation feed's channel: one per namespace *and* database (pub/sub ignores db numbers)."""
        return f"{self.prefix}feed:db{self.db}"


def check_prefix(prefix: str, *, source: str) -> str:
    """Validate a key prefix (letters, digits, ``_ . : -``) and end it with ``:``."""
    if not _PREFIX_RE.fullmatch(prefix):
        raise ConfigError(
            f"invalid Redis key prefix {prefix!r} (from {source})",
            hint="set prefix= (or ?prefix= in the store URL) to letters, digits and _ . : - only, "
            "e.g. ?prefix=myapp; braces are reserved for keyfob's Redis Cluster hash tags",
        )
    return prefix if prefix.endswith(":") else prefix + ":"


def parse_redis_url(url: str, *, prefix: str | None = None) -> RedisTarget:
    """Split ``url`` (see the module docstring); ``prefix`` (an option) overrides ``?prefix=``."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("redis", "rediss", "redis+cluster", "rediss+cluster"):
        raise ConfigError(f"not a Redis URL: scheme {scheme!r}",
                          hint="use redis://host:port/db, rediss://…, or redis+cluster://host:port,host:port")
    cluster = scheme.endswith("+cluster")
    tls = scheme.startswith("rediss")
    query = parse_qsl(parts.query, keep_blank_values=True)
    ours = {k: v for k, v in query if k in _KEYFOB_PARAMS}
    rest = tuple((k, v) for k, v in query if k not in _KEYFOB_PARAMS)
    if prefix is None:
        prefix = check_prefix(ours["prefix"], source="?prefix= in the store URL") if "prefix" in ours \
            else DEFAULT_PREFIX
    else:
        prefix = check_prefix(prefix, source="the prefix= option")

    netloc = parts.netloc
    userinfo, _, hosts = netloc.rpartition("@")
    username = password = None
    if userinfo:
        user, _, pw = userinfo.partition(":")
        username, password = (unquote(user) or None), (unquote(pw) or None)

    path = parts.path.strip("/")
    if cluster:
        if path not in ("", "0"):
            raise ConfigError(
                f"a Redis Cluster has only database 0, the URL asks for /{path}",
                hint="remove the /db from the redis+cluster:// URL; give each app its own ?prefix= instead",
            )
        seeds = tuple(_host_port(h, url) for h in hosts.split(",") if h)
        if not seeds:
            raise ConfigError("a redis+cluster:// URL needs at least one seed node",
                              hint="e.g. redis+cluster://10.0.0.1:6379,10.0.0.2:6379")
        return RedisTarget(url=url, cluster=True, tls=tls, seeds=seeds, username=username, password=password,
                           db=0, prefix=prefix, params=rest)
    if "," in hosts:
        raise ConfigError("a redis:// URL names one server, this one names several",
                          hint="for a Redis Cluster use redis+cluster://host:port,host:port")
    try:
        db = int(path or 0)
    except ValueError:
        raise ConfigError(f"the Redis database in the URL must be a number, got {path!r}",
                          hint="e.g. redis://127.0.0.1:6379/0") from None
    clean = parts._replace(query=urlencode(rest)).geturl()
    return RedisTarget(url=clean, cluster=False, tls=tls, seeds=(), username=username, password=password,
                       db=db, prefix=prefix, params=rest)


def _host_port(spec: str, url: str) -> tuple[str, int]:
    host, sep, port = spec.rpartition(":")
    if not sep:
        return spec, 6379
    try:
        return host.strip("[]"), int(port)
    except ValueError:
        raise ConfigError(f"bad seed node {spec!r} in the Redis Cluster URL",
                          hint="write each seed as host:port, comma-separated") from None

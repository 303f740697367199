"""Redis session store and the Redis pub/sub revocation feed (``redis.asyncio`` + hiredis).

Keys (``prefix`` defaults to ``kf:``; pick another, or another db, to share a Redis):

| key | type | holds |
|---|---|---|
| ``kf:s:<token_hash hex>`` | hash | one session row (short field names, see ``_F``) |
| ``kf:u:<user_id>`` | set | the user's token hashes (hex) |
| ``kf:i:<session id>`` | set | the token hashes (hex) of one session (live + retired) |
| ``kf:x`` | sorted set | ``hex\\tid\\tuser`` → end of life (min of expires, absolute) |
| ``kf:v`` | hash | user id → token version |
| ``kf:r`` | sorted set | revoked session id → until |

``get`` is one ``HGETALL`` round trip. Every multi-key write is one Lua script, so it is atomic:
``replace`` checks that the old row exists and is not retired, retires or deletes it and inserts
the new one in a single script, so two concurrent calls cannot both succeed; ``add_limited``
counts the user's live rows, evicts or refuses, and inserts in a single script. (Scripts build key
names from the prefix, so this store wants a single Redis, not a Cluster.)

Each session hash also gets a TTL so that Redis drops dead rows by itself: the row's remaining
lifetime *measured on the caller's clock* (``end - last_seen_at`` on add/touch); a retired row
keeps its original expiry. Validity is decided by the strategy, never by the TTL; ``delete_expired``
deletes the rows whose end is past ``now`` and prunes the index sets of rows the TTL already
removed.

Connection errors become :class:`~keyfob.StoreUnavailable`. The client reconnects by itself on the
next command (one immediate retry), so a restarted server costs no failed request once it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .._frozen import fast_constructor
from .._json import loads as _json_loads
from ..errors import StoreUnavailable
from ._feedloop import ReconnectingFeed, deliver
from ._protocol import FeedHandler, SessionRecord

__all__ = ["RedisFeed", "RedisStore"]

CHANNEL = "keyfob:revocations"

_LUA_LIB = r"""
local P = ARGV[1]
local function member(hex, id, uid) return hex .. '\t' .. id .. '\t' .. uid end
local function drop(hex)
  local k = P .. 's:' .. hex
  local f = redis.call('HMGET', k, 'i', 'u', 'r')
  if not f[1] then return nil end
  redis.call('DEL', k)
  redis.call('SREM', P .. 'u:' .. f[2], hex)
  redis.call('SREM', P .. 'i:' .. f[1], hex)
  redis.call('ZREM', P .. 'x', member(hex, f[1], f[2]))
  return f
end
local function add(base)
  local hex, id, uid, endt, ttl = ARGV[base], ARGV[base + 1], ARGV[base + 2], ARGV[base + 3], ARGV[base + 4]
  local k = P .. 's:' .. hex
  if redis.call('EXISTS', k) == 1 then return 0 end
  local fields = {}
  for n = base + 5, #ARGV do fields[#fields + 1] = ARGV[n] end
  redis.call('HSET', k, unpack(fields))
  redis.call('PEXPIRE', k, ttl)
  redis.call('SADD', P .. 'u:' .. uid, hex)
  redis.call('SADD', P .. 'i:' .. id, hex)
  redis.call('ZADD', P .. 'x', endt, member(hex, id, uid))
  return 1
end
"""

# ARGV: prefix, hex, id, uid, end, ttl_ms, fields...
_ADD = _LUA_LIB + "return add(2)"

# ARGV: prefix, limit, evict (1/0), now, idle timeout ('' = none), then add()'s arguments from
# index 6 → {1, evicted session ids...} | {0} (refused) | {-1} (token hash exists).
# Live = the strategies' rule (keyfob.stores._protocol.is_live), with the same float comparisons;
# evictions least recently active first (eviction_key: last seen, created, id).
_ADD_LIMITED = (
    _LUA_LIB
    + r"""
if redis.call('EXISTS', P .. 's:' .. ARGV[6]) == 1 then return {-1} end
local limit, now, idle = tonumber(ARGV[2]), tonumber(ARGV[4]), tonumber(ARGV[5])
local uk = P .. 'u:' .. ARGV[8]
local live = {}
for _, hex in ipairs(redis.call('SMEMBERS', uk)) do
  local f = redis.call('HMGET', P .. 's:' .. hex, 'i', 'r', 'e', 'a', 'l', 'c')
  if not f[1] then
    redis.call('SREM', uk, hex)
  elseif not f[2] then
    local e, l = tonumber(f[3]), tonumber(f[5])
    local a = f[4] and tonumber(f[4])
    if (not a or now < a) and (not idle or now - l < idle) and now < e then
      live[#live + 1] = {l, tonumber(f[6]), f[1]}
    end
  end
end
local out = {1}
if #live >= limit then
  if ARGV[3] ~= '1' then return {0} end
  table.sort(live, function(x, y)
    if x[1] ~= y[1] then return x[1] < y[1] end
    if x[2] ~= y[2] then return x[2] < y[2] end
    return x[3] < y[3]
  end)
  for n = 1, #live - limit + 1 do
    local ik = P .. 'i:' .. live[n][3]
    for _, hex in ipairs(redis.call('SMEMBERS', ik)) do drop(hex) end
    redis.call('DEL', ik)
    out[#out + 1] = live[n][3]
  end
end
add(6)
return out
"""
)

# ARGV: prefix, hex, seen, expires
_TOUCH = (
    _LUA_LIB
    + r"""
local k = P .. 's:' .. ARGV[2]
local f = redis.call('HMGET', k, 'i', 'u', 'r', 'a')
if not f[1] or f[3] then return 0 end
local seen, exp = tonumber(ARGV[3]), tonumber(ARGV[4])
local endt = exp
if f[4] then endt = math.min(exp, tonumber(f[4])) end
redis.call('HSET', k, 'l', ARGV[3], 'e', ARGV[4])
redis.call('PEXPIRE', k, math.max(1, math.floor((endt - seen) * 1000)))
redis.call('ZADD', P .. 'x', endt, member(ARGV[2], f[1], f[2]))
return 1
"""
)

# ARGV: prefix, old hex, now, keep_old (1/0), then add()'s arguments from index 5
_REPLACE = (
    _LUA_LIB
    + r"""
local ko = P .. 's:' .. ARGV[2]
local f = redis.call('HMGET', ko, 'i', 'r')
if not f[1] or f[2] then return 0 end
if redis.call('EXISTS', P .. 's:' .. ARGV[5]) == 1 then return 0 end
if ARGV[4] == '1' then redis.call('HSET', ko, 'r', ARGV[3]) else drop(ARGV[2]) end
return add(5)
"""
)

# ARGV: prefix, session id → number of live rows deleted
_DELETE = (
    _LUA_LIB
    + r"""
local live = 0
local ik = P .. 'i:' .. ARGV[2]
for _, hex in ipairs(redis.call('SMEMBERS', ik)) do
  local f = drop(hex)
  if f and not f[3] then live = live + 1 end
end
redis.call('DEL', ik)
return live
"""
)

# ARGV: prefix, session id → [hex, HGETALL...] of the live row, or nil
_GET_BY_ID = (
    _LUA_LIB
    + r"""
local ik = P .. 'i:' .. ARGV[2]
for _, hex in ipairs(redis.call('SMEMBERS', ik)) do
  local k = P .. 's:' .. hex
  if redis.call('EXISTS', k) == 0 then
    redis.call('SREM', ik, hex)
  elseif redis.call('HEXISTS', k, 'r') == 0 then
    local out = redis.call('HGETALL', k)
    table.insert(out, 1, hex)
    return out
  end
end
return nil
"""
)

# ARGV: prefix, user id → list of [hex, HGETALL...] of live rows
_LIST_USER = (
    _LUA_LIB
    + r"""
local uk = P .. 'u:' .. ARGV[2]
local out = {}
for _, hex in ipairs(redis.call('SMEMBERS', uk)) do
  local k = P .. 's:' .. hex
  if redis.call('EXISTS', k) == 0 then
    redis.call('SREM', uk, hex)
  elseif redis.call('HEXISTS', k, 'r') == 0 then
    local row = redis.call('HGETALL', k)
    table.insert(row, 1, hex)
    out[#out + 1] = row
  end
end
return out
"""
)

# ARGV: prefix, user id, keep ('' = none) → flat [id, created, id, created, ...] of deleted rows
_DELETE_USER = (
    _LUA_LIB
    + r"""
local uk = P .. 'u:' .. ARGV[2]
local out = {}
for _, hex in ipairs(redis.call('SMEMBERS', uk)) do
  local k = P .. 's:' .. hex
  local f = redis.call('HMGET', k, 'i', 'c')
  if not f[1] then
    redis.call('SREM', uk, hex)
  elseif ARGV[3] == '' or f[1] ~= ARGV[3] then
    drop(hex)
    out[#out + 1] = f[1]
    out[#out + 1] = f[2]
  end
end
return out
"""
)

# ARGV: prefix, now, batch → number of rows deleted (or pruned after their TTL)
_DELETE_EXPIRED = (
    _LUA_LIB
    + r"""
local doomed = redis.call('ZRANGEBYSCORE', P .. 'x', '-inf', '(' .. ARGV[2], 'LIMIT', 0, tonumber(ARGV[3]))
for _, m in ipairs(doomed) do
  local t1 = string.find(m, '\t', 1, true)
  local t2 = string.find(m, '\t', t1 + 1, true)
  local hex, id, uid = string.sub(m, 1, t1 - 1), string.sub(m, t1 + 1, t2 - 1), string.sub(m, t2 + 1)
  redis.call('DEL', P .. 's:' .. hex)
  redis.call('SREM', P .. 'u:' .. uid, hex)
  redis.call('SREM', P .. 'i:' .. id, hex)
  redis.call('ZREM', P .. 'x', m)
end
redis.call('ZREMRANGEBYSCORE', P .. 'r', '-inf', '(' .. ARGV[2])
return #doomed
"""
)


def _f(x: float) -> bytes:
    return repr(float(x)).encode()


def _fields(r: SessionRecord) -> list[bytes | str]:
    out: list[bytes | str] = [b"i", r.id, b"u", r.user_id, b"c", _f(r.created_at), b"l", _f(r.last_seen_at)]
    out += [b"e", _f(r.expires_at), b"n", str(r.generation)]
    if r.absolute_expires_at is not None:
        out += [b"a", _f(r.absolute_expires_at)]
    if r.authenticated_at is not None:
        out += [b"t", _f(r.authenticated_at)]
    if r.ip is not None:
        out += [b"p", r.ip]
    if r.user_agent is not None:
        out += [b"g", r.user_agent]
    if r.data:
        out += [b"d", json.dumps(r.data, separators=(",", ":"), ensure_ascii=False)]
    if r.retired_at is not None:
        out += [b"r", _f(r.retired_at)]
    return out


def _end(r: SessionRecord) -> float:
    a = r.absolute_expires_at
    return r.expires_at if a is None else min(r.expires_at, a)


def _add_args(r: SessionRecord) -> list[Any]:
    end = _end(r)
    ttl = max(1, int((end - r.last_seen_at) * 1000))
    return [r.token_hash.hex(), r.id, r.user_id, _f(end), ttl, *_fields(r)]


def _opt(v: bytes | None) -> float | None:
    return None if v is None else float(v)


_new_record = fast_constructor(SessionRecord)  # per-request reads: see keyfob._frozen


def _record(token_hash: bytes, h: Mapping[bytes, bytes]) -> SessionRecord:
    g = h.get
    d = g(b"d")
    p = g(b"p")
    ua = g(b"g")
    return _new_record(  # SessionRecord(...), positionally
        token_hash,
        h[b"i"].decode(),
        h[b"u"].decode(),
        float(h[b"c"]),
        float(h[b"l"]),
        float(h[b"e"]),
        _opt(g(b"a")),
        _opt(g(b"t")),
        None if p is None else p.decode(),
        None if ua is None else ua.decode(),
        _json_loads(d.decode()) if d else {},
        _opt(g(b"r")),
        int(h.get(b"n", 0)),
    )


def _pairs(flat: Sequence[bytes]) -> dict[bytes, bytes]:
    it = iter(flat)
    return dict(zip(it, it, strict=True))


class RedisStore:
    """:class:`~keyfob.stores.SessionStore` on Redis (see the module docstring for the key layout).

    Options: ``prefix`` (default ``"kf:"``), ``socket_timeout`` and ``connect_timeout`` (seconds).
    """

    stores_raw_tokens: bool = False

    def __init__(self, url: str, *, prefix: str = "kf:", socket_timeout: float = 5.0,
                 connect_timeout: float = 2.0) -> None:  # fmt: skip
        self._prefix = prefix
        self._p = prefix.encode()
        self._r: aioredis.Redis = aioredis.Redis.from_url(
            url,
            socket_timeout=socket_timeout,
            socket_connect_timeout=connect_timeout,
            retry=Retry(NoBackoff(), 1),
            retry_on_error=[RedisConnectionError, RedisTimeoutError],
            decode_responses=False,
        )
        reg = self._r.register_script
        self._add, self._touch, self._replace = reg(_ADD), reg(_TOUCH), reg(_REPLACE)
        self._add_limited = reg(_ADD_LIMITED)
        self._delete, self._get_by_id, self._list_user = reg(_DELETE), reg(_GET_BY_ID), reg(_LIST_USER)
        self._delete_user, self._delete_expired = reg(_DELETE_USER), reg(_DELETE_EXPIRED)

    @contextlib.asynccontextmanager
    async def _translate_errors(self) -> AsyncIterator[None]:
        try:
            yield
        except (RedisError, OSError) as exc:
            raise StoreUnavailable(f"the Redis store failed: {type(exc).__name__}: {exc}") from exc

    async def get(self, token_hash: bytes) -> SessionRecord | None:
        try:
            h: dict[bytes, bytes] = await self._r.hgetall(self._p + b"s:" + token_hash.hex().encode())  # type: ignore[assignment]
        except (RedisError, OSError) as exc:
            raise StoreUnavailable(f"the Redis store failed: {type(exc).__name__}: {exc}") from exc
        return _record(token_hash, h) if h else None

    async def add(self, record: SessionRecord) -> None:
        async with self._translate_errors():
            ok = await self._add(args=[self._prefix, *_add_args(record)])
        if not ok:
            raise ValueError("a session with this token hash already exists")

    async def add_limited(self, record: SessionRecord, *, limit: int, evict: bool, now: float,
                          idle_timeout: float | None) -> tuple[bool, list[str]]:
        """``add`` under a per-user limit (see ``SessionStore``): one Lua script over the user's set."""
        idle = b"" if idle_timeout is None else _f(idle_timeout)
        async with self._translate_errors():
            out = await self._add_limited(
                args=[self._prefix, int(limit), "1" if evict else "0", _f(now), idle, *_add_args(record)]
            )
        status = int(out[0])
        if status < 0:
            raise ValueError("a session with this token hash already exists")
        return status == 1, [sid.decode() for sid in out[1:]]

    async def touch(self, token_hash: bytes, *, seen: float, expires: float) -> None:
        async with self._translate_errors():
            await self._touch(args=[self._prefix, token_hash.hex(), _f(seen), _f(expires)])

    async def replace(self, old_hash: bytes, new: SessionRecord, *, now: float, keep_old: bool) -> bool:
        async with self._translate_errors():
            ok = await self._replace(
                args=[self._prefix, old_hash.hex(), _f(now), "1" if keep_old else "0", *_add_args(new)]
            )
        return bool(ok)

    async def delete(self, session_id: str) -> int:
        async with self._translate_errors():
            return int(await self._delete(args=[self._prefix, session_id]))

    async def get_by_id(self, session_id: str) -> SessionRecord | None:
        async with self._translate_errors():
            out = await self._get_by_id(args=[self._prefix, session_id])
        if not out:
            return None
        return _record(bytes.fromhex(out[0].decode()), _pairs(out[1:]))

    async def list_user(self, user_id: str) -> Sequence[SessionRecord]:
        async with self._translate_errors():
            rows = await self._list_user(args=[self._prefix, user_id])
        recs = [_record(bytes.fromhex(r[0].decode()), _pairs(r[1:])) for r in rows]
        recs.sort(key=lambda r: (r.created_at, r.id))
        return recs

    async def delete_user(self, user_id: str, *, keep: str | None = None) -> list[str]:
        async with self._translate_errors():
            flat = await self._delete_user(args=[self._prefix, user_id, keep or ""])
        pairs = sorted(((float(c), i.decode()) for i, c in _pairs(flat).items()))
        return list(dict.fromkeys(i for _, i in pairs))

    async def delete_expired(self, now: float, *, batch: int = 1000) -> int:
        async with self._translate_errors():
            return int(await self._delete_expired(args=[self._prefix, _f(now), batch]))

    async def count(self) -> int:
        """Rows stored, counting rows Redis's TTL dropped until ``delete_expired`` prunes them."""
        async with self._translate_errors():
            return int(await self._r.zcard(self._p + b"x"))

    async def get_user_version(self, user_id: str) -> int:
        async with self._translate_errors():
            v = await self._r.hget(self._p + b"v", user_id)
        return int(v) if v else 0

    async def bump_user_version(self, user_id: str) -> int:
        async with self._translate_errors():
            return int(await self._r.hincrby(self._p + b"v", user_id, 1))

    async def user_versions(self) -> Mapping[str, int]:
        async with self._translate_errors():
            h: dict[bytes, bytes] = await self._r.hgetall(self._p + b"v")  # type: ignore[assignment]
        return {k.decode(): int(v) for k, v in h.items() if int(v)}

    async def add_revocation(self, session_id: str, *, until: float) -> None:
        async with self._translate_errors():
            await self._r.zadd(self._p + b"r", {session_id: until}, gt=True)

    async def revocations(self, now: float) -> Mapping[str, float]:
        async with self._translate_errors():
            rows: list[tuple[bytes, float]] = await self._r.zrangebyscore(  # type: ignore[assignment]
                self._p + b"r", f"({now!r}", "+inf", withscores=True
            )
        return {k.decode(): float(v) for k, v in rows}

    async def migrate(self) -> None:
        """Redis needs no schema; records the layout version (and checks the server is there)."""
        async with self._translate_errors():
            await self._r.hset(self._p + b"meta", "schema_version", "1")

    async def close(self) -> None:
        await self._r.aclose()


class RedisFeed(ReconnectingFeed):
    """:class:`~keyfob.stores.RevocationFeed` over Redis pub/sub (channel ``keyfob:revocations``).

    The listener reads with ``get_message(timeout=health_interval)`` and PINGs when the line is
    quiet, so a dead connection is noticed within about ``3 * health_interval`` (≈1 s). On a drop
    it calls ``on_state(False)``, reconnects with backoff (0.05 s → 2 s) and calls
    ``on_state(True)`` once subscribed again; a silent reconnect inside redis-py is reported the
    same way, because events may have been missed meanwhile.
    """

    _task_name = "keyfob-redis-feed"

    def __init__(self, url: str, *, channel: str = CHANNEL, health_interval: float = 0.3,
                 connect_timeout: float = 2.0) -> None:  # fmt: skip
        super().__init__()
        self._url = url
        self._channel = channel
        self._health = health_interval
        self._connect_timeout = connect_timeout
        self._pub = self._client(retries=1)
        self._reconnected = False

    def _client(self, retries: int) -> aioredis.Redis:
        return aioredis.Redis.from_url(
            self._url,
            socket_connect_timeout=self._connect_timeout,
            socket_timeout=5.0,
            retry=Retry(NoBackoff(), retries),
            retry_on_error=[RedisConnectionError, RedisTimeoutError],
        )

    async def publish(self, event: Mapping[str, Any]) -> None:
        payload = json.dumps(event, separators=(",", ":"))
        try:
            await self._pub.publish(self._channel, payload)
        except (RedisError, OSError) as exc:
            raise StoreUnavailable(f"cannot publish to Redis: {type(exc).__name__}: {exc}") from exc

    async def _on_connect(self, _conn: Any) -> None:
        self._reconnected = True

    async def _listen(self, handler: FeedHandler, subscribed: Callable[[], Awaitable[None]]) -> None:
        loop = asyncio.get_running_loop()
        client = self._client(retries=0)
        pubsub = client.pubsub()
        try:
            await pubsub.subscribe(self._channel)
            if pubsub.connection is not None:
                pubsub.connection.register_connect_callback(self._on_connect)
            self._reconnected = False
            await subscribed()
            last = loop.time()
            pinged = False
            while not self._closing:
                msg = await pubsub.get_message(timeout=self._health)
                if self._reconnected:
                    raise ConnectionError("redis-py reconnected under us; events may be lost")
                now = loop.time()
                if msg is not None:
                    last, pinged = now, False
                    if msg.get("type") == "message":
                        deliver(handler, msg["data"])
                elif now - last > 3 * self._health:
                    raise ConnectionError("no answer to PING")
                elif now - last > self._health and not pinged:
                    await pubsub.ping()
                    pinged = True
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(pubsub.aclose(), 1)  # type: ignore[no-untyped-call]
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.aclose(), 1)

    async def _close_publisher(self) -> None:
        with contextlib.suppress(Exception):
            await self._pub.aclose()

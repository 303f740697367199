"""``RedisStore``: the SessionStore on one Redis server or a Redis Cluster (one code path for both).

Each write is a short sequence of steps, and only the step over the user's hash tag decides; the
others are routing and indexing around it (``_keys`` explains the layout):

1. **claim** the routing pointers of a new token (``SET NX``; the token hash is unique here),
2. run the **user script** — the atomic decision: insert, cap, rotate, revoke — over one slot,
3. **index** (expiry entries) and clean up the pointers of rows the script removed.

A step that fails after the decision leaves at most a stray pointer or a missing expiry entry:
pointers lead only to rows that the user script checks, rows carry their own TTL, and
``delete_expired`` re-checks each row before deleting it. So every guarantee of a single server
holds on a Cluster: the session cap (``add_limited``), rotation with reuse detection (``replace``)
and revoke-versus-rotate races are decided by one script over the user's slot.

A lookup by token is ``GET P t:<hex>`` → the user's key base, then ``HGETALL`` of the row: one Lua
call on a single server, two round trips on a Cluster (the row is in another slot).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import itertools
import json
import math
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from redis.asyncio.cluster import RedisCluster

from .._protocol import ChangePage, SessionRecord
from . import _lua
from ._client import Client, connect, translate_errors, warn_if_not_persistent
from ._keys import SHARDS, Keys
from ._url import parse_redis_url

if TYPE_CHECKING:
    from ._feed import RedisFeed

__all__ = ["RedisStore"]

_Batch = list[tuple[int, int, dict[str, Any]]]  # one shard's log entries: (global seq, shard seq, event)

SCHEMA_VERSION = "2"


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


def _ttl_ms(r: SessionRecord) -> int:
    """The row's remaining lifetime on the caller's clock (then Redis drops it; validity is not its job)."""
    return max(1, int((_end(r) - r.last_seen_at) * 1000))


def _opt(v: bytes | None) -> float | None:
    return None if v is None else float(v)


def _record(token_hash: bytes, h: Mapping[bytes, bytes]) -> SessionRecord:
    d, p, ua = h.get(b"d"), h.get(b"p"), h.get(b"g")
    return SessionRecord(
        token_hash=token_hash,
        id=h[b"i"].decode(),
        user_id=h[b"u"].decode(),
        created_at=float(h[b"c"]),
        last_seen_at=float(h[b"l"]),
        expires_at=float(h[b"e"]),
        absolute_expires_at=_opt(h.get(b"a")),
        authenticated_at=_opt(h.get(b"t")),
        ip=None if p is None else p.decode(),
        user_agent=None if ua is None else ua.decode(),
        data=json.loads(d) if d else {},
        retired_at=_opt(h.get(b"r")),
        generation=int(h.get(b"n", 0)),
    )


def _pairs(flat: Sequence[bytes]) -> dict[bytes, bytes]:
    it = iter(flat)
    return dict(zip(it, it, strict=True))


def _s(v: bytes | str) -> str:
    return v.decode() if isinstance(v, bytes) else v


class RedisStore:
    """:class:`~keyfob.stores.SessionStore` on Redis or Redis Cluster (``_keys`` has the key layout).

    ``url``: ``redis://host:port/db``, ``rediss://…``, ``redis+cluster://host:port[,host:port…]`` or
    ``rediss+cluster://…``, each with an optional ``?prefix=NAME`` (the namespace: apps that share a
    server use different prefixes). Options: ``prefix`` (overrides the URL's), ``socket_timeout`` and
    ``connect_timeout`` (seconds).
    """

    stores_raw_tokens: bool = False

    def __init__(self, url: str, *, prefix: str | None = None, socket_timeout: float = 5.0,
                 connect_timeout: float = 2.0) -> None:  # fmt: skip
        self.target = parse_redis_url(url, prefix=prefix)
        self.namespace: str = self.target.namespace
        self.keys = Keys(self.target.prefix)
        self._url = url
        self._connect_timeout = connect_timeout
        self._r: Client = connect(self.target, socket_timeout=socket_timeout, connect_timeout=connect_timeout)
        reg = self._r.register_script
        self._add, self._add_limited, self._touch = reg(_lua.ADD), reg(_lua.ADD_LIMITED), reg(_lua.TOUCH)
        self._set_data = reg(_lua.SET_DATA)
        self._replace, self._delete = reg(_lua.REPLACE), reg(_lua.DELETE)
        self._get_by_id = reg(_lua.GET_BY_ID)
        self._list_user, self._delete_user = reg(_lua.LIST_USER), reg(_lua.DELETE_USER)
        self._drop_expired, self._get_by_pointer = reg(_lua.DROP_EXPIRED), reg(_lua.GET_BY_POINTER)
        self._revoke, self._bump, self._prune = reg(_lua.REVOKE), reg(_lua.BUMP), reg(_lua.PRUNE)
        self._read_changes, self._raise_version = reg(_lua.READ_CHANGES), reg(_lua.RAISE_VERSION)

    @contextlib.asynccontextmanager
    async def _errors(self) -> AsyncIterator[None]:
        with translate_errors(self.target):
            if isinstance(self._r, RedisCluster) and self._r._initialize:
                # redis-py routes a command before it initializes: concurrent first commands (or the
                # first ones after a failover closed the client) would race; initialize under its lock
                await self._r.initialize()
            yield

    # -- steps 1 and 3: pointers and expiry entries around the user script -----------------------

    async def _claim(self, rec: SessionRecord, base: str) -> bool:
        """Point the new token (and its session id) at the user's keys; False if the token exists."""
        k = self.keys
        t, d, ttl = k.token_pointer(rec.token_hash.hex()), k.session_pointer(rec.id), _ttl_ms(rec)
        pipe = self._r.pipeline(transaction=False)
        pipe.set(t, base, nx=True, px=ttl)
        pipe.set(d, base, nx=True, px=ttl)
        pipe.pexpire(d, ttl, gt=True)
        claimed = (await pipe.execute())[0]
        if claimed:
            return True
        # a stray pointer (its row gone) must not block the token forever
        owner = await self._r.get(t)
        if owner is not None and await self._r.exists(f"{_s(owner)}:s:{rec.token_hash.hex()}"):
            return False
        await self._r.set(t, base, px=ttl)
        return True

    def _expiry_member(self, hex_hash: str, base: str) -> tuple[str, str]:
        return self.keys.shard(hex_hash) + ":x", f"{hex_hash}\t{base}"

    async def _index(self, rec: SessionRecord, base: str, *, dropped: Sequence[str] = (),
                     gone_sessions: Sequence[str] = ()) -> None:  # fmt: skip
        pipe = self._r.pipeline(transaction=False)
        x, m = self._expiry_member(rec.token_hash.hex(), base)
        pipe.zadd(x, {m: _end(rec)})
        self._forget(pipe, base, dropped, gone_sessions)
        await pipe.execute()

    def _forget(self, pipe: Any, base: str, hexes: Sequence[str], sessions: Sequence[str]) -> None:
        for hex_hash in hexes:
            x, m = self._expiry_member(hex_hash, base)
            pipe.zrem(x, m)
            pipe.delete(self.keys.token_pointer(hex_hash))
        for sid in sessions:
            pipe.delete(self.keys.session_pointer(sid))

    async def _cleanup(self, base: str, hexes: Sequence[str], sessions: Sequence[str]) -> None:
        if hexes or sessions:
            pipe = self._r.pipeline(transaction=False)
            self._forget(pipe, base, hexes, sessions)
            await pipe.execute()

    def _user_keys(self, base: str, rec: SessionRecord) -> list[str]:
        return [f"{base}:a", f"{base}:i:{rec.id}", f"{base}:s:{rec.token_hash.hex()}"]

    @staticmethod
    def _add_args(rec: SessionRecord) -> list[Any]:
        return [rec.token_hash.hex(), rec.id, _ttl_ms(rec), *_fields(rec)]

    # -- sessions ---------------------------------------------------------------------------------

    async def get(self, token_hash: bytes) -> SessionRecord | None:
        hex_hash = token_hash.hex()
        async with self._errors():
            if self.target.cluster:
                base = await self._r.get(self.keys.token_pointer(hex_hash))
                if base is None:
                    return None
                h: dict[bytes, bytes] = await self._r.hgetall(f"{_s(base)}:s:{hex_hash}")  # type: ignore[assignment]
            else:
                pointer = self.keys.token_pointer(hex_hash)
                h = _pairs(await self._get_by_pointer(keys=[pointer], args=[hex_hash]))
        return _record(token_hash, h) if h else None

    async def add(self, record: SessionRecord) -> None:
        base = self.keys.user(record.user_id)
        async with self._errors():
            if await self._claim(record, base):
                if await self._add(keys=self._user_keys(base, record), args=[base, *self._add_args(record)]):
                    await self._index(record, base)
                    return
                # the row exists (the only refusal): the pointer leads to it, so it stays
        raise ValueError("a session with this token hash already exists")

    async def add_limited(self, record: SessionRecord, *, limit: int, evict: bool, now: float,
                          idle_timeout: float | None) -> tuple[bool, list[str]]:  # fmt: skip
        """``add`` under a per-user limit (see ``SessionStore``): one Lua script over the user's slot."""
        base = self.keys.user(record.user_id)
        idle = b"" if idle_timeout is None else _f(idle_timeout)
        hex_hash = record.token_hash.hex()
        async with self._errors():
            if not await self._claim(record, base):
                raise ValueError("a session with this token hash already exists")
            out = await self._add_limited(
                keys=self._user_keys(base, record),
                args=[base, int(limit), "1" if evict else "0", _f(now), idle, *self._add_args(record)],
            )
            status = int(out[0])
            if status != 1:
                if status == 0:  # refused: the pointer we claimed is ours to remove
                    await self._r.delete(self.keys.token_pointer(hex_hash))
                if status < 0:
                    raise ValueError("a session with this token hash already exists")
                return False, []
            evicted = [_s(sid) for sid in out[1]]
            dropped = [_s(h) for h in out[2][0::2]]
            await self._index(record, base, dropped=dropped, gone_sessions=evicted)
        return True, evicted

    async def touch(self, token_hash: bytes, *, seen: float, expires: float) -> None:
        hex_hash = token_hash.hex()
        async with self._errors():
            base = await self._r.get(self.keys.token_pointer(hex_hash))
            if base is None:
                return
            base = _s(base)
            out = await self._touch(keys=[f"{base}:s:{hex_hash}", f"{base}:a"],
                                    args=[base, hex_hash, _f(seen), _f(expires)])
            if not out:
                return
            sid, end, ttl = _s(out[0]), float(out[1]), int(out[2])
            pipe = self._r.pipeline(transaction=False)
            pipe.pexpire(self.keys.token_pointer(hex_hash), ttl)
            pipe.pexpire(self.keys.session_pointer(sid), ttl, gt=True)
            x, m = self._expiry_member(hex_hash, base)
            pipe.zadd(x, {m: end})
            await pipe.execute()

    async def set_data(self, token_hash: bytes, data: Mapping[str, Any]) -> bool:
        hex_hash = token_hash.hex()
        payload = json.dumps(data, separators=(",", ":"), ensure_ascii=False) if data else ""
        async with self._errors():
            base = await self._r.get(self.keys.token_pointer(hex_hash))
            if base is None:
                return False
            return bool(await self._set_data(keys=[f"{_s(base)}:s:{hex_hash}"], args=[payload]))

    async def replace(self, old_hash: bytes, new: SessionRecord, *, now: float, keep_old: bool) -> bool:
        base = self.keys.user(new.user_id)
        old_hex = old_hash.hex()
        same = new.token_hash == old_hash  # rewrite in place (keyfob.django saves session data so)
        async with self._errors():
            if same:
                ttl = _ttl_ms(new)
                pipe = self._r.pipeline(transaction=False)
                pipe.pexpire(self.keys.token_pointer(old_hex), ttl, gt=True)
                pipe.pexpire(self.keys.session_pointer(new.id), ttl, gt=True)
                await pipe.execute()
            elif not await self._claim(new, base):
                return False
            ok = int(await self._replace(
                keys=[f"{base}:s:{old_hex}", f"{base}:s:{new.token_hash.hex()}", f"{base}:a",
                      f"{base}:i:{new.id}"],
                args=[base, old_hex, _f(now), "1" if keep_old else "0", *self._add_args(new)],
            ))
            if ok != 1:
                if ok == 0 and not same:  # refused (old row gone or retired): drop the new pointer
                    await self._r.delete(self.keys.token_pointer(new.token_hash.hex()))
                return False
            await self._index(new, base, dropped=() if keep_old or same else (old_hex,))
        return True

    async def delete(self, session_id: str) -> int:
        async with self._errors():
            base = await self._r.get(self.keys.session_pointer(session_id))
            if base is None:
                return 0
            base = _s(base)
            live, hexes = await self._delete(keys=[f"{base}:i:{session_id}", f"{base}:a"],
                                             args=[base, session_id])
            await self._cleanup(base, [_s(h) for h in hexes], [session_id])
        return int(live)

    async def get_by_id(self, session_id: str) -> SessionRecord | None:
        async with self._errors():
            base = await self._r.get(self.keys.session_pointer(session_id))
            if base is None:
                return None
            base = _s(base)
            out = await self._get_by_id(keys=[f"{base}:i:{session_id}"], args=[base, session_id])
        if not out:
            return None
        return _record(bytes.fromhex(_s(out[0])), _pairs(out[1:]))

    async def list_user(self, user_id: str) -> Sequence[SessionRecord]:
        base = self.keys.user(user_id)
        async with self._errors():
            rows = await self._list_user(keys=[f"{base}:a"], args=[base])
        recs = [_record(bytes.fromhex(_s(r[0])), _pairs(r[1:])) for r in rows]
        recs.sort(key=lambda r: (r.created_at, r.id))
        return recs

    async def delete_user(self, user_id: str, *, keep: str | None = None) -> list[str]:
        base = self.keys.user(user_id)
        async with self._errors():
            flat = await self._delete_user(keys=[f"{base}:a"], args=[base, keep or ""])
            triples = [(_s(flat[i]), float(flat[i + 1]), _s(flat[i + 2])) for i in range(0, len(flat), 3)]
            sids = list(dict.fromkeys(sid for sid, _, _ in triples))
            await self._cleanup(base, [h for _, _, h in triples], sids)
        pairs = sorted((created, sid) for sid, created, _ in triples)
        return list(dict.fromkeys(sid for _, sid in pairs))

    async def delete_expired(self, now: float, *, batch: int = 1000) -> int:
        """Delete up to ``batch`` expired rows (each re-checked by its user's script), then prune
        revocations, version horizons and change-log entries past ``now`` in batches of ``batch``.
        Returns the number of session rows deleted (or found already dropped by their TTL)."""
        deleted = 0
        async with self._errors():
            for tag in self.keys.shard_tags:
                if deleted >= batch:
                    break
                members = await self._r.zrangebyscore(f"{tag}:x", "-inf", f"({now!r}", start=0,
                                                      num=batch - deleted)
                by_user: dict[str, list[str]] = {}
                for m in members:
                    hex_hash, _, base = _s(m).partition("\t")  # type: ignore[arg-type]
                    by_user.setdefault(base, []).append(hex_hash)
                for base, hexes in by_user.items():
                    out = await self._drop_expired(keys=[f"{base}:a"], args=[base, _f(now), *hexes])
                    pipe = self._r.pipeline(transaction=False)
                    for i in range(0, len(out), 3):
                        hex_hash, status, end = _s(out[i]), _s(out[i + 1]), _s(out[i + 2])
                        x, m = self._expiry_member(hex_hash, base)
                        if status == "l":
                            pipe.zadd(x, {m: float(end)})
                        else:
                            deleted += 1
                            pipe.zrem(x, m)
                            pipe.delete(self.keys.token_pointer(hex_hash))
                    await pipe.execute()
            for tag in self.keys.shard_tags:
                keys = [f"{tag}:r", f"{tag}:vh", f"{tag}:c", f"{tag}:ch"]
                while await self._prune(keys=keys, args=[_f(now), batch]):
                    pass
        return deleted

    async def count(self) -> int:
        """Rows stored, counting rows Redis's TTL dropped until ``delete_expired`` prunes them."""
        async with self._errors():
            counts = await self._each_shard(lambda r, _n, tag: r.zcard(f"{tag}:x"))
        return sum(int(c) for c in counts)

    async def sessions_page(
        self, cursor: str | None, *, limit: int = 500
    ) -> tuple[list[SessionRecord], str | None]:
        """Every row (live, expired until Redis drops it, retired), about ``limit`` at a time, for admin
        listings (``keyfob sessions list --all``). Pass the cursor back; None means done.

        The rows are found through the 16 shards' expiry indexes (``S:x``, one hash tag each, so one
        slot: the same on a Cluster), walked with ``ZSCAN … COUNT limit``: each command does bounded
        work, never one read of a whole index. A cursor is ``<shard>.<ZSCAN cursor>.<last token hash>``:
        a ZSCAN reply may hold more than ``limit`` members (a small sorted set comes back whole), so
        the page takes them in token-hash order and the next call re-reads the same reply and goes on
        after the last one. So, as SCAN promises, a row present during the whole listing is listed;
        a row may be listed twice if its index is rehashed meanwhile (callers dedupe by token hash),
        and one whose expiry entry was never written (a failed step 3) is not listed, as ``count``
        does not count it. The rows themselves are read with one pipeline of ``HGETALL`` per page.
        """
        if limit < 1:
            raise ValueError("limit must be at least 1")
        shard, scan, after = _parse_page_cursor(cursor)
        found: list[tuple[str, str]] = []  # (token hash hex, user key base)
        async with self._errors():
            while shard < SHARDS:
                next_scan, members = await self._r.zscan(f"{self.keys.shard_tags[shard]}:x", scan,
                                                         count=limit)  # fmt: skip
                batch = sorted({_s(m) for m, _score in members})  # type: ignore[arg-type]
                fresh = [m for m in batch if m.partition("\t")[0] > after]
                room = limit - len(found)
                found += [(h, b) for h, _, b in (m.partition("\t") for m in fresh[:room])]
                if len(fresh) > room:  # the rest of this reply on the next page
                    next_cursor: str | None = f"{shard}.{scan}.{found[-1][0]}"
                    break
                scan, after = int(next_scan), ""
                if scan == 0:
                    shard += 1
                if len(found) == limit:
                    next_cursor = f"{shard}.{scan}." if shard < SHARDS else None
                    break
            else:
                next_cursor = None
            if not found:
                return [], next_cursor
            pipe = self._r.pipeline(transaction=False)
            for hex_hash, base in found:
                pipe.hgetall(f"{base}:s:{hex_hash}")
            rows = await pipe.execute()
        records = [_record(bytes.fromhex(h), row) for (h, _b), row in zip(found, rows, strict=True) if row]
        return records, next_cursor

    async def _each_shard(self, call: Callable[[Any, int, str], Awaitable[Any]]) -> list[Any]:
        """``call(client, n, tag)`` for every shard: one pipeline on a single server (one connection,
        one round trip); on a Cluster, each master's shards in turn, the masters concurrently (redis-py's
        cluster pipeline does not run scripts)."""
        if isinstance(self._r, RedisCluster):
            # one connection per master: its shards one after the other, the masters at the same time
            by_node: dict[str, list[tuple[int, str]]] = {}
            for n, tag in enumerate(self.keys.shard_tags):
                node = self._r.get_node_from_key(tag)
                by_node.setdefault(node.name if node else "", []).append((n, tag))
            out: list[Any] = [None] * len(self.keys.shard_tags)

            async def run(items: list[tuple[int, str]]) -> None:
                for n, tag in items:
                    out[n] = await call(self._r, n, tag)

            await asyncio.gather(*(run(items) for items in by_node.values()))
            return out
        pipe = self._r.pipeline(transaction=False)
        for n, tag in enumerate(self.keys.shard_tags):
            await call(pipe, n, tag)  # queues it
        return list(await pipe.execute())

    # -- revocations, versions and the change log -------------------------------------------------

    async def get_user_version(self, user_id: str) -> int:
        async with self._errors():
            v = await self._r.hget(self.keys.shard(user_id) + ":v", user_id)
        return int(v) if v else 0

    async def bump_user_version(self, user_id: str, *, until: float | None = None) -> int:
        tag = self.keys.shard(user_id)
        async with self._errors():
            gseq = await self._r.incr(self.keys.seq)
            return int(await self._bump(
                keys=[f"{tag}:v", f"{tag}:vh", f"{tag}:c", f"{tag}:ch", f"{tag}:cs"],
                args=[user_id, "+inf" if until is None else _f(until), "null" if until is None else _f(until),
                      gseq],
            ))

    async def user_versions(self) -> Mapping[str, int]:
        out: dict[str, int] = {}
        async with self._errors():
            for tag in self.keys.shard_tags:
                users = [_s(u) async for u, _ in self._r.zscan_iter(f"{tag}:vh", count=1000)]
                for i in range(0, len(users), 1000):
                    chunk = users[i : i + 1000]
                    vers = await self._r.hmget(f"{tag}:v", chunk)
                    out.update((u, int(v)) for u, v in zip(chunk, vers, strict=True) if v and int(v))
        return out

    async def add_revocation(self, session_id: str, *, until: float) -> None:
        tag = self.keys.shard(session_id)
        event = json.dumps({"t": "sid", "sid": session_id, "until": float(until)}, separators=(",", ":"))
        async with self._errors():
            gseq = await self._r.incr(self.keys.seq)
            await self._revoke(keys=[f"{tag}:r", f"{tag}:c", f"{tag}:ch", f"{tag}:cs"],
                               args=[session_id, _f(until), gseq, event])

    async def is_revoked(self, session_id: str, *, now: float) -> bool:
        async with self._errors():
            until = await self._r.zscore(self.keys.shard(session_id) + ":r", session_id)
        return until is not None and float(until) > now

    async def revocations(self, now: float) -> Mapping[str, float]:
        out: dict[str, float] = {}
        async with self._errors():
            for tag in self.keys.shard_tags:
                async for sid, until in self._r.zscan_iter(f"{tag}:r", count=1000):
                    if float(until) > now:
                        out[_s(sid)] = float(until)
        return out

    async def changes(self, cursor: str | None, *, now: float, limit: int = 1000) -> ChangePage:
        """The change log after ``cursor`` (see ``SessionStore.changes``), merged from the shards.

        The cursor holds one position per shard (each shard's log is in its own commit order, so a
        write that commits late on one shard is still read) and a tag of the store epoch (after a
        wipe the positions restart: an old cursor then reads from the start). Events are ordered
        by the global sequence number each write took; one call is one short script per shard.
        """
        per_shard = min(limit, max(math.ceil(2 * limit / SHARDS), 16))
        cursor_epoch, seqs = _parse_cursor(cursor)
        async with self._errors():
            parts, batches = await self._read_shards(seqs, per_shard)
            current = _epoch_tag(parts)
            if cursor_epoch is not None and cursor_epoch != current:
                seqs = [0] * SHARDS
                parts, batches = await self._read_shards(seqs, per_shard)
                current = _epoch_tag(parts)
        # A shard's log is in its commit order, which is not always global-sequence order (two
        # writers take their numbers with INCR, then run their scripts the other way round). So
        # each entry is merged at its shard's running maximum (``reach``, never decreasing along a
        # batch): every batch is then a sorted run, a page is a prefix of each, and the batch with
        # the lowest reach always gives at least one entry (a page never stalls the cursor).
        reach = [list(itertools.accumulate((g for g, _, _ in b), max)) for b in batches]
        full = [r for b, r in zip(batches, reach, strict=True) if len(b) == per_shard]
        bound = min((r[-1] for r in full), default=math.inf)
        candidates = sorted(x for r in reach for x in r if x <= bound)
        if len(candidates) > limit:
            bound = candidates[limit - 1]
        # entries at ``bound`` itself may be more than the page has room for: the first ones only
        room = limit - sum(1 for x in candidates if x < bound)
        chosen: list[tuple[int, dict[str, Any]]] = []
        more = bool(full)
        for n, (b, r) in enumerate(zip(batches, reach, strict=True)):
            for (gseq, lseq, event), x in zip(b, r, strict=True):
                if x > bound or (x == bound and room <= 0):
                    more = True
                    break
                if x == bound:
                    room -= 1
                chosen.append((gseq, event))
                seqs[n] = lseq
        chosen.sort(key=lambda c: c[0])
        events = [e for _, e in chosen if _alive(e, now)]
        return ChangePage(events, _format_cursor(current, seqs), more)

    async def _read_shards(self, seqs: list[int], per_shard: int) -> tuple[list[bytes | None], list[_Batch]]:
        replies = await self._each_shard(
            lambda r, n, tag: self._read_changes(keys=[f"{tag}:c", f"{tag}:epoch"], args=[seqs[n], per_shard],
                                                 client=r)
        )
        parts: list[bytes | None] = []
        batches: list[_Batch] = []
        for reply in replies:
            await asyncio.sleep(0)  # decode shard by shard, letting requests run in between
            parts.append(reply[0] if reply else None)
            batch: _Batch = []
            for i in range(1, len(reply), 2):
                gseq, _, payload = reply[i].partition(b"|")
                batch.append((int(gseq), int(reply[i + 1]), json.loads(payload)))
            batches.append(batch)
        return parts, batches

    # -- epoch, schema, lifecycle -----------------------------------------------------------------

    async def epoch(self) -> str | None:
        """The store epoch: a digest of the shards' epoch parts (``SET NX`` each at ``migrate``), or
        None when any part is missing (that shard's data — revocations, versions — was lost)."""
        async with self._errors():
            parts = await self._each_shard(lambda r, _n, tag: r.get(f"{tag}:epoch"))
        if any(p is None for p in parts):
            return None
        digest = hashlib.sha256(b"|".join(parts)).digest()
        return base64.urlsafe_b64encode(digest).decode()[:16]

    async def migrate(self) -> None:
        """Record the layout version and create the epoch parts that are absent (``SET NX``: any
        number of processes may migrate at once; the first writer of each part wins)."""
        mine = secrets.token_urlsafe(12)
        async with self._errors():
            if await self._r.hget(self.keys.meta, "schema_version") == b"1":
                await self._upgrade_from_layout_1()
            await self._r.hset(self.keys.meta, "schema_version", SCHEMA_VERSION)
            await self._each_shard(lambda r, _n, tag: r.set(f"{tag}:epoch", mine, nx=True))
        await warn_if_not_persistent(self._r, self.target)

    async def _upgrade_from_layout_1(self) -> None:
        """Carry the layout-1 revocations (``P r``) and versions (``P v``) into the shards, in pages
        (idempotent: any number of processes may run it at once). Layout-1 session rows are left to
        their TTL: their users sign in again, which fails closed; a revocation must never be lost."""
        p = self.keys.prefix
        async for sid, until in self._r.zscan_iter(f"{p}r", count=500):
            await self.add_revocation(_s(sid), until=float(until))
        async for user, ver in self._r.hscan_iter(f"{p}v", count=500):
            uid, tag = _s(user), self.keys.shard(_s(user))
            gseq = await self._r.incr(self.keys.seq)
            await self._raise_version(keys=[f"{tag}:v", f"{tag}:vh", f"{tag}:c", f"{tag}:ch", f"{tag}:cs"],
                                      args=[uid, int(ver), gseq])

    def feed(self) -> RedisFeed:
        """A new :class:`RedisFeed` on this store's server, namespace and database."""
        from ._feed import RedisFeed

        return RedisFeed(self._url, prefix=self.target.prefix, connect_timeout=self._connect_timeout)

    async def close(self) -> None:
        await self._r.aclose()


def _epoch_tag(parts: Sequence[bytes | None]) -> str:
    return hashlib.sha256(b"|".join(p or b"-" for p in parts)).hexdigest()[:8]


def _parse_page_cursor(cursor: str | None) -> tuple[int, int, str]:
    """``sessions_page``'s cursor: (shard, ZSCAN cursor, last token hash hex listed in that reply)."""
    if not cursor:
        return 0, 0, ""
    try:
        shard, scan, after = cursor.split(".", 2)
        return int(shard), int(scan), after
    except ValueError:
        raise ValueError(f"not a sessions_page cursor: {cursor!r}") from None


def _parse_cursor(cursor: str | None) -> tuple[str | None, list[int]]:
    if cursor:
        tag, _, rest = cursor.partition(".")
        seqs = rest.split(".")
        if len(seqs) == SHARDS and all(s.isdigit() for s in seqs):
            return tag, [int(s) for s in seqs]
    return None, [0] * SHARDS


def _format_cursor(tag: str, seqs: Sequence[int]) -> str:
    return tag + "." + ".".join(str(s) for s in seqs)


def _alive(event: Mapping[str, Any], now: float) -> bool:
    until = event.get("until")
    return until is None or float(until) > now

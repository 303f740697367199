"""In-process store and revocation feed: the test double that ships (like httpx's MockTransport).

``MemoryStore("memory://")`` is private to the object. ``MemoryStore("memory://name")`` shares
its rows with every other store opened with the same name in this process, so two engines in one
process see the same sessions (as two nodes would with one database).

``MemoryStore("memory://name", prefix="app1:")`` (or ``memory://name?prefix=app1:``) is a
namespace of that shared state: its own rows, versions, revocations, change log and epoch.
:meth:`MemoryStore.feed` gives a feed on a channel of that namespace (a private store: a channel
private to the object).

``MemoryFeed(url)`` is an in-process broker: every feed opened with the same URL (``memory://``
included) shares one channel. Events are delivered through ``loop.call_soon`` after a JSON round
trip, so handlers see what a real broker would deliver and never run inside ``publish``.

Every method runs without awaiting anything, so under asyncio each one is atomic — that is what
makes ``replace`` and ``bump_user_version`` safe against concurrent callers.
"""

from __future__ import annotations

import asyncio
import bisect
import inspect
import json
import secrets
import threading
from collections.abc import Mapping, Sequence
from dataclasses import replace as dc_replace
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from ..errors import ConfigError, StoreUnavailable
from ._protocol import ChangePage, FeedHandler, SessionRecord, StateHandler, over_limit

__all__ = ["MemoryFeed", "MemoryStore"]


class _State:
    def __init__(self) -> None:
        self.rows: dict[bytes, SessionRecord] = {}
        self.by_id: dict[str, set[bytes]] = {}
        self.versions: dict[str, int] = {}  # the numbers: never pruned, never go down
        self.horizons: dict[str, float | None] = {}  # versions still in the view → their until
        self.revoked: dict[str, float] = {}
        self.log_seq: list[int] = []  # the change log, oldest first (seq, until, event)
        self.log: list[tuple[float | None, dict[str, Any]]] = []
        self.next_seq = 1
        self.epoch: str | None = None

    def append(self, event: dict[str, Any], until: float | None) -> None:
        self.log_seq.append(self.next_seq)
        self.log.append((until, event))
        self.next_seq += 1


_SHARED_STATES: dict[tuple[str, str], _State] = {}
_MIGRATE_LOCK = threading.Lock()


def _name(url: str) -> str:
    if not url.startswith("memory://"):
        raise ValueError(f"not a memory:// URL: {url!r}")
    return url[len("memory://") :].split("?", 1)[0].strip("/")


def _channel_of(name: str, prefix: str) -> str:
    return name if not prefix else f"{name}?prefix={prefix}"


def _url_prefix(url: str) -> str | None:
    query = dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))
    unknown = set(query) - {"prefix"}
    if unknown:
        raise ConfigError(f"unknown option(s) {sorted(unknown)} in the memory store URL",
                          hint="the memory store takes only ?prefix=NAME")  # fmt: skip
    return query.get("prefix")


def _end(r: SessionRecord) -> float:
    if r.absolute_expires_at is None:
        return r.expires_at
    return min(r.expires_at, r.absolute_expires_at)


class MemoryStore:
    """A :class:`~keyfob.stores.SessionStore` kept in dicts (tests, demos, single-process apps)."""

    stores_raw_tokens: bool = False

    def __init__(self, url: str = "memory://", *, prefix: str = "") -> None:
        name = _name(url)
        prefix = _url_prefix(url) or prefix
        #: the namespace in use (``prefix``; ``""`` for the default)
        self.namespace = prefix
        if name:
            self._s = _SHARED_STATES.setdefault((name, prefix), _State())
            self._channel = _channel_of(name, prefix)
        else:
            self._s = _State()
            self._channel = f"\0private-{id(self._s)}"
        self._closed = False

    @staticmethod
    def wipe(url: str) -> None:
        """Lose every row of the shared store ``memory://name`` (all namespaces), as a restart
        without persistence would: for tests of store wipes. Open store objects see it empty."""
        name = _name(url)
        for (n, _prefix), state in _SHARED_STATES.items():
            if n == name:
                state.__init__()  # type: ignore[misc]

    def feed(self) -> MemoryFeed:
        """An in-process feed on this store's channel (its name and namespace)."""
        return MemoryFeed(channel=self._channel)

    def _check(self) -> _State:
        if self._closed:
            raise StoreUnavailable("the memory store is closed", hint="open a new store")
        return self._s

    async def get(self, token_hash: bytes) -> SessionRecord | None:
        return self._check().rows.get(token_hash)

    async def add(self, record: SessionRecord) -> None:
        s = self._check()
        if record.token_hash in s.rows:
            raise ValueError("a session with this token hash already exists")
        s.rows[record.token_hash] = dc_replace(record, data=dict(record.data))
        s.by_id.setdefault(record.id, set()).add(record.token_hash)

    async def add_limited(self, record: SessionRecord, *, limit: int, evict: bool, now: float,
                          idle_timeout: float | None) -> tuple[bool, list[str]]:
        """``add`` under a per-user limit (see ``SessionStore``); atomic: it never awaits."""
        s = self._check()
        if record.token_hash in s.rows:
            raise ValueError("a session with this token hash already exists")
        evicted = over_limit((r for r in s.rows.values() if r.user_id == record.user_id),
                             limit=limit, now=now, idle_timeout=idle_timeout)
        if evicted is not None and not evict:
            return False, []
        for sid in evicted or ():
            self._drop_id(s, sid)
        s.rows[record.token_hash] = dc_replace(record, data=dict(record.data))
        s.by_id.setdefault(record.id, set()).add(record.token_hash)
        return True, evicted or []

    async def touch(self, token_hash: bytes, *, seen: float, expires: float) -> None:
        s = self._check()
        row = s.rows.get(token_hash)
        if row is not None and row.retired_at is None:
            s.rows[token_hash] = dc_replace(row, last_seen_at=seen, expires_at=expires)

    async def set_data(self, token_hash: bytes, data: Mapping[str, Any]) -> bool:
        s = self._check()
        row = s.rows.get(token_hash)
        if row is None or row.retired_at is not None:
            return False
        s.rows[token_hash] = dc_replace(row, data=dict(data))
        return True

    async def replace(self, old_hash: bytes, new: SessionRecord, *, now: float, keep_old: bool) -> bool:
        s = self._check()
        old = s.rows.get(old_hash)
        if old is None or old.retired_at is not None:
            return False
        if new.token_hash != old_hash and new.token_hash in s.rows:  # the same hash: rewrite in place
            return False
        if keep_old:
            s.rows[old_hash] = dc_replace(old, retired_at=now)
        else:
            self._drop(s, old_hash)
        s.rows[new.token_hash] = dc_replace(new, data=dict(new.data))
        s.by_id.setdefault(new.id, set()).add(new.token_hash)
        return True

    @staticmethod
    def _drop(s: _State, token_hash: bytes) -> SessionRecord | None:
        row = s.rows.pop(token_hash, None)
        if row is not None:
            hashes = s.by_id.get(row.id)
            if hashes is not None:
                hashes.discard(token_hash)
                if not hashes:
                    del s.by_id[row.id]
        return row

    @classmethod
    def _drop_id(cls, s: _State, session_id: str) -> int:
        live = 0
        for h in list(s.by_id.get(session_id, ())):
            row = cls._drop(s, h)
            if row is not None and row.retired_at is None:
                live += 1
        return live

    async def delete(self, session_id: str) -> int:
        return self._drop_id(self._check(), session_id)

    async def get_by_id(self, session_id: str) -> SessionRecord | None:
        s = self._check()
        for h in s.by_id.get(session_id, ()):
            row = s.rows[h]
            if row.retired_at is None:
                return row
        return None

    async def list_user(self, user_id: str) -> Sequence[SessionRecord]:
        rows = [r for r in self._check().rows.values() if r.user_id == user_id and r.retired_at is None]
        rows.sort(key=lambda r: (r.created_at, r.id))
        return rows

    async def delete_user(self, user_id: str, *, keep: str | None = None) -> list[str]:
        s = self._check()
        doomed = [r for r in s.rows.values() if r.user_id == user_id and r.id != keep]
        doomed.sort(key=lambda r: (r.created_at, r.id))
        ids: dict[str, None] = {}
        for r in doomed:
            self._drop(s, r.token_hash)
            ids[r.id] = None
        return list(ids)

    async def delete_expired(self, now: float, *, batch: int = 1000) -> int:
        s = self._check()
        doomed = [h for h, r in s.rows.items() if _end(r) < now][:batch]
        for h in doomed:
            self._drop(s, h)
        for sid in [k for k, until in s.revoked.items() if until < now][:batch]:
            del s.revoked[sid]
        for user in [k for k, until in s.horizons.items() if until is not None and until < now][:batch]:
            del s.horizons[user]
        kept = [i for i, (until, _e) in enumerate(s.log) if until is None or until >= now]
        if len(kept) < len(s.log):
            s.log_seq = [s.log_seq[i] for i in kept]
            s.log = [s.log[i] for i in kept]
        return len(doomed)

    async def count(self) -> int:
        return len(self._check().rows)

    async def sessions_page(
        self, cursor: str | None, *, limit: int = 500
    ) -> tuple[list[SessionRecord], str | None]:
        """Every row, ``limit`` at a time in token-hash order (``keyfob sessions list --all``)."""
        after = bytes.fromhex(cursor) if cursor else b""
        rows = [r for r in self._check().rows.values() if r.token_hash > after]
        page = sorted(rows, key=lambda r: r.token_hash)[:limit]
        return page, (page[-1].token_hash.hex() if len(page) == limit else None)

    async def get_user_version(self, user_id: str) -> int:
        return self._check().versions.get(user_id, 0)

    async def bump_user_version(self, user_id: str, *, until: float | None = None) -> int:
        s = self._check()
        v = s.versions.get(user_id, 0) + 1
        s.versions[user_id] = v
        s.horizons[user_id] = until  # the later bump refuses all the earlier one did
        s.append({"t": "ver", "user": user_id, "ver": v, "until": until}, until)
        return v

    async def user_versions(self) -> Mapping[str, int]:
        s = self._check()
        return {k: s.versions[k] for k in s.horizons if s.versions.get(k)}

    async def add_revocation(self, session_id: str, *, until: float) -> None:
        s = self._check()
        s.revoked[session_id] = max(until, s.revoked.get(session_id, until))
        s.append({"t": "sid", "sid": session_id, "until": until}, until)

    async def revocations(self, now: float) -> Mapping[str, float]:
        return {k: v for k, v in self._check().revoked.items() if v > now}

    async def is_revoked(self, session_id: str, *, now: float) -> bool:
        until = self._check().revoked.get(session_id)
        return until is not None and until > now

    async def changes(self, cursor: str | None, *, now: float, limit: int = 1000) -> ChangePage:
        s = self._check()
        after = _cursor(cursor)
        events: list[dict[str, Any]] = []
        last = after
        i = bisect.bisect_right(s.log_seq, after)
        while i < len(s.log):
            until, event = s.log[i]
            if until is None or until > now:
                if len(events) == limit:
                    return ChangePage(events, str(last), True)
                events.append(dict(event))
                last = s.log_seq[i]
            i += 1
        return ChangePage(events, str(last), False)

    async def epoch(self) -> str | None:
        return self._check().epoch

    async def migrate(self) -> None:
        s = self._check()
        with _MIGRATE_LOCK:  # stores of one name may live in several threads' loops
            if s.epoch is None:
                s.epoch = secrets.token_urlsafe(12)

    async def close(self) -> None:
        self._closed = True


def _cursor(cursor: str | None) -> int:
    if cursor is None:
        return 0
    try:
        return int(cursor)
    except ValueError:
        raise ValueError(f"not a cursor of this store: {cursor!r}") from None


class _Channel:
    def __init__(self) -> None:
        self.subscribers: set[MemoryFeed] = set()


_CHANNELS: dict[str, _Channel] = {}


async def _call_state(on_state: StateHandler, up: bool) -> None:
    result = on_state(up)
    if inspect.isawaitable(result):
        await result


class MemoryFeed:
    """A :class:`~keyfob.stores.RevocationFeed` between the engines of one process.

    :meth:`disconnect` and :meth:`reconnect` simulate a broker outage for tests: while
    disconnected the feed neither receives nor publishes (``publish`` raises StoreUnavailable).
    """

    def __init__(self, url: str = "memory://", *, channel: str | None = None) -> None:
        if channel is None:
            channel = _channel_of(_name(url), _url_prefix(url) or "")
        self._channel = _CHANNELS.setdefault(channel, _Channel())
        self._handler: FeedHandler | None = None
        self._on_state: StateHandler | None = None
        self._connected = True

    async def publish(self, event: Mapping[str, Any]) -> None:
        if not self._connected:
            raise StoreUnavailable("the memory feed is disconnected")
        payload = json.dumps(event, separators=(",", ":"))
        loop = asyncio.get_running_loop()
        for feed in list(self._channel.subscribers):
            if feed._connected and feed._handler is not None:
                loop.call_soon(feed._handler, json.loads(payload))

    async def start(self, handler: FeedHandler, on_state: StateHandler) -> None:
        self._handler = handler
        self._on_state = on_state
        self._channel.subscribers.add(self)
        if self._connected:
            await _call_state(on_state, True)

    async def disconnect(self) -> None:
        """Simulate losing the broker: ``on_state(False)``, and no events until :meth:`reconnect`."""
        if self._connected:
            self._connected = False
            if self._on_state is not None:
                await _call_state(self._on_state, False)

    async def reconnect(self) -> None:
        """Simulate the broker coming back: ``on_state(True)`` (events missed meanwhile are lost)."""
        if not self._connected:
            self._connected = True
            if self._on_state is not None:
                await _call_state(self._on_state, True)

    async def close(self) -> None:
        self._channel.subscribers.discard(self)
        self._handler = None
        self._on_state = None

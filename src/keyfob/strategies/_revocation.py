"""The in-memory revocation view every node keeps (jwt and hybrid strategies).

It holds two small dicts — revoked session ids (until their last token could expire, so
memory stays bounded) and per-user minimum token versions — kept current by a
``RevocationFeed`` (Redis pub/sub, PostgreSQL LISTEN/NOTIFY, in-process memory).

While the feed is up, a check is two dict lookups. When the feed drops, ``live`` turns
False and checks go to the store (fail safe) until the feed is back *and* the view has
been reloaded from the store; it never answers from a view it knows may be stale.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from typing import Any

from .._clock import Clock
from ..errors import SessionRevoked, StoreUnavailable
from ..stores import RevocationFeed, SessionStore

log = logging.getLogger("keyfob.revocation")

__all__ = ["RevocationView"]


class RevocationView:
    """Revoked session ids and minimum user versions, mirrored in memory."""

    def __init__(self, store: SessionStore, feed: RevocationFeed | None, clock: Clock) -> None:
        self.store = store
        self.feed = feed
        self.clock = clock
        self.revoked: dict[str, float] = {}
        self.min_version: dict[str, int] = {}
        # Without a feed (SQLite, single process) this node's own revocations are the whole truth.
        self.live = feed is None
        self._started = False
        self._resync_lock = asyncio.Lock()
        self._feed_up = False
        self._last_prune = 0.0
        # keyfob.metrics: called with (now - the publisher's "at") for each event that came over the feed
        self.propagation_observer: Callable[[float], None] | None = None

    async def start(self) -> None:
        """Load the view from the store and subscribe to the feed."""
        if self._started:
            return
        self._started = True
        if self.feed is None:
            await self.resync()
            return
        await self.feed.start(self.apply, self._on_state)

    async def close(self) -> None:
        if self.feed is not None:
            with contextlib.suppress(Exception):
                await self.feed.close()

    async def _on_state(self, up: bool) -> None:
        self._feed_up = up
        if not up:
            if self.live:
                log.warning("revocation feed lost; checking sessions against the store until it is back")
            self.live = False
            return
        try:
            await self.resync()
        except StoreUnavailable:
            log.warning("revocation feed is back but the store is not; staying on store checks")
            return
        if self._feed_up:
            self.live = True
            log.info("revocation feed up; view resynced (%d revoked, %d versions)",
                     len(self.revoked), len(self.min_version))

    async def resync(self) -> None:
        """Reload both dicts from the store (events that arrive meanwhile are merged, not lost)."""
        async with self._resync_lock:
            now = self.clock()
            revoked = dict(await self.store.revocations(now))
            versions = dict(await self.store.user_versions())
            for sid, until in revoked.items():
                if self.revoked.get(sid, 0.0) < until:
                    self.revoked[sid] = until
            for user, ver in versions.items():
                if self.min_version.get(user, 0) < ver:
                    self.min_version[user] = ver

    def apply(self, event: Mapping[str, Any]) -> None:
        """Apply one feed event (also called locally, so this node never waits for its own echo)."""
        kind = event.get("t")
        if kind == "sid":
            sid, until = event.get("sid"), event.get("until")
            if isinstance(sid, str) and isinstance(until, int | float) and not isinstance(until, bool):
                if self.revoked.get(sid, 0.0) < until:
                    self.revoked[sid] = float(until)
        elif kind == "ver":
            user, ver = event.get("user"), event.get("ver")
            if isinstance(user, str) and type(ver) is int and self.min_version.get(user, 0) < ver:
                self.min_version[user] = ver
        sent_at = event.get("at")  # only on published copies: local applies are not a propagation
        if self.propagation_observer is not None and isinstance(sent_at, int | float):
            self.propagation_observer(self.clock() - sent_at)
        self._maybe_prune()

    def _maybe_prune(self) -> None:
        now = self.clock()
        if now - self._last_prune < 60 or len(self.revoked) < 1024:
            return
        self._last_prune = now
        for sid in [s for s, until in self.revoked.items() if until <= now]:
            del self.revoked[sid]

    def check_live(self, sid: str, user_id: str, ver: int) -> bool:
        """Fast path. True = revoked. Only meaningful while ``live``."""
        return sid in self.revoked or ver < self.min_version.get(user_id, 0)

    async def check(self, sid: str, user_id: str, ver: int, *, session_must_exist: bool) -> None:
        """Raise SessionRevoked if the session or the user's token version was revoked.

        Live view → dict lookups. Otherwise → the store (``session_must_exist`` for hybrid,
        whose sessions are rows; the revocation list for jwt, whose sessions are not).
        """
        if self.live:
            if sid in self.revoked or ver < self.min_version.get(user_id, 0):
                raise SessionRevoked()
            return
        if session_must_exist:
            if await self.store.get_by_id(sid) is None:
                raise SessionRevoked()
        elif sid in await self.store.revocations(self.clock()):
            raise SessionRevoked()
        if ver < await self.store.get_user_version(user_id):
            raise SessionRevoked()

    async def revoke(self, sid: str, *, until: float) -> None:
        """Record a revocation in the store, apply it here at once, and tell every other node."""
        await self.store.add_revocation(sid, until=until)
        event = {"t": "sid", "sid": sid, "until": until}
        self.apply(event)
        if self.feed is not None:
            await self.feed.publish({**event, "at": self.clock()})

    async def bump(self, user_id: str) -> int:
        """Raise the user's token version: every token minted before now is refused."""
        ver = await self.store.bump_user_version(user_id)
        event = {"t": "ver", "user": user_id, "ver": ver}
        self.apply(event)
        if self.feed is not None:
            await self.feed.publish({**event, "at": self.clock()})
        return ver

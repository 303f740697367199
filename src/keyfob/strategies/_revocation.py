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
from ..stores import RevocationFeed, SessionRecord, SessionStore
from ._policy import RouteCheck

log = logging.getLogger("keyfob.revocation")

__all__ = ["RevocationView", "merge_patch"]


def merge_patch(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """Two data patches as one: ``new`` wins key by key; keyfob's policy dict (``_kf``) merges one level."""
    out = {**old, **new}
    if isinstance(old.get("_kf"), dict) and isinstance(new.get("_kf"), dict):
        out["_kf"] = {**old["_kf"], **new["_kf"]}
    return out


class RevocationView:
    """Revoked session ids and minimum user versions, mirrored in memory."""

    def __init__(self, store: SessionStore, feed: RevocationFeed | None, clock: Clock) -> None:
        self.store = store
        self.feed = feed
        self.clock = clock
        self.revoked: dict[str, float] = {}
        self.min_version: dict[str, int] = {}
        # Live session updates (Keyfob.update_session): session id (jwt: or "user:<hash>") → the
        # update's marker (an ``until`` time, stored as the revocation-list entry "u:<key>"); tokens
        # minted before it (their ``upd`` claim is older) re-read the session.
        self.updated: dict[str, float] = {}
        # How stale a live view may be: 0 for a push feed (measured by `keyfob bench`), the polling
        # interval for a polling feed; None without a feed (only this process's own revocations).
        self.bound: float | None = None if feed is None else float(getattr(feed, "interval", 0.0))
        self.outage_since: float | None = None
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
                self._add(sid, until)
            for user, ver in versions.items():
                if self.min_version.get(user, 0) < ver:
                    self.min_version[user] = ver

    def apply(self, event: Mapping[str, Any]) -> None:
        """Apply one feed event (also called locally, so this node never waits for its own echo)."""
        kind = event.get("t")
        if kind == "sid":
            sid, until = event.get("sid"), event.get("until")
            if isinstance(sid, str) and isinstance(until, int | float) and not isinstance(until, bool):
                self._add(sid, float(until))
        elif kind == "ver":
            user, ver = event.get("user"), event.get("ver")
            if isinstance(user, str) and type(ver) is int and self.min_version.get(user, 0) < ver:
                self.min_version[user] = ver
        sent_at = event.get("at")  # only on published copies: local applies are not a propagation
        if self.propagation_observer is not None and isinstance(sent_at, int | float):
            self.propagation_observer(self.clock() - sent_at)
        self._maybe_prune()

    def _add(self, sid: str, until: float) -> None:
        if sid.startswith("u:"):  # an update marker, not a revocation
            sid = sid[2:]
            if self.updated.get(sid, 0.0) < until:
                self.updated[sid] = until
        elif self.revoked.get(sid, 0.0) < until:
            self.revoked[sid] = until

    def _maybe_prune(self) -> None:
        now = self.clock()
        if now - self._last_prune < 60 or len(self.revoked) + len(self.updated) < 1024:
            return
        self._last_prune = now
        for sid in [s for s, until in self.revoked.items() if until <= now]:
            del self.revoked[sid]
        for sid in [s for s, until in self.updated.items() if until <= now]:
            del self.updated[sid]

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

    async def checked(self, sid: str, user_id: str, ver: int, *, rows: bool, check: RouteCheck,
                      now: float) -> tuple[SessionRecord | None, float | None]:
        """The revocation check a route asked for: ``(row, outage)``.

        The store answers when ``check.confirm`` (``max_staleness=0``), when the view is not live, or
        when the view's staleness bound is unknown (no feed) or above ``check.max_staleness``; the
        row is returned when ``rows`` (hybrid). Otherwise the view answers, as on the default route.
        On a store outage the view answers only if ``check.outage_grace`` covers the outage so far;
        ``outage`` is then its length (seconds), else None. Raises SessionRevoked or StoreUnavailable.
        """
        limit, bound = check.max_staleness, self.bound
        if self.live and not check.confirm and (limit is None or (bound is not None and bound <= limit)):
            self.check_view(sid, user_id, ver)
            return None, None
        try:
            rec = await self.store.get_by_id(sid) if rows else None
            if rows and rec is None:
                raise SessionRevoked()
            if not rows and sid in await self.store.revocations(now):
                raise SessionRevoked()
            if ver < await self.store.get_user_version(user_id):
                raise SessionRevoked()
        except StoreUnavailable:
            since = self.outage_since = now if self.outage_since is None else self.outage_since
            if check.outage_grace <= 0 or now - since > check.outage_grace:
                raise
            self.check_view(sid, user_id, ver)
            return None, now - since
        self.outage_since = None
        return rec, None

    def check_view(self, sid: str, user_id: str, ver: int) -> None:
        """Raise SessionRevoked if the view (as it stands, live or not) knows the session revoked."""
        if sid in self.revoked or ver < self.min_version.get(user_id, 0):
            raise SessionRevoked()

    async def mark_updated(self, sid: str, *, until: float) -> None:
        """Tell every node that session ``sid`` changed: tokens minted before now re-read it."""
        await self.revoke("u:" + sid, until=max(until, self.updated.get(sid, 0.0) + 0.001))

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

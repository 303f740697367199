"""The in-memory revocation view every node keeps (jwt and hybrid strategies).

It holds small dicts — revoked session ids, per-user minimum token versions and live-update
markers — kept current by a ``RevocationFeed`` (Redis pub/sub, PostgreSQL LISTEN/NOTIFY,
in-process memory, or polling the store).

While the feed is up, a check is two dict lookups. When the feed drops, ``live`` turns
False and checks go to the store (fail safe, one point lookup each) until the feed is back *and*
the view has caught up with the store's change log; it never answers from a view it knows may
be stale.

**Bounded.** Every entry carries its horizon (``until``): the moment after which no token it could
refuse can still be valid — the access token's lifetime plus the clock skew for hybrid, ``max_age``
plus the skew for jwt, counted from the revocation or the bump. A periodic sweep (a background
task, every ``maintenance_interval`` seconds, and cheap: it yields to the loop every few thousand
entries) drops what is past its horizon, so the view holds only what can still matter. Dropping a
version is safe by construction: every token minted before the bump carries ``exp`` before the
bump's horizon (tests/unit/test_revocation_view.py pins the edges).

**Cheap resync.** The view follows the store's change log (``store.changes``) with a cursor:
after a feed drop it reads only what changed since, in pages of :data:`PAGE` events, yielding to
the event loop between pages (from the start on the first load: every log entry expires at its
horizon, so the whole log is the current state).

**Store wipes.** The view reads the store epoch (``store.epoch()``) at start, after ``migrate``;
tokens carry it as the ``ep`` claim and a token of another epoch is refused (:meth:`check_epoch`).
A running process notices a wipe at its next resync, at its periodic sweep, and when a token of
another epoch reaches it (a store check, at most once per :data:`EPOCH_RECHECK` seconds): it then
migrates the store again (with ``auto_migrate``), takes the new epoch and reloads the view from
the new log, so tokens minted before the wipe are refused everywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeGuard

from .._clock import Clock
from ..errors import SessionRevoked, StoreUnavailable
from ..stores import RevocationFeed, SessionRecord, SessionStore
from ._policy import RouteCheck

log = logging.getLogger("keyfob.revocation")

__all__ = ["EPOCH_RECHECK", "PAGE", "RevocationView", "merge_patch"]

#: Events per ``store.changes`` page on a resync: measured (docs/SCALING.md) to keep each page's
#: decode well under the 50 ms loop-stall budget on Redis Cluster (16 shards).
PAGE = 250
#: Entries swept between two yields to the event loop.
_SWEEP_CHUNK = 5000
#: At most one store read per this many seconds to confirm the epoch when a token of another one
#: arrives (a stolen pre-wipe token must not buy a store read per request).
EPOCH_RECHECK = 1.0


def merge_patch(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """Two data patches as one: ``new`` wins key by key; keyfob's policy dict (``_kf``) merges one level."""
    out = {**old, **new}
    if isinstance(old.get("_kf"), dict) and isinstance(new.get("_kf"), dict):
        out["_kf"] = {**old["_kf"], **new["_kf"]}
    return out


def _number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


class RevocationView:
    """Revoked session ids and minimum user versions, mirrored in memory until their horizon.

    ``migrate`` (the engine passes ``store.migrate`` under ``auto_migrate``) is called when the view
    finds the store wiped and without an epoch, so a running process keeps working after a wipe.
    """

    #: Seconds (real time) between two sweeps of the background task.
    maintenance_interval: float = 30.0

    def __init__(self, store: SessionStore, feed: RevocationFeed | None, clock: Clock, *,
                 migrate: Callable[[], Awaitable[None]] | None = None) -> None:
        self.store = store
        self.feed = feed
        self.clock = clock
        self.revoked: dict[str, float] = {}
        self.min_version: dict[str, int] = {}
        # user → the horizon of its version entry (math.inf: a bump without one, kept forever)
        self.version_until: dict[str, float] = {}
        # Live session updates (Keyfob.update_session): session id (jwt: or "user:<hash>") → the
        # update's marker (an ``until`` time, stored as the revocation-list entry "u:<key>"); tokens
        # minted before it (their ``upd`` claim is older) re-read the session.
        self.updated: dict[str, float] = {}
        #: The store epoch this process accepts tokens of (None: the store has none, or no epochs).
        self.epoch: str | None = None
        self._epoch_read = False  # whether ``epoch`` was read from the store yet
        # How stale a live view may be: 0 for a push feed (measured by `keyfob bench`), the polling
        # interval for a polling feed; None without a feed (only this process's own revocations).
        self.bound: float | None = None if feed is None else float(getattr(feed, "interval", 0.0))
        self.outage_since: float | None = None
        # Without a feed (SQLite, single process) this node's own revocations are the whole truth.
        self.live = feed is None
        self._migrate = migrate
        self._started = False
        self._resync_lock = asyncio.Lock()
        self._feed_up = False
        self._cursor: str | None = None  # where the view is in the store's change log
        self._epoch_checked = -math.inf  # time.monotonic() of the last epoch read a token triggered
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        # keyfob.metrics: called with (now - the publisher's "at") for each event that came over the feed
        self.propagation_observer: Callable[[float], None] | None = None

    # -- lifecycle -----------------------------------------------------------------------------------
    async def start(self) -> None:
        """Read the store epoch, load the view from the store and subscribe to the feed; start the sweep."""
        if self._started:
            return
        self.epoch, self._epoch_read = await self._store_epoch(), True  # a store outage: start() again later
        self._started = True
        self._wake = asyncio.Event()
        self._task = asyncio.create_task(self._maintain_forever(), name="keyfob-revocation-view")
        try:
            if self.feed is None:
                await self.resync()
            else:
                await self.feed.start(self.apply, self._on_state)
        except BaseException:  # not loaded: nothing may answer from this view; start() again later
            await self.close()
            raise

    async def close(self, *, timeout: float = 5.0) -> None:
        """Stop the sweep and the feed. Never waits longer than ``timeout`` for either."""
        task, self._task = self._task, None
        if task is not None:
            loop = task.get_loop()
            if loop is asyncio.get_running_loop():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, asyncio.TimeoutError, Exception):
                    await asyncio.wait_for(task, timeout)
            elif not loop.is_closed():  # started on another loop (a framework's): cancel it there
                loop.call_soon_threadsafe(task.cancel)
        if self.feed is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.feed.close(), timeout)
        self._started = False

    async def _maintain_forever(self) -> None:
        wake = self._wake
        assert wake is not None
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(wake.wait(), self.maintenance_interval)
            wake.clear()
            try:
                await self.maintain()
            except StoreUnavailable:
                pass  # the store is down: the next sweep tries again
            except Exception:
                log.exception("the revocation view's sweep failed; it runs again in %ss",
                              self.maintenance_interval)

    async def maintain(self) -> None:
        """One sweep: drop what is past its horizon, check that the store was not wiped, and retry
        a resync that a store outage stopped while the feed was up."""
        await self.prune()
        await self.sync_epoch()
        if not self.live and (self.feed is None or self._feed_up):
            await self.resync()
            if self.feed is None or self._feed_up:
                self.live = True

    # -- the feed ------------------------------------------------------------------------------------
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
        """Catch up with the store: its epoch, then its change log after the cursor, page by page.

        Events that arrive over the feed meanwhile are merged, not lost (every event only ever
        raises what the view refuses). Between pages the loop runs other work.
        """
        async with self._resync_lock:
            await self.sync_epoch(locked=True)
            changes = getattr(self.store, "changes", None)
            if changes is None:  # a store without a change log (third-party): read it whole
                await self._reload_whole()
                return
            while True:
                page = await changes(self._cursor, now=self.clock(), limit=PAGE)
                for event in page.events:
                    self._apply(event)
                stuck = page.more and not page.events and page.cursor == self._cursor
                self._cursor = page.cursor
                if not page.more:
                    return
                if stuck:
                    log.warning("the store's change log said more but gave nothing from cursor %r; "
                                "stopping this resync", page.cursor)
                    return
                await asyncio.sleep(0)  # let requests run between pages

    async def _reload_whole(self) -> None:
        now = self.clock()
        for sid, until in dict(await self.store.revocations(now)).items():
            self._add(sid, until)
        for user, ver in dict(await self.store.user_versions()).items():
            self._raise_version(user, ver, math.inf)

    async def _store_epoch(self) -> str | None:
        read = getattr(self.store, "epoch", None)
        return None if read is None else await read()

    async def sync_epoch(self, *, locked: bool = False) -> bool:
        """Read the store epoch; if it changed (a wipe), reset the view to the new one. True if it did.

        A store without an epoch after a wipe is migrated again first (when the view was given
        ``migrate``), so this process and fresh ones agree on the new epoch.
        """
        epoch = await self._store_epoch()
        if not self._epoch_read:  # the first read (a view resynced before start): nothing to compare
            self.epoch, self._epoch_read = epoch, True
            return False
        if epoch == self.epoch:
            return False
        if epoch is None and self._migrate is not None:
            await self._migrate()
            epoch = await self._store_epoch()
            if epoch == self.epoch:
                return False
        log.warning("the session store lost its data (its epoch changed): every token minted before "
                    "is refused from now on, and the revocation view is reloaded from the store")
        if locked:  # the resync holding the lock reads the new log next
            self._reset(epoch)
            return True
        was_live, self.live = self.live, False  # store checks until the new log is read
        async with self._resync_lock:
            self._reset(epoch)
        await self.resync()
        self.live = was_live and (self.feed is None or self._feed_up)
        return True

    def _reset(self, epoch: str | None) -> None:
        self.epoch = epoch
        self._cursor = None
        self.revoked.clear()
        self.min_version.clear()
        self.version_until.clear()
        self.updated.clear()

    # -- events --------------------------------------------------------------------------------------
    def apply(self, event: Mapping[str, Any]) -> None:
        """Apply one feed event (also called locally, so this node never waits for its own echo).

        An event already at its horizon (``until <= now``: what :meth:`prune` drops) is not applied:
        a late echo of this node's own event would otherwise bring back an entry the sweep just
        dropped, and no token it refuses is valid any more."""
        until = event.get("until")
        if not (_number(until) and until <= self.clock()):
            self._apply(event)
        sent_at = event.get("at")  # only on published copies: local applies are not a propagation
        if self.propagation_observer is not None and _number(sent_at):
            self.propagation_observer(self.clock() - sent_at)

    def _apply(self, event: Mapping[str, Any]) -> None:
        kind = event.get("t")
        if kind == "sid":
            sid, until = event.get("sid"), event.get("until")
            if isinstance(sid, str) and _number(until):
                self._add(sid, float(until))
        elif kind == "ver":
            user, ver, until = event.get("user"), event.get("ver"), event.get("until")
            if isinstance(user, str) and type(ver) is int and (until is None or _number(until)):
                self._raise_version(user, ver, math.inf if until is None else float(until))

    def _add(self, sid: str, until: float) -> None:
        if sid.startswith("u:"):  # an update marker, not a revocation
            sid = sid[2:]
            if self.updated.get(sid, 0.0) < until:
                self.updated[sid] = until
        elif self.revoked.get(sid, 0.0) < until:
            self.revoked[sid] = until

    def _raise_version(self, user: str, ver: int, until: float) -> None:
        # The entry refuses every token below the highest version, until the latest horizon: a later
        # bump refuses all an earlier one did, so one entry per user is enough.
        if ver <= 0:
            return
        if self.min_version.get(user, 0) < ver:
            self.min_version[user] = ver
        if self.version_until.get(user, -math.inf) < until:
            self.version_until[user] = until

    async def prune(self) -> int:
        """Drop every entry whose horizon is past (``until <= now``: no token it refuses is valid
        then). Yields to the loop every few thousand entries. Returns how many went."""
        now = self.clock()
        gone = 0
        for table in (self.revoked, self.updated, self.version_until):
            keys = list(table)
            for start in range(0, len(keys), _SWEEP_CHUNK):
                for key in keys[start : start + _SWEEP_CHUNK]:
                    until = table.get(key)
                    if until is not None and until <= now:
                        del table[key]
                        if table is self.version_until:
                            self.min_version.pop(key, None)
                        gone += 1
                if start + _SWEEP_CHUNK < len(keys):
                    await asyncio.sleep(0)
        return gone

    def suspect_epoch(self) -> None:
        """A token of another epoch arrived where no store read can be awaited (``keyfob.Verifier``):
        sweep soon, which reads the epoch (at most once per :data:`EPOCH_RECHECK` seconds)."""
        tick = time.monotonic()
        if self._wake is not None and tick - self._epoch_checked >= EPOCH_RECHECK:
            self._epoch_checked = tick
            self._wake.set()

    # -- checks --------------------------------------------------------------------------------------
    def check_live(self, sid: str, user_id: str, ver: int) -> bool:
        """Fast path. True = revoked. Only meaningful while ``live``."""
        return sid in self.revoked or ver < self.min_version.get(user_id, 0)

    async def check_epoch(self, epoch: object) -> None:
        """Raise SessionRevoked unless ``epoch`` (a token's ``ep`` claim) is the store's epoch.

        Called when the claim differs from :attr:`epoch`. A token of another epoch may be this
        process's news of a wipe (a fresh process minted it): the store is asked, at most once per
        :data:`EPOCH_RECHECK` seconds, and the view resets if it did change.
        """
        if epoch == self.epoch:
            return
        tick = time.monotonic()
        if epoch is not None and tick - self._epoch_checked >= EPOCH_RECHECK:
            self._epoch_checked = tick
            await self.sync_epoch()
            if epoch == self.epoch:
                return
        raise SessionRevoked("the session store was reset since this session began", hint="sign in again")

    async def check(self, sid: str, user_id: str, ver: int, *, session_must_exist: bool) -> None:
        """Raise SessionRevoked if the session or the user's token version was revoked.

        Live view → dict lookups. Otherwise → the store (``session_must_exist`` for hybrid,
        whose sessions are rows; a point lookup in the revocation list for jwt, whose sessions are
        not, with the store epoch confirmed: a wiped list says nothing).
        """
        if self.live:
            if sid in self.revoked or ver < self.min_version.get(user_id, 0):
                raise SessionRevoked()
            return
        await self._store_check(sid, user_id, ver, rows=session_must_exist, now=self.clock())

    async def _store_check(self, sid: str, user_id: str, ver: int, *, rows: bool,
                           now: float) -> SessionRecord | None:
        rec = None
        if rows:  # a wipe loses the row too: this fails closed without an epoch read
            rec = await self.store.get_by_id(sid)
            if rec is None:
                raise SessionRevoked()
        else:
            if await self.store.is_revoked(sid, now=now):
                raise SessionRevoked()
            if await self._store_epoch() != self.epoch:
                await self.sync_epoch()
                raise SessionRevoked("the session store was reset since this session began",
                                     hint="sign in again")
        if ver < await self.store.get_user_version(user_id):
            raise SessionRevoked()
        return rec

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
            rec = await self._store_check(sid, user_id, ver, rows=rows, now=now)
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

    # -- writes --------------------------------------------------------------------------------------
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

    async def bump(self, user_id: str, *, until: float | None) -> int:
        """Raise the user's token version: every token minted before now is refused, until ``until``
        (the strategy's horizon: by then every such token has expired; None keeps it forever)."""
        ver = await self.store.bump_user_version(user_id, until=until)
        event = {"t": "ver", "user": user_id, "ver": ver, "until": until}
        self.apply(event)
        if self.feed is not None:
            await self.feed.publish({**event, "at": self.clock()})
        return ver

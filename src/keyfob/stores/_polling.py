"""A revocation feed for stores without pub/sub (SQLite): poll the store's revocation list.

SQLite lives on one machine, so every process sharing the file sees the same rows; every
``interval`` seconds this feed reads what the store's change log (``store.changes``) gained
since its cursor — one indexed range query that usually returns nothing — and hands the new
events to the view. The first read pages through the whole log (the current state, since every
entry expires at its horizon), and so does the first read after the store's epoch changed (a
wipe: the new log's sequence numbers start over, so the old cursor would skip them).
A store without ``changes`` (a third-party one) is re-read whole
instead (``revocations`` and ``user_versions``). Publishing is a no-op because the revoking node
has already written the row.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import Any

from .._clock import Clock, system_clock
from ..errors import StoreUnavailable
from ._protocol import FeedHandler, SessionStore, StateHandler

log = logging.getLogger("keyfob.feed")

__all__ = ["PollingFeed"]


class PollingFeed:
    """``RevocationFeed`` by polling; ``interval`` bounds the cross-process propagation delay."""

    def __init__(self, store: SessionStore, *, interval: float = 0.1, clock: Clock = system_clock) -> None:
        self.store = store
        self.interval = interval
        self.clock = clock
        self._task: asyncio.Task[None] | None = None
        self._seen_revoked: dict[str, float] = {}
        self._seen_versions: dict[str, int] = {}
        self._cursor: str | None = None
        self._epoch: str | None = None

    async def publish(self, event: Mapping[str, Any]) -> None:
        """Nothing to send: the store row written by the revoking node is the message."""

    async def start(self, handler: FeedHandler, on_state: StateHandler) -> None:
        await self._poll(handler)  # first read before declaring the view live
        result = on_state(True)
        if result is not None:
            await result
        self._task = asyncio.create_task(self._run(handler, on_state), name="keyfob-polling-feed")

    async def _poll(self, handler: FeedHandler) -> None:
        changes = getattr(self.store, "changes", None)
        if changes is None:
            await self._reread(handler)
            return
        read_epoch = getattr(self.store, "epoch", None)
        if read_epoch is not None:
            epoch = await read_epoch()
            if epoch != self._epoch:  # a wiped store's log starts over
                self._epoch, self._cursor = epoch, None
        while True:
            page = await changes(self._cursor, now=self.clock(), limit=1000)
            for event in page.events:
                handler(event)
            self._cursor = page.cursor
            if not page.more:
                return
            await asyncio.sleep(0)  # a big backlog: let requests run between pages

    async def _reread(self, handler: FeedHandler) -> None:
        for sid, until in (await self.store.revocations(self.clock())).items():
            if self._seen_revoked.get(sid) != until:
                self._seen_revoked[sid] = until
                handler({"t": "sid", "sid": sid, "until": until})
        for user, ver in (await self.store.user_versions()).items():
            if self._seen_versions.get(user, 0) < ver:
                self._seen_versions[user] = ver
                handler({"t": "ver", "user": user, "ver": ver})
        if len(self._seen_revoked) > 4096:
            now = self.clock()
            self._seen_revoked = {s: u for s, u in self._seen_revoked.items() if u > now}

    async def _run(self, handler: FeedHandler, on_state: StateHandler) -> None:
        up = True
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self._poll(handler)
            except Exception as exc:  # never let the poller die: the view must go to store checks
                if not isinstance(exc, StoreUnavailable):
                    log.exception("revocation poller failed")
                if up:
                    up = False
                    result = on_state(False)
                    if result is not None:
                        await result
                continue
            if not up:
                up = True
                result = on_state(True)
                if result is not None:
                    await result

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None

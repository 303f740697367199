"""PostgreSQL ``LISTEN/NOTIFY`` revocation feed, with one listening connection per process.

Every :class:`PostgresFeed` of an event loop that listens on the same DSN shares one
:class:`_Listener`: one asyncpg connection that LISTENs on each feed's channel, reconnects with
exponential backoff (0.05 s → 2 s, :mod:`keyfob.stores._feedloop`) and checks itself with
``SELECT 1`` every ``health_interval`` seconds, so a silently dead server is noticed within about a
second. A feed made by ``SQLStore.feed()`` publishes through the store's pool (``pg_notify``),
so a process holds ``pool_size`` + 1 connections; a feed opened on its own
(``open_feed(url)``) opens one publishing connection of its own when it first publishes.

The channel derives from the store's namespace (``?table_prefix=``): ``keyfob_revocations`` for
the default, ``<prefix>revocations`` otherwise. The database scopes it too: PostgreSQL delivers a
NOTIFY only to listeners connected to the same database. NOTIFY payloads are limited to 8000
bytes by PostgreSQL. Through PgBouncer in transaction mode LISTEN does not work: give the store
``?listen_url=`` (a direct connection); ``pg_notify`` itself works through PgBouncer.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import inspect
import json
import re
import weakref
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from ...errors import StoreUnavailable
from .._feedloop import ReconnectingFeed, deliver
from .._protocol import FeedHandler, StateHandler
from ._driver import Driver
from ._options import parse
from .postgres import pg_dsn

if TYPE_CHECKING:
    import asyncpg

__all__ = ["CHANNEL", "PostgresFeed", "channel_for"]

CHANNEL = "keyfob_revocations"


def channel_for(namespace: str) -> str:
    """The NOTIFY channel of a store namespace (a table prefix; ``""`` for the default)."""
    if not namespace:
        return CHANNEL
    name = f"{namespace}revocations"
    if len(name) <= 63 and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        return name
    return "keyfob_" + hashlib.sha256(namespace.encode()).hexdigest()[:32]


async def _call(fn: StateHandler, up: bool) -> None:
    result = fn(up)
    if inspect.isawaitable(result):
        await result


class _Listener(ReconnectingFeed):
    """The one LISTEN connection of an event loop for one DSN, shared by its feeds."""

    _task_name = "keyfob-pg-listener"

    def __init__(self, dsn: str, *, health_interval: float, connect_timeout: float) -> None:
        super().__init__()
        self.dsn = dsn
        self._health = health_interval
        self._connect_timeout = connect_timeout
        self.feeds: dict[str, set[PostgresFeed]] = {}
        self.up = False
        self._reported = False  # has the line's state been reported yet?
        self._conn: asyncpg.Connection | None = None
        self._listening: set[str] = set()  # channels LISTENed on _conn
        self._lock = asyncio.Lock()  # one operation at a time on the connection

    def _dispatch(self, _conn: Any, _pid: int, channel: str, payload: str) -> None:
        for feed in list(self.feeds.get(channel, ())):
            if feed._handler is not None:
                deliver(feed._handler, payload)

    async def _state(self, up: bool) -> None:
        self.up, self._reported = up, True
        for feeds in list(self.feeds.values()):
            for feed in list(feeds):
                await feed._state(up)

    async def _listen(self, handler: FeedHandler, subscribed: Callable[[], Awaitable[None]]) -> None:
        import asyncpg

        lost = asyncio.Event()
        conn: asyncpg.Connection = await asyncpg.connect(self.dsn, timeout=self._connect_timeout)
        try:
            conn.add_termination_listener(lambda _c: lost.set())
            async with self._lock:
                self._listening = set()
                for channel in list(self.feeds):
                    await conn.add_listener(channel, self._dispatch)
                    self._listening.add(channel)
                self._conn = conn
            await subscribed()
            while not self._closing and not lost.is_set():
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(lost.wait(), self._health)
                if lost.is_set() or self._closing:
                    return
                async with self._lock:
                    await asyncio.wait_for(conn.fetchval("SELECT 1"), max(self._health * 2, 1.0))
        finally:
            self._conn = None
            conn.terminate()

    async def join(self, feed: PostgresFeed) -> None:
        channel = feed.channel
        self.feeds.setdefault(channel, set()).add(feed)
        if self._task is None:
            await self.start(lambda _e: None, self._state)  # calls every feed's on_state(True)
            return
        async with self._lock:  # the loop LISTENs under this lock too: no channel slips between
            conn = self._conn
            if conn is not None and channel not in self._listening:
                try:
                    await conn.add_listener(channel, self._dispatch)
                    self._listening.add(channel)
                except Exception:  # the connection is going: the loop re-LISTENs on every channel
                    conn.terminate()
                    return
        if self._reported:
            await feed._state(self.up)

    async def leave(self, feed: PostgresFeed) -> bool:
        """Forget ``feed``; True when no feed is left (the caller then closes the listener)."""
        feeds = self.feeds.get(feed.channel)
        if feeds is not None:
            feeds.discard(feed)
            if not feeds:
                del self.feeds[feed.channel]
                with contextlib.suppress(Exception):
                    async with self._lock:
                        conn = self._conn
                        if conn is not None and feed.channel in self._listening:
                            self._listening.discard(feed.channel)
                            await conn.remove_listener(feed.channel, self._dispatch)
        return not self.feeds

    async def _close_publisher(self) -> None:
        """The listener publishes nothing."""


_LISTENERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, _Listener]] = (
    weakref.WeakKeyDictionary()
)


class PostgresFeed:
    """:class:`~keyfob.stores.RevocationFeed` over PostgreSQL ``LISTEN/NOTIFY`` (see the module docstring).

    ``url`` is the database to LISTEN on (its ``?listen_url=`` if it has one; ``?table_prefix=``
    picks the channel unless ``channel`` is given). ``publisher`` is a store's driver to publish
    through; without it the feed opens its own connection to ``url`` when it first publishes.
    """

    def __init__(self, url: str, *, channel: str | None = None, health_interval: float = 0.5,
                 connect_timeout: float = 3.0, publisher: Driver | None = None) -> None:  # fmt: skip
        opts = parse(url, {})
        self._dsn = pg_dsn(parse(opts.listen_url, {}).url if opts.listen_url else opts.url)
        self._pub_dsn = pg_dsn(opts.url)
        self.channel = channel if channel is not None else channel_for(opts.namespace)
        self._health = health_interval
        self._connect_timeout = connect_timeout
        self._publisher = publisher
        self._handler: FeedHandler | None = None
        self._on_state: StateHandler | None = None
        self._up: bool | None = None
        self._listener: _Listener | None = None
        self._pub: asyncpg.Connection | None = None
        self._pub_lock: asyncio.Lock | None = None

    async def _state(self, up: bool) -> None:
        if self._on_state is not None and self._up is not up:  # transitions only
            self._up = up
            await _call(self._on_state, up)

    async def start(self, handler: FeedHandler, on_state: StateHandler) -> None:
        """Join this process's listener for the DSN (opening it if this is the first feed)."""
        if self._listener is not None:
            return
        self._handler, self._on_state, self._up = handler, on_state, None
        loop = asyncio.get_running_loop()
        by_dsn = _LISTENERS.setdefault(loop, {})
        listener = by_dsn.get(self._dsn)
        if listener is None:
            listener = by_dsn[self._dsn] = _Listener(
                self._dsn, health_interval=self._health, connect_timeout=self._connect_timeout
            )
        self._listener = listener
        await listener.join(self)

    async def publish(self, event: Mapping[str, Any]) -> None:
        payload = json.dumps(event, separators=(",", ":"))
        if self._publisher is not None:  # the store's pool (works through PgBouncer too)
            await self._publisher.execute("SELECT pg_notify($1, $2)", (self.channel, payload))
            return
        if self._pub_lock is None:
            self._pub_lock = asyncio.Lock()
        async with self._pub_lock:
            for attempt in (0, 1):
                try:
                    if self._pub is None or self._pub.is_closed():
                        import asyncpg

                        self._pub = await asyncpg.connect(self._pub_dsn, timeout=self._connect_timeout)
                    await self._pub.execute("SELECT pg_notify($1, $2)", self.channel, payload)
                    return
                except Exception as exc:
                    if self._pub is not None:
                        self._pub.terminate()
                        self._pub = None
                    if attempt == 1:
                        raise StoreUnavailable(
                            f"cannot publish to PostgreSQL: {type(exc).__name__}: {exc}"
                        ) from exc

    async def close(self) -> None:
        """Leave the listener (closing it when this was its last feed) and drop the publisher."""
        listener, self._listener = self._listener, None
        self._handler = self._on_state = None
        if listener is not None and await listener.leave(self):
            by_dsn = _LISTENERS.get(asyncio.get_running_loop(), {})
            if by_dsn.get(listener.dsn) is listener:
                del by_dsn[listener.dsn]
            await listener.close()
        if self._pub is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._pub.close(), 2)
            self._pub = None

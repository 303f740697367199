"""The listener loop shared by the server-backed revocation feeds (Redis pub/sub, PostgreSQL NOTIFY).

A feed subclass says how to hold one subscription (:meth:`ReconnectingFeed._listen`); this module
owns what they have in common: the background task, reconnecting with exponential backoff
(0.05 s → 2 s) and full jitter (:func:`reconnect_delays`: each wait is drawn uniformly between 0 and
the exponential ceiling, so a fleet that lost its server does not reconnect — and resync — all at
once), reporting *transitions* of the line to ``on_state`` (up once subscribed, down once
lost — events may have been missed meanwhile, so the engine falls back to store reads), decoding
JSON payloads, and a clean shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import secrets
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Iterator
from typing import Protocol

from ._protocol import FeedHandler, StateHandler

__all__ = ["ReconnectingFeed", "deliver", "reconnect_delays"]

log = logging.getLogger("keyfob.feed")

_BACKOFF_FIRST = 0.05
_BACKOFF_MAX = 2.0


class Uniform(Protocol):
    """What draws the jitter: ``random.Random`` (seeded, in tests) or ``secrets.SystemRandom``."""

    def uniform(self, a: float, b: float) -> float: ...


def reconnect_delays(rng: Uniform | None = None, *, first: float = _BACKOFF_FIRST,
                     cap: float = _BACKOFF_MAX) -> Iterator[float]:
    """The waits before reconnect attempts 1, 2, 3…: exponential backoff with full jitter.

    Attempt ``n`` (from 0) waits ``uniform(0, min(cap, first * 2**n))`` seconds (AWS's "full
    jitter"): the ceiling doubles from ``first`` to ``cap``, and each wait is spread over the whole
    range below it, so N processes that lost the same server come back spread over it instead of
    in one burst (each resyncs with the store when it does). Endless; a new iterator starts over.
    """
    draw = (rng or secrets.SystemRandom()).uniform
    ceiling = first
    while True:
        yield draw(0.0, ceiling)
        ceiling = min(cap, ceiling * 2)


def deliver(handler: FeedHandler, payload: str | bytes) -> None:
    """Decode one published payload and hand it to ``handler``.

    Anything but a JSON object is logged (its size, never its content) and dropped, and so is an
    event the handler cannot apply: a garbled message never takes the listener down.
    """
    try:
        event = json.loads(payload)
    except ValueError:
        event = None
    if not isinstance(event, dict):
        log.warning("ignored a revocation feed message that is not a JSON object (%d bytes)", len(payload))
        return
    try:
        handler(event)
    except Exception:
        log.exception("ignored a revocation feed event that the view could not apply")


class ReconnectingFeed(ABC):
    """Base class: runs :meth:`_listen` in a task, reconnecting until :meth:`close`."""

    _task_name = "keyfob-feed"
    _connect_timeout: float

    def __init__(self) -> None:
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._rng: Uniform = secrets.SystemRandom()

    @abstractmethod
    async def _listen(self, handler: FeedHandler, subscribed: Callable[[], Awaitable[None]]) -> None:
        """Subscribe, ``await subscribed()`` once events will arrive, then deliver them until the
        connection is lost (raise) or the feed is closing (return). Closes its own connection."""

    @abstractmethod
    async def _close_publisher(self) -> None:
        """Release the connection that ``publish`` uses."""

    async def start(self, handler: FeedHandler, on_state: StateHandler) -> None:
        self._closing = False
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(self._run(handler, on_state, ready), name=self._task_name)
        # wait briefly for the first subscription so that events published right after start() arrive
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(ready), self._connect_timeout + 1)

    async def _run(self, handler: FeedHandler, on_state: StateHandler, ready: asyncio.Future[None]) -> None:
        delays = reconnect_delays(self._rng)
        up: bool | None = None  # on_state is called on transitions only

        async def subscribed() -> None:
            nonlocal up, delays
            delays = reconnect_delays(self._rng)
            if up is not True:
                up = True
                await _call(on_state, True)
            if not ready.done():
                ready.set_result(None)

        while not self._closing:
            try:
                await self._listen(handler, subscribed)
            except asyncio.CancelledError:
                raise
            except Exception:  # the line dropped: report it below and reconnect
                pass
            if self._closing:
                break
            if up is not False:
                up = False
                await _call(on_state, False)
            await asyncio.sleep(next(delays))

    async def close(self) -> None:
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        await self._close_publisher()


async def _call(fn: StateHandler, up: bool) -> None:
    result = fn(up)
    if inspect.isawaitable(result):
        await result

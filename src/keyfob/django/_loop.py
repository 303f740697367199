"""How sync Django code reaches keyfob's async engine: one event loop thread per process.

keyfob's stores are async and their connections belong to the event loop that opened them
(asyncpg, redis.asyncio, the revocation feed's listener task). Django calls the session engine
from sync code (WSGI; ``SessionMiddleware`` and sync views under ASGI, in asgiref's worker
thread) and from async code (``aload``/``asave``…, ``alogin``). So the engine lives on one
**home loop**, a daemon thread started on first use, and:

* a sync call submits the coroutine to the home loop and waits for it
  (``asyncio.run_coroutine_threadsafe(...).result()``): one thread hand-off each way, no new
  event loop per call (``async_to_sync`` outside ASGI would start a loop per call, and a
  loop-bound connection pool cannot survive that);
* an async call awaits the coroutine directly when it already runs on the home loop, and
  otherwise awaits the home loop's future (``asyncio.wrap_future``) without blocking its own
  loop: the async API never parks a worker thread, it is not ``sync_to_async`` around the sync one;
* after ``fork`` (gunicorn ``--preload``, uWSGI) the child forgets the parent's loop and engine
  (``os.register_at_fork``) and starts its own on first use: nothing hangs on a thread that was
  not forked;
* the per-request read takes a shortcut where the store offers one: SQLite's ``get_sync`` is a
  plain primary-key lookup on the store's held connection, run in the caller's thread with no
  hand-off at all (see ``session_backend``).

The measured cost of each path is in ``docs/quickstart/django.md`` ("How sync Django reaches the
async store").
"""

from __future__ import annotations

import asyncio
import atexit
import os
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["HomeLoop", "home"]

T = TypeVar("T")


class HomeLoop:
    """An event loop in a daemon thread, started lazily, that owns keyfob's connections."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        loop = self._loop
        if loop is not None:
            return loop
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                ready = threading.Event()

                def serve() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(ready.set)
                    loop.run_forever()

                self._thread = threading.Thread(target=serve, name="keyfob-django-loop", daemon=True)
                self._thread.start()
                ready.wait()
                self._loop = loop
            return self._loop

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the home loop from sync code and return its result (or raise its error)."""
        loop = self.loop
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            coro.close()
            raise RuntimeError("keyfob's sync Django API was called on keyfob's own event loop; "
                               "use the async API (aload, asave, ...) there")
        return asyncio.run_coroutine_threadsafe(coro, loop).result()

    async def arun(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await ``coro`` on the home loop from any event loop (directly when already on it)."""
        loop = self.loop
        if asyncio.get_running_loop() is loop:
            return await coro
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, loop))

    def forget_after_fork(self) -> None:
        """In a forked child: the parent's loop thread does not exist here; start afresh on next use."""
        self._loop, self._thread, self._lock = None, None, threading.Lock()

    def stop(self) -> None:
        """Stop the loop thread (at interpreter exit; tests that close the engine first)."""
        with self._lock:
            loop, thread, self._loop, self._thread = self._loop, self._thread, None, None
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        if not thread.is_alive():
            loop.close()


home = HomeLoop()
atexit.register(home.stop)
os.register_at_fork(after_in_child=home.forget_after_fork)

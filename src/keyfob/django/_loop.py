"""How Django reaches keyfob's async engine: one event loop per process, the *home* loop.

keyfob's stores are async and their connections belong to the loop that opened them (asyncpg,
redis.asyncio, the revocation feed's listener task). Django calls the session engine from sync code
(WSGI; ``SessionMiddleware`` and sync views under ASGI, in asgiref's worker thread) and from async
code (``aload``/``asave``…, ``alogin``, async views). Every engine call runs on the home loop:

* **By default the home loop is private** and nobody runs it in the background: a sync call runs it
  *in the calling thread* (``keyfob._pending_work.run_from_sync``), under a lock, so the threads of a process
  take turns. Measured (``benchmarks/django_bridge.py``): ~20 µs per call on a loaded 2-core machine,
  against ~100-200 µs for handing the call to a loop thread (``run_coroutine_threadsafe``: two thread
  wake-ups) and ~700 µs for ``async_to_sync`` outside ASGI (a new loop in a new thread per call, which a
  loop-bound pool cannot survive anyway). Background work — the revocation feed of the hybrid and
  jwt strategies — runs whenever a call runs the loop, and each call first runs the loop until
  it is quiet (``keyfob._pending_work``, shared with Flask), so a check never runs on a view that
  missed a revocation or an outage that already reached the socket; a call that finds the loop
  quiet already, and needs no I/O (hybrid on a live view), does not run the loop at all.
* **Under ASGI**, ``keyfob.django.asgi.get_asgi_application()`` makes the *server's* loop the home
  loop: async views, ``aload``/``asave`` and the async middleware path then await the store directly
  on it (no thread at all), and sync code in asgiref's worker threads submits to it and waits.
* An async call on a loop that is not the home loop (Django's ``AsyncClient`` in tests, or ASGI
  without the wrapper) runs the private loop in a worker thread (``asyncio.to_thread``) or waits
  on the home loop's future; it never blocks the caller's loop.
* After ``fork`` (gunicorn ``--preload``, uWSGI) the child forgets the parent's loop (and
  ``conf`` the engine): nothing is started at import, and a forked copy is never reused.
* The per-request read skips the loop altogether where the store has a plain lookup (SQLite's
  ``get_sync``), or is Django's own PostgreSQL database (the ``SELECT`` on Django's connection:
  ``keyfob.django._django_db``).
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from django.core.exceptions import SynchronousOnlyOperation

from .._pending_work import run_from_sync

__all__ = ["HomeLoop", "home"]

T = TypeVar("T")


class HomeLoop:
    """The event loop that owns keyfob's connections in this process (see the module docstring)."""

    def __init__(self) -> None:
        self._private: asyncio.AbstractEventLoop | None = None
        self._adopted: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()
        #: True while the engine has background work (a revocation feed) that only runs with the loop.
        self.pump = False

    @property
    def adopted(self) -> asyncio.AbstractEventLoop | None:
        """The server's loop, when ``adopt`` made it the home loop (ASGI), else None."""
        loop = self._adopted
        return loop if loop is not None and not loop.is_closed() else None

    def adopt(self, loop: asyncio.AbstractEventLoop) -> bool:
        """Make a long-lived running loop (an ASGI server's) the home loop, before any keyfob call.

        False (nothing changes) when another loop is already home, or the private loop has run:
        connections opened there cannot move to another loop.
        """
        with self._lock:
            if self._adopted is loop:
                return True
            if self.adopted is not None or self._private is not None:
                return False
            self._adopted = loop
            return True

    def _private_loop(self) -> asyncio.AbstractEventLoop:
        loop = self._private
        if loop is None or loop.is_closed():
            loop = self._private = asyncio.new_event_loop()
        return loop

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the home loop from sync code and return its result (or raise its error)."""
        adopted = self.adopted
        running = asyncio.events._get_running_loop()  # None outside async code (no exception raised)
        if running is not None and (adopted is None or running is adopted):
            coro.close()
            raise SynchronousOnlyOperation(
                "keyfob's sync Django API was called from async code (a running event loop): use the "
                "async API there (aload, asave, acycle_key, ...), or sync_to_async")
        if adopted is not None:
            return asyncio.run_coroutine_threadsafe(coro, adopted).result()
        with self._lock:
            return run_from_sync(self._private_loop(), coro, catch_up=self.pump)

    async def arun(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await ``coro`` on the home loop from async code (directly when already on it)."""
        running = asyncio.get_running_loop()
        adopted = self.adopted
        if adopted is running:
            return await coro
        if adopted is not None:
            return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, adopted))
        return await asyncio.to_thread(self.run, coro)

    def forget_after_fork(self) -> None:
        """In a forked child: the parent's loops (their selectors, threads, connections) are not ours."""
        self._private, self._adopted, self._lock = None, None, threading.Lock()

    def stop(self) -> None:
        """Close the private loop (tests; the engine must be closed first)."""
        with self._lock:
            loop, self._private = self._private, None
            self._adopted = None
        if loop is not None and not loop.is_closed():
            loop.close()


home = HomeLoop()
os.register_at_fork(after_in_child=home.forget_after_fork)

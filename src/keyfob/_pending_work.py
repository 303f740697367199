"""Catching up an event loop that runs only when a request runs it (Flask's process loop, Django's
private home loop under WSGI).

Such a loop sits still between requests, so whatever reached its sockets meanwhile — a revocation
feed message, a dropped line (the store server died), the listener's health check coming due after
an idle gap — is handled only once a request runs the loop again. Each call therefore first runs the
loop until it is quiet, and only then checks the session: otherwise the check runs on a revocation
view that has not yet heard of the revocation, or of the outage (and serves 200 where the store is
gone: fail open).

A fixed few iterations is not enough: after the kill of the store server, noticing the drop takes
the selector's event, the transport's callback, the reader's wake-up, the listener's error path and
the view's state change, each one iteration. Each iteration here polls I/O and runs what it made
ready; the loop is quiet once the run queue holds nothing but this task (bounded, in case a callback
keeps rescheduling itself).
"""

from __future__ import annotations

import asyncio

__all__ = ["PUMP_MAX", "let_pending_work_in"]

#: Most loop iterations a call runs first to let pending work in (a few are usually enough).
PUMP_MAX = 64


async def let_pending_work_in() -> None:
    """Run the loop until nothing but the caller is ready to run (at most :data:`PUMP_MAX` iterations)."""
    loop = asyncio.get_running_loop()
    ready = getattr(loop, "_ready", None)  # CPython's run queue (asyncio.BaseEventLoop)
    for _ in range(PUMP_MAX):
        await asyncio.sleep(0)
        if ready is not None and not ready:
            return

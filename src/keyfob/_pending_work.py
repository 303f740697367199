"""Catching up an event loop that runs only when a request runs it (Flask's process loop, Django's
private home loop under WSGI), and running one call on it from sync code.

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

:func:`run_from_sync` is the one way both adapters run a call. Since nothing else runs the loop,
between two calls only the sockets and the clock can change: when its run queue is empty, no timer
is due and a zero-timeout poll of its selector reports no event, catching up would run nothing and
is skipped (:func:`is_quiet`). Then the call's task takes its first step at once, without a pass of
the loop (``run_until_complete`` costs two passes, each polling the selector, around one step);
the loop runs only when that step suspends (the call waits for I/O) or scheduled other work. Per
Django request (hybrid, live view; callgrind): ~97k instructions for catching up and running the
call before, ~27k after (``benchmarks/callgrind_django.py``).
"""

from __future__ import annotations

import asyncio
from asyncio import events
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["PUMP_MAX", "is_quiet", "let_pending_work_in", "run_from_sync"]

T = TypeVar("T")

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


def is_quiet(loop: asyncio.AbstractEventLoop) -> bool:
    """Would catching up ``loop`` (not running) run nothing? Its run queue is empty, no timer is due,
    and its selector has no event. False whenever that cannot be told (a loop other than CPython's
    selector loop): then the caller catches up."""
    ready = getattr(loop, "_ready", None)  # CPython's BaseEventLoop: the run queue,
    timers = getattr(loop, "_scheduled", None)  # the timer heap (earliest first),
    selector = getattr(loop, "_selector", None)  # and BaseSelectorEventLoop's selector
    if ready is None or timers is None or selector is None or ready:
        return False
    if timers and timers[0].when() <= loop.time():  # due (or cancelled, not yet dropped: catch up)
        return False
    return not selector.select(0)  # level-triggered: an event seen here is seen again by the loop


def run_from_sync(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, T], *, catch_up: bool) -> T:
    """Run ``coro`` on ``loop`` (not running; the caller holds the loop's lock) and return its result.

    ``catch_up``: the loop has background work (a revocation feed) that must run first, unless the
    loop is quiet (module docstring). ``coro`` always runs in a task of ``loop``, as under
    ``run_until_complete``; when the task was the only thing ready, its first step is taken here, and
    the loop runs only if the task is not done by then or the step scheduled other work.
    """
    if catch_up and not is_quiet(loop):
        loop.run_until_complete(let_pending_work_in())
    ready = getattr(loop, "_ready", None)
    task = loop.create_task(coro)
    if ready is not None and len(ready) == 1 and events._get_running_loop() is None:
        step = ready.popleft()  # the task's first step, the one thing to run
        events._set_running_loop(loop)  # what run_forever sets: get_running_loop() inside the task
        try:
            step._run()
        finally:
            events._set_running_loop(None)
        if task.done() and not ready:
            return task.result()
    return loop.run_until_complete(task)  # suspended (waits for I/O), or left work: run the loop

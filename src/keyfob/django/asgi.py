"""``get_asgi_application()``: Django's ASGI app, with keyfob's engine on the server's event loop.

```python
# asgi.py
from keyfob.django.asgi import get_asgi_application
application = get_asgi_application()        # instead of django.core.asgi.get_asgi_application()
```

With it, async views, ``aload``/``asave``/``alogin`` and ``KeyfobMiddleware``'s async path await the
store directly on the server's loop (no thread); sync code (Django's ``SessionMiddleware``, sync
views, in asgiref's worker threads) submits to that loop and waits. Without it, everything works
too, on keyfob's private loop (see ``keyfob.django._loop``). It also answers the ASGI ``lifespan``
protocol: the engine starts at startup and its connections close at shutdown.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from ._loop import home

__all__ = ["get_asgi_application"]

log = logging.getLogger("keyfob")
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def get_asgi_application() -> ASGIApp:
    """Django's ``get_asgi_application()``, with keyfob's home loop set to the server's loop."""
    from django.core.asgi import get_asgi_application as django_asgi

    django_app = django_asgi()
    adopted: list[bool] = []

    def adopt() -> None:
        if adopted:
            return
        adopted.append(True)
        loop = asyncio.get_running_loop()
        if home.adopt(loop):
            return
        if home.adopted is None:
            # keyfob ran on its private loop before the server started (a migrate, a warm-up): close
            # that engine there (in a helper thread: this one runs the server's loop), then move over
            from .conf import reset

            helper = threading.Thread(target=reset, name="keyfob-loop-switch")
            helper.start()
            helper.join()
            home.stop()
            if home.adopt(loop):
                return
        log.warning("keyfob already runs on another event loop; the ASGI server's loop is not adopted")

    async def application(scope: Scope, receive: Receive, send: Send) -> None:
        adopt()
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        await django_app(scope, receive, send)

    return application


async def _lifespan(receive: Receive, send: Send) -> None:
    from .conf import astarted_fob, get_fob

    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            try:
                await astarted_fob()
            except Exception as exc:  # a store that is down at boot: say so, the server decides
                await send({"type": "lifespan.startup.failed", "message": f"keyfob could not start: {exc}"})
                return
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await home.arun(get_fob().close())
            await send({"type": "lifespan.shutdown.complete"})
            return

"""One hybrid node for ``test_propagation.py``: ``uvicorn tests.integrations._hybrid_node:factory --factory``.

The benchmark's keyfob app (:mod:`keyfob._bench.apps`: ``KFBENCH_APP`` names the store, its
key/table prefix and the feed channel; ``GET /p`` needs a session; keyfob's ``/auth`` routes) plus
``POST /signin`` (``{"user": ...}``) and ``GET /live`` (is this node's revocation view fed live?).
"""

from __future__ import annotations

import json
import os
from typing import Any

from fastapi import FastAPI, Request

from keyfob import Keyfob
from keyfob._bench.apps import _keyfob_app
from keyfob.fastapi import sign_in


def factory() -> FastAPI:
    app = _keyfob_app(json.loads(os.environ["KFBENCH_APP"]))
    fob: Keyfob = app.state.keyfob

    @app.post("/signin")
    async def signin(request: Request) -> dict[str, Any]:
        body = await request.json()
        issued = await sign_in(request, str(body["user"]), {"role": "user"})
        return {"sid": issued.session.id}

    @app.get("/live")
    async def live() -> dict[str, bool]:
        return {"live": fob.view.live}

    return app

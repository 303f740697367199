"""Flask integration: the same engine, driven from sync views through one long-lived event loop.

```python
from flask import Flask
from keyfob import Keyfob
from keyfob.flask import KeyfobFlask, current_session, login_required, sign_in, sign_out

app = Flask(__name__)
kf = KeyfobFlask(app, Keyfob.from_env())

@app.post("/login")
def login():
    sign_in("user-1", {"role": "admin"})
    return redirect("/")

@app.get("/me")
@login_required
def me():
    return {"user": current_session().user_id}
```

Like Starlette's ``TestClient``, one ``anyio`` blocking portal (an event loop in a helper
thread) per app runs the async engine; Flask views stay sync.
"""

from __future__ import annotations

import atexit
import functools
from collections.abc import Callable, Coroutine, Mapping
from contextlib import AbstractContextManager
from typing import Any, ParamSpec, TypeVar

from anyio.from_thread import BlockingPortal, start_blocking_portal
from flask import Flask, Response, current_app, g, jsonify, request

from ._session import RequestMeta, Session
from .engine import Issued, Keyfob
from .errors import ConfigError, KeyfobError, SessionError, StoreUnavailable
from .web import SetCookie, is_local_development

__all__ = ["KeyfobFlask", "current_session", "login_required", "sign_in", "sign_out"]

P = ParamSpec("P")
R = TypeVar("R")


class KeyfobFlask:
    """Authenticates every request into ``g.keyfob_session`` and writes the cookies after it."""

    def __init__(self, app: Flask | None = None, fob: Keyfob | None = None) -> None:
        self.fob: Keyfob | None = fob
        self._portal_cm: AbstractContextManager[BlockingPortal] | None = None
        self.portal: BlockingPortal | None = None
        if app is not None and fob is not None:
            self.init_app(app, fob)

    def init_app(self, app: Flask, fob: Keyfob) -> None:
        self.fob = fob
        self._portal_cm = start_blocking_portal()
        self.portal = self._portal_cm.__enter__()
        atexit.register(self.close)
        app.extensions["keyfob"] = self
        app.before_request(self._before)
        app.after_request(self._after)

        @app.errorhandler(KeyfobError)
        def _handle(exc: KeyfobError) -> tuple[Response, int]:
            return jsonify({"error": exc.code, "detail": str(exc)}), exc.status_code

    def close(self) -> None:
        """Close the engine and stop the portal's event loop."""
        if self.portal is not None and self.fob is not None:
            try:
                self.portal.call(self.fob.close)
            except Exception:
                pass
        if self._portal_cm is not None:
            cm, self._portal_cm, self.portal = self._portal_cm, None, None
            cm.__exit__(None, None, None)

    def call(self, fn: Callable[P, Coroutine[Any, Any, R]], *args: P.args, **kwargs: P.kwargs) -> R:
        """Run an engine coroutine from a sync view."""
        if self.portal is None:
            raise ConfigError("KeyfobFlask has no engine yet", hint="call KeyfobFlask(app, fob)")
        result: R = self.portal.call(functools.partial(fn, *args, **kwargs))
        return result

    def secure(self) -> bool:
        assert self.fob is not None
        if self.fob.settings.cookie_secure is not None:
            return self.fob.settings.cookie_secure
        return not is_local_development(request.scheme, request.host)

    def _before(self) -> tuple[Response, int] | None:
        assert self.fob is not None
        cookies: Mapping[str, str] = request.cookies
        g.keyfob_pending = []
        g.keyfob_secure = self.secure()
        try:
            result = self.call(self.fob.authenticate, cookies, secure=g.keyfob_secure)
        except StoreUnavailable as exc:
            return jsonify({"error": exc.code, "detail": str(exc)}), 503
        g.keyfob_session = result.session
        g.keyfob_result = result
        return None

    def _after(self, response: Response) -> Response:
        pending: list[SetCookie] = getattr(g, "keyfob_pending", [])
        result = getattr(g, "keyfob_result", None)
        rolled = [] if pending or result is None else result.cookies
        for c in [*rolled, *pending]:
            response.headers.add("Set-Cookie", c.header())
        return response


def _ext() -> KeyfobFlask:
    ext = current_app.extensions.get("keyfob")
    if not isinstance(ext, KeyfobFlask) or ext.fob is None:
        raise KeyfobError("KeyfobFlask is not set up on this app", hint="KeyfobFlask(app, fob)")
    return ext


def current_session() -> Session | None:
    """The request's session, or None."""
    _ext()
    return getattr(g, "keyfob_session", None)


def sign_in(user_id: str, data: Mapping[str, Any] | None = None) -> Issued:
    """Create a session (fresh id) and set its cookies on the response."""
    ext = _ext()
    assert ext.fob is not None
    meta = RequestMeta(ip=request.remote_addr, user_agent=(request.user_agent.string or None))
    issued = ext.call(ext.fob.create, user_id, data, meta, secure=g.keyfob_secure, cookies=request.cookies)
    g.keyfob_pending.extend(issued.cookies)
    g.keyfob_session = issued.session
    return issued


def sign_out() -> None:
    """Revoke the current session and clear its cookies."""
    ext = _ext()
    assert ext.fob is not None
    g.keyfob_pending.extend(ext.call(ext.fob.sign_out, request.cookies, secure=g.keyfob_secure))
    g.keyfob_session = None


def login_required(view: Callable[P, R]) -> Callable[P, R]:
    """401 ``{"error": ..., "detail": ...}`` unless the request has a session."""

    @functools.wraps(view)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        if current_session() is None:
            result = getattr(g, "keyfob_result", None)
            raise (result.error if result is not None and result.error is not None
                   else SessionError("you are not signed in", hint="sign in first"))
        return view(*args, **kwargs)

    return wrapper

"""Flask integration: a Flask extension over the request core, with Flask-Login's conventions.

```python
from flask import Flask, redirect
from keyfob import Keyfob
from keyfob.flask import KeyfobFlask, current_session, login_required, role_required, sign_in

app = Flask(__name__)
kf = KeyfobFlask(app, Keyfob.from_env(), login_view="login")   # or kf = KeyfobFlask(); kf.init_app(app, fob)

@app.post("/login")
def login():
    sign_in("user-1", {"role": "admin"})        # after checking the password
    return redirect("/")

@app.get("/me")
@login_required                                  # JSON 401, or a redirect to login_view for HTML
def me():
    return {"user": current_session().user_id}

@app.post("/admin/purge")
@role_required("admin")                          # 401 / 403
def purge(): ...
```

* Every request goes through :class:`keyfob.web.RequestCore`: the same credential choice, CSRF
  check (on by default; forms send ``csrf_token``, scripts ``X-CSRF-Token``; templates get
  ``csrf_token()``), rolling cookies, cache headers and error statuses as Starlette and FastAPI.
* A blueprint serves the ``/auth`` routes (``GET /auth/session``, ``GET /auth/csrf``,
  ``GET /auth/sessions``, ``DELETE /auth/sessions/<id>``, ``POST /auth/sessions/revoke-others``,
  ``POST /auth/signout``, ``POST /auth/refresh``) and ``/.well-known/jwks.json``.
* Sync helpers: :func:`sign_in`, :func:`sign_out`, :func:`revoke`, :func:`revoke_others`,
  :func:`list_sessions`, :func:`bump_user_version`, :func:`csrf_token`.

**How sync views drive the async engine, and why it is fork-safe.** Each *process* gets one plain
asyncio event loop, created at its first keyfob call (never at ``KeyfobFlask(app, fob)``, so
``gunicorn --preload``, uWSGI and multiprocessing fork a process with nothing started). The thread
that needs the engine runs that loop itself (``keyfob._pending_work.run_from_sync``), under a lock, so the
threads of one process take turns: about 9 µs per call, against 40-120 µs for handing each call to
a loop thread (``run_coroutine_threadsafe``) and 160 µs for an anyio blocking portal, which also
hangs when started again in a forked child. Background work (the hybrid strategy's revocation feed)
runs whenever a request runs the loop; each call first runs the loop until it is quiet, so
feed messages (or a dropped line) that arrived while the process idled are applied first (a call
that finds the loop quiet, and needs no I/O, does not run it at all). A request
without keyfob cookies or a bearer token never touches the loop.
"""

from __future__ import annotations

import asyncio
import functools
import os
import threading
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any, ParamSpec, TypeVar, overload

from flask import Blueprint, Flask, Response, current_app, g, jsonify, redirect, request, url_for
from werkzeug.wrappers import Response as BaseResponse

from ._pending_work import run_from_sync
from ._session import RequestMeta, Session, SessionInfo
from .engine import AuthResult, Issued, Keyfob
from .errors import ConfigError, CSRFError, KeyfobError, StoreUnavailable
from .web import (
    CSRF_FIELD,
    MAX_FORM_BYTES,
    AuthRoutes,
    Forbidden,
    RequestCore,
    RequestState,
    RequestView,
    SetCookie,
    error_parts,
)
from .web._cookies import parse_joined_cookie_header

__all__ = [
    "KeyfobFlask",
    "bump_user_version",
    "csrf_token",
    "current_session",
    "fresh_required",
    "list_sessions",
    "login_required",
    "require_session",
    "revoke",
    "revoke_others",
    "role_required",
    "sign_in",
    "sign_out",
]

P = ParamSpec("P")
R = TypeVar("R")
_ANONYMOUS = AuthResult(None)
_SAFE = frozenset({"GET", "HEAD", "OPTIONS"})


class _ProcessLoop:
    """One asyncio loop per process, made on first use and run by the calling thread (see module doc)."""

    def __init__(self, pump: bool) -> None:
        self._pid = -1
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()
        self._pump = pump

    def run(self, coro: Coroutine[Any, Any, R]) -> R:
        with self._lock:
            loop = self._loop
            if loop is None or self._pid != os.getpid():
                # First call in this process (or a forked child, whose copy of the parent's loop
                # has no thread, selector or connections worth keeping): start afresh.
                loop = self._loop = asyncio.new_event_loop()
                self._pid = os.getpid()
            return run_from_sync(loop, coro, catch_up=self._pump)

    def close(self, final: Callable[[], Coroutine[Any, Any, None]] | None = None) -> None:
        with self._lock:
            loop, self._loop = self._loop, None
            if loop is None or self._pid != os.getpid() or loop.is_closed():
                return
            try:
                if final is not None:
                    loop.run_until_complete(final())
            finally:
                loop.close()


class KeyfobFlask:
    """The Flask extension: authenticates every request into ``g`` and writes the cookies after it.

    ``login_view``: the endpoint :func:`login_required` redirects HTML requests to (with ``next``);
    JSON/API requests get a 401 either way. ``csrf``/``csrf_exempt``: as ``KeyfobMiddleware``.
    ``routes=False`` leaves the ``/auth`` blueprint out. Nothing is started here (fork-safe).
    """

    def __init__(self, app: Flask | None = None, fob: Keyfob | None = None, *, login_view: str | None = None,
                 csrf: bool | None = None, csrf_exempt: tuple[str, ...] = (), routes: bool = True) -> None:
        self.fob: Keyfob | None = fob
        self.login_view = login_view
        self._csrf = csrf
        self._csrf_exempt = csrf_exempt
        self._routes = routes
        self.core: RequestCore | None = None
        self.loop: _ProcessLoop | None = None
        if app is not None:
            if fob is None:
                raise ConfigError("KeyfobFlask(app) needs the engine too",
                                  hint="KeyfobFlask(app, Keyfob.from_env()), or KeyfobFlask() and then "
                                       "init_app(app, fob)")
            self.init_app(app, fob)

    def init_app(self, app: Flask, fob: Keyfob | None = None) -> None:
        """Register the request hooks, the error handler, the ``/auth`` blueprint and ``csrf_token``."""
        fob = fob or self.fob
        if fob is None:
            raise ConfigError("KeyfobFlask has no engine", hint="call init_app(app, Keyfob.from_env())")
        self.fob = fob
        self.core = RequestCore(fob, csrf=self._csrf, csrf_exempt=self._csrf_exempt)
        self.loop = _ProcessLoop(pump=fob.feed is not None)
        app.extensions["keyfob"] = self
        app.before_request(self._before)
        app.after_request(self._after)
        app.register_error_handler(KeyfobError, _error_response)
        app.add_template_global(csrf_token, "csrf_token")
        if self._routes:
            app.register_blueprint(_auth_blueprint(fob))

    def call(self, fn: Callable[P, Coroutine[Any, Any, R]], *args: P.args, **kwargs: P.kwargs) -> R:
        """Run an engine coroutine from sync code (``kf.call(fob.revoke_user, "u1")``)."""
        if self.loop is None:
            raise ConfigError("KeyfobFlask has no engine yet", hint="call KeyfobFlask(app, fob)")
        return self.loop.run(fn(*args, **kwargs))

    def close(self) -> None:
        """Close the engine's connections and this process's loop (tests, shutdown hooks)."""
        if self.loop is not None and self.fob is not None:
            self.loop.close(self.fob.close)

    def _before(self) -> None:
        core = self.core
        assert core is not None and self.loop is not None
        cookie_header = request.headers.get("Cookie")
        headers = request.headers
        view = RequestView(method=request.method, scheme=request.scheme, host=request.host, path=request.path,
                           cookies=parse_joined_cookie_header(cookie_header) if cookie_header else {},
                           authorization=headers.get("Authorization"))
        if view.method not in _SAFE:
            origins = headers.getlist("Origin")
            view.origin = origins[0] if origins else None
            view.origin_count = len(origins)
            view.referer = headers.get("Referer")
            view.sec_fetch_site = headers.get("Sec-Fetch-Site")
            view.csrf_header = headers.get("X-CSRF-Token")
            view.content_type = headers.get("Content-Type")
        if core.binds:  # session binding: the device goes with every check
            view.client_ip = request.remote_addr
            view.user_agent = headers.get("User-Agent")
        req = core.begin(view)
        g.keyfob_request = req
        if not view.cookies and req.bearer is None:
            result = _ANONYMOUS  # nothing to check: the loop is not touched
        else:
            try:
                result = self.loop.run(core.authenticate(req))  # type: ignore[arg-type]
            except StoreUnavailable as exc:  # a GET may reach a view with outage_grace; else 503
                result = req.defer(exc)
        if req.admit(result):
            if (request.content_length or 0) > MAX_FORM_BYTES:
                raise CSRFError("the form is too large to check for a CSRF token",
                                hint="send the token in the X-CSRF-Token header")
            req.check_csrf(request.form.get(CSRF_FIELD))

    def _after(self, response: Response) -> Response:
        req: RequestState | None = g.get("keyfob_request")
        if req is not None and req.outage is not None:  # an outage no view bridged: fail closed
            return _error_response(req.outage)
        if req is None or not req.touches_response():
            return response
        headers = response.headers
        for name, value in req.finish(cache_control="Cache-Control" in headers, vary=headers.get("Vary")):
            headers.add(name, value)
        return response


def _error_response(exc: KeyfobError) -> Response:
    status, body, headers = error_parts(exc)
    response = jsonify(body)
    response.status_code = status
    for k, v in headers.items():
        response.headers[k] = v
    return response


def _ext() -> KeyfobFlask:
    ext = current_app.extensions.get("keyfob")
    if not isinstance(ext, KeyfobFlask) or ext.fob is None:
        raise ConfigError("KeyfobFlask is not set up on this app", hint="KeyfobFlask(app, fob)")
    return ext


def _req() -> RequestState:
    req: RequestState | None = g.get("keyfob_request")
    if req is None:
        raise ConfigError("no keyfob request state: this runs outside a request, or before KeyfobFlask's "
                          "hook", hint="call it from a view of an app set up with KeyfobFlask(app, fob)")
    return req


def _run(fn: Callable[P, Coroutine[Any, Any, R]], *args: P.args, **kwargs: P.kwargs) -> R:
    return _ext().call(fn, *args, **kwargs)


def _fob() -> Keyfob:
    fob = _ext().fob
    assert fob is not None
    return fob


# -- the session ----------------------------------------------------------------------------------------

def current_session() -> Session | None:
    """The request's session, or None."""
    return _req().session


def csrf_token() -> str:
    """The CSRF token for this request's forms (``<input name="csrf_token" value="{{ csrf_token() }}">``)
    or for ``X-CSRF-Token``; bound to the session, its cookie set on the response when new."""
    return _req().csrf_token()


def _meta() -> RequestMeta:
    return RequestMeta(ip=request.remote_addr, user_agent=(request.user_agent.string or None))


def sign_in(user_id: str, data: Mapping[str, Any] | None = None, *, remember: bool = True,
            amr: Sequence[str] = ()) -> Issued:
    """Create a session (fresh id) and set its cookies on the response (and a new CSRF token).
    ``remember=False`` ("don't remember me"): browser-session cookies and the browser-session
    lifetimes; ``amr``: the methods the user just proved (``["pwd"]``)."""
    req = _req()
    issued = _run(_fob().create, user_id, data, _meta(), secure=req.secure, cookies=req.cookies,
                  remember=remember, amr=amr)
    req.signed_in(issued)
    return issued


def sign_out() -> None:
    """Revoke the current session and clear its cookies."""
    req = _req()
    cleared: list[SetCookie] = _run(_fob().sign_out, req.cookies, secure=req.secure)
    req.signed_out(cleared)


def revoke(session_id: str) -> bool:
    """Revoke one session by id (an admin action; a user's own: ``DELETE /auth/sessions/<id>``)."""
    return _run(_fob().revoke, session_id)


def revoke_others() -> int:
    """Sign the current user out everywhere else; this browser stays signed in. Returns the count."""
    req = _req()
    req.require()
    n, reissued = _run(_fob().revoke_others, req.cookies, secure=req.secure)
    if reissued is not None:
        req.replaced(reissued)
    return n


def list_sessions(user_id: str | None = None) -> list[SessionInfo]:
    """The active sessions of ``user_id`` (default: the signed-in user), the current one marked."""
    session = _req().session
    if user_id is None:
        user_id = _req().require().user_id
    return _run(_fob().list_sessions, user_id, current=session.id if session is not None else None)


def bump_user_version(user_id: str) -> int:
    """Invalidate every token of a user at its next use (password change, suspension)."""
    return _run(_fob().bump_user_version, user_id)


# -- decorators ----------------------------------------------------------------------------------------

def _wants_html() -> bool:
    best = request.accept_mimetypes.best_match(["application/json", "text/html"])
    return best == "text/html" and request.method in _SAFE


def _signed_in_or_stop() -> Session | BaseResponse:
    req = _req()
    if req.session is not None:
        return req.session
    view = _ext().login_view
    if view is not None and _wants_html():
        return redirect(url_for(view, next=request.full_path.rstrip("?")))
    return req.require()  # raises the 401


def login_required(view: Callable[P, R]) -> Callable[P, R | BaseResponse]:
    """401 ``{"error": ..., "detail": ...}`` unless signed in; HTML requests are redirected to
    ``login_view`` (with ``next``) when the extension has one, as Flask-Login does."""

    @functools.wraps(view)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R | BaseResponse:
        outcome = _signed_in_or_stop()
        if isinstance(outcome, BaseResponse):
            return outcome
        return view(*args, **kwargs)

    return wrapper


def role_required(*roles: str) -> Callable[[Callable[P, R]], Callable[P, R | BaseResponse]]:
    """Like :func:`login_required`, then 403 unless ``session.role`` is one of ``roles``."""
    allowed = frozenset(roles)

    def decorate(view: Callable[P, R]) -> Callable[P, R | BaseResponse]:
        @functools.wraps(view)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R | BaseResponse:
            outcome = _signed_in_or_stop()
            if isinstance(outcome, BaseResponse):
                return outcome
            if outcome.role not in allowed:
                raise Forbidden(f"this needs the role {' or '.join(sorted(allowed))}",
                                hint="sign in with an account that has it")
            return view(*args, **kwargs)

        return wrapper

    return decorate


@overload
def fresh_required(view: Callable[P, R], /) -> Callable[P, R | BaseResponse]: ...
@overload
def fresh_required(
    *, max_age: float | None = None
) -> Callable[[Callable[P, R]], Callable[P, R | BaseResponse]]: ...


def fresh_required(view: Any = None, /, *, max_age: float | None = None) -> Any:
    """For sensitive views: like :func:`login_required`, then 403 ``reauthentication_required`` when
    the sign-in is older than ``max_age`` seconds (default ``settings.fresh_age``). Use bare
    (``@fresh_required``) or with the age (``@fresh_required(max_age=300)``)."""

    def decorate(inner: Callable[P, R]) -> Callable[P, R | BaseResponse]:
        @functools.wraps(inner)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R | BaseResponse:
            outcome = _signed_in_or_stop()
            if isinstance(outcome, BaseResponse):
                return outcome
            if not _fob().is_fresh(outcome, max_age):
                exc = Forbidden("this action needs a recent sign-in", hint="sign in again, then retry")
                exc.code = "reauthentication_required"  # type: ignore[misc]
                raise exc
            return inner(*args, **kwargs)

        return wrapper

    return decorate(view) if view is not None else decorate


@overload
def require_session(view: Callable[P, R], /) -> Callable[P, R | BaseResponse]: ...
@overload
def require_session(
    *, max_staleness: float | None = None, outage_grace: float = 0, fresh: float | None = None,
    level: int | None = None,
) -> Callable[[Callable[P, R]], Callable[P, R | BaseResponse]]: ...


def require_session(view: Any = None, /, *, max_staleness: float | None = None, outage_grace: float = 0,
                    fresh: float | None = None, level: int | None = None) -> Any:
    """Like :func:`login_required`, with the route's session policy: ``max_staleness=0`` (the store
    confirms this request, every strategy), ``outage_grace`` (seconds of a store outage this view
    may be answered from the revocation view), ``fresh`` / ``level`` (403 ``step_up_required`` with
    what to do). Use bare (``@require_session``) or with options
    (``@require_session(max_staleness=0, fresh=600)``). See docs/SESSION_POLICY.md."""
    confirm = max_staleness is not None or bool(outage_grace)

    def decorate(inner: Callable[P, R]) -> Callable[P, R | BaseResponse]:
        @functools.wraps(inner)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R | BaseResponse:
            req = _req()
            if confirm:
                fob = _fob()
                _run(req.confirm, max_staleness=max_staleness, outage_grace=outage_grace,
                     meta=_meta() if fob.settings.bind is not None else None)
            outcome = _signed_in_or_stop()
            if isinstance(outcome, BaseResponse):
                return outcome
            req.require(fresh=fresh, level=level)
            return inner(*args, **kwargs)

        return wrapper

    return decorate(view) if view is not None else decorate


# -- the /auth blueprint -------------------------------------------------------------------------------

def _auth_blueprint(fob: Keyfob) -> Blueprint:
    base = fob.settings.auth_path.rstrip("/")
    bp = Blueprint("keyfob", __name__)
    routes = AuthRoutes(fob)

    def reply(outcome: tuple[int, Any], cache: str = "no-store") -> Response:
        status, body = outcome
        response = jsonify(body)
        response.status_code = status
        response.headers["Cache-Control"] = cache
        return response

    @bp.get(f"{base}/session")
    def session() -> Response:
        return reply(_run(routes.session, _req()))

    @bp.get(f"{base}/csrf")
    def csrf() -> Response:
        return reply(_run(routes.csrf, _req()))

    @bp.get(f"{base}/sessions")
    def sessions() -> Response:
        return reply(_run(routes.sessions, _req()))

    @bp.delete(f"{base}/sessions/<sid>")
    def delete_session(sid: str) -> Response:
        return reply(_run(routes.delete_session, _req(), sid))

    @bp.post(f"{base}/sessions/revoke-others")
    def revoke_others_route() -> Response:
        return reply(_run(routes.revoke_others, _req()))

    @bp.post(f"{base}/signout")
    def signout() -> Response:
        return reply(_run(routes.signout, _req()))

    @bp.post(f"{base}/session")
    def update_session() -> Response:
        return reply(_run(routes.update, _req(), request.content_type, request.get_data()))

    @bp.post(f"{base}/refresh")
    def refresh() -> Response:
        return reply(_run(routes.refresh, _req(), request.content_type, request.get_data()))

    @bp.get("/.well-known/jwks.json")
    def jwks() -> Response:
        return reply(routes.jwks(), cache="public, max-age=300")

    return bp

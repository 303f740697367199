"""Starlette integration: pure ASGI middleware and the ``/auth`` routes.

```python
from keyfob import Keyfob
from keyfob.starlette import KeyfobMiddleware, auth_routes

fob = Keyfob.from_env()
app = Starlette(routes=[*auth_routes(fob), ...])
app.add_middleware(KeyfobMiddleware, fob=fob)
# in an endpoint: request.state.session  → keyfob.Session | None
```

The middleware is a thin adapter over the request core (:mod:`keyfob.web`): it builds a
:class:`~keyfob.web.RequestView` from the ASGI scope in one pass over the headers, runs the core's
steps, exposes ``request.state.session`` (and ``request.state.keyfob_request``, the core's
state), and only wraps ``send`` to add the core's headers on ``http.response.start``. A bad cookie
never raises: it is simply no session (401 where one is required). A store outage answers 503.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping, MutableMapping, Sequence
from typing import Any
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ._session import RequestMeta, Session
from .engine import Issued, Keyfob
from .errors import CSRFError, KeyfobError, StoreUnavailable
from .web import (
    CSRF_FIELD,
    MAX_FORM_BYTES,
    AuthRoutes,
    RequestCore,
    RequestState,
    RequestView,
    error_parts,
)
from .web._cookies import parse_cookie_bytes
from .web._request import NO_STORE, SESSION_HEADERS, VARY_COOKIE

__all__ = [
    "KeyfobMiddleware",
    "auth_routes",
    "csrf_token",
    "current_session",
    "error_response",
    "get_keyfob",
    "keyfob_request",
    "require_session",
    "sign_in",
    "sign_out",
]


def error_response(exc: KeyfobError) -> JSONResponse:
    """``{"error": code, "detail": message}`` with the error's status (401, 403, 503...)."""
    status, body, headers = error_parts(exc)
    return JSONResponse(body, status_code=status, headers=headers or None)


class KeyfobMiddleware:
    """Authenticate each request; expose ``request.state.session``; write cookies; check CSRF.

    ``csrf`` overrides ``settings.csrf``; ``csrf_exempt`` lists path prefixes that skip the check.
    """

    def __init__(self, app: ASGIApp, fob: Keyfob, *, csrf: bool | None = None,
                 csrf_exempt: tuple[str, ...] = ()) -> None:
        self.app = app
        self.fob = fob
        self.core = RequestCore(fob, csrf=csrf, csrf_exempt=csrf_exempt)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        core = self.core
        req = RequestState(core, _view(scope, core.binds))  # core.begin(view), without the extra call
        state: MutableMapping[str, Any] = scope.setdefault("state", {})
        state["keyfob_request"] = req
        try:
            try:
                result = await core.authenticate(req)
            except StoreUnavailable as exc:  # a GET may reach a route with outage_grace; else 503
                result = req.defer(exc)
            state["session"] = result.session
            if req.admit(result):
                receive, submitted = await _form_token(receive)
                req.check_csrf(submitted)
        except KeyfobError as exc:  # StoreUnavailable → 503, CSRFError → 403
            await error_response(exc)(scope, receive, send)
            return

        def send_with_cookies(message: Message) -> Awaitable[None]:
            # A plain function that returns what to await (``send``'s own awaitable): ASGI's send only
            # needs to be awaitable, and this spares a coroutine per message (~0.7k instructions).
            if req.outage is not None:  # a store outage no route bridged: fail closed, whatever the view said
                if message["type"] == "http.response.start":
                    return _outage_answer(req.outage, scope, receive, send)
                return _nothing()
            if message["type"] == "http.response.start" and req.touches_response():
                message = _with_headers(message, req)
            return send(message)

        if req.outage is None:
            await self.app(scope, receive, send_with_cookies)
            return
        try:
            await self.app(scope, receive, send_with_cookies)
        except StoreUnavailable as exc:  # a route that let the deferred outage escape (plain Starlette)
            if state.get("keyfob_outage_answered"):
                raise
            await _outage_answer(exc, scope, receive, send)


async def _nothing() -> None:
    """What a dropped message awaits."""


async def _outage_answer(exc: StoreUnavailable, scope: Scope, receive: Receive, send: Send) -> None:
    """The 503 of a deferred store outage, sent once in place of the view's answer."""
    state = scope["state"]
    if state.get("keyfob_outage_answered"):
        return
    state["keyfob_outage_answered"] = True
    await error_response(exc)(scope, receive, send)


def _latin1(pair: tuple[str, str]) -> tuple[bytes, bytes]:
    return pair[0].encode("latin-1"), pair[1].encode("latin-1")


#: The two cache headers of a signed-in response, encoded once (``finish`` returns them as they are).
_SESSION_HEADERS_RAW = (_latin1(NO_STORE), _latin1(VARY_COOKIE))


def _with_headers(message: Message, req: RequestState) -> Message:
    """The ``http.response.start`` message with the core's headers added (a copy: the app's stays)."""
    headers = list(message.get("headers", ()))
    cache_control = False
    vary: str | None = None
    for k, v in headers:
        lk = k.lower()
        if lk == b"cache-control":
            cache_control = True
        elif lk == b"vary":
            vary = v.decode("latin-1")
    extra = req.finish(cache_control=cache_control, vary=vary)
    if extra is SESSION_HEADERS:  # the common case: a signed-in request, nothing else to add
        headers += _SESSION_HEADERS_RAW
    else:
        headers += map(_latin1, extra)
    return {**message, "headers": headers}


def _view(scope: Scope, device: bool = False) -> RequestView:
    """The core's view of an ASGI request: one pass over the headers (first of each name wins, except
    ``Cookie``: every one is read, in order). ``device``: also the client address and user agent
    (session binding is on)."""
    cookie_raw: bytes | None = None
    auth_raw: bytes | None = None
    host_raw: bytes | None = None
    headers = scope.get("headers", ())
    for k, v in headers:
        if k == b"cookie":  # HTTP/2 may send one per cookie (RFC 9113 §8.2.3): join them as a proxy would
            cookie_raw = v if cookie_raw is None else cookie_raw + b"; " + v
        elif k == b"authorization":
            if auth_raw is None:
                auth_raw = v
        elif k == b"host" and host_raw is None:
            host_raw = v
    view = RequestView(  # method, scheme, host, path, cookies, authorization
        scope["method"], scope.get("scheme", "http"),
        host_raw.decode("latin-1") if host_raw is not None else "", scope.get("path", "/"),
        parse_cookie_bytes(cookie_raw) if cookie_raw else {},
        auth_raw.decode("latin-1") if auth_raw is not None else None,
    )
    if view.method not in ("GET", "HEAD", "OPTIONS"):  # what the CSRF check reads, only when it may
        origins = 0
        for k, v in headers:
            if k == b"origin":
                origins += 1
                if view.origin is None:
                    view.origin = v.decode("latin-1")
            elif k == b"referer":
                if view.referer is None:
                    view.referer = v.decode("latin-1")
            elif k == b"sec-fetch-site":
                if view.sec_fetch_site is None:
                    view.sec_fetch_site = v.decode("latin-1")
            elif k == b"x-csrf-token":
                if view.csrf_header is None:
                    view.csrf_header = v.decode("latin-1")
            elif k == b"content-type" and view.content_type is None:
                view.content_type = v.decode("latin-1")
        view.origin_count = origins
    if device:
        client = scope.get("client")
        view.client_ip = client[0] if client else None
        for k, v in headers:
            if k == b"user-agent":
                view.user_agent = v.decode("latin-1")
                break
    return view


async def _form_token(receive: Receive) -> tuple[Receive, str | None]:
    """Read a urlencoded body (bounded) for its ``csrf_token`` field; replay the body to the app."""
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
        if len(body) > MAX_FORM_BYTES:
            raise CSRFError("the form is too large to check for a CSRF token",
                            hint="send the token in the X-CSRF-Token header")
    try:
        submitted = parse_qs(body.decode("latin-1")).get(CSRF_FIELD, [None])[0]
    except ValueError:
        submitted = None
    sent = False

    async def replay_body() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay_body, submitted


def keyfob_request(request: Request) -> RequestState:
    """The request core's state for this request (session, pending cookies, CSRF token)."""
    try:
        req: RequestState = request.scope["state"]["keyfob_request"]
    except KeyError:
        hint = "app.add_middleware(KeyfobMiddleware, fob=fob) (or keyfob.fastapi.install)"
        raise KeyfobError("keyfob's middleware is not installed", hint=hint) from None
    return req


def get_keyfob(request: Request) -> Keyfob:
    """The Keyfob the middleware put on the request."""
    return keyfob_request(request).core.fob


def current_session(request: Request) -> Session | None:
    """The request's session (set by the middleware), or None."""
    return keyfob_request(request).session


def csrf_token(request: Request) -> str:
    """The CSRF token to put in a form (``csrf_token`` field) or send as ``X-CSRF-Token``.

    Bound to the current session; its cookie is set on the response when it is new."""
    return keyfob_request(request).csrf_token()


def _meta(request: Request) -> RequestMeta:
    return RequestMeta(ip=request.client.host if request.client else None,
                       user_agent=request.headers.get("user-agent"))


async def sign_in(request: Request, user_id: str, data: Mapping[str, Any] | None = None,
                  response: Response | None = None, *, remember: bool = True,
                  amr: Sequence[str] = ()) -> Issued:
    """Create a session for ``user_id`` (fresh id: no fixation) and set its cookies.

    The middleware adds the cookies (and a CSRF token bound to the new session) to whatever
    response the endpoint returns; ``response`` is accepted for older code and changes nothing.
    ``remember=False`` ("don't remember me"): browser-session cookies and the browser-session
    lifetimes; ``amr``: the methods the user just proved (``["pwd"]``).
    """
    req = keyfob_request(request)
    issued = await req.core.fob.create(user_id, data, _meta(request), secure=req.secure, cookies=req.cookies,
                                       remember=remember, amr=amr)
    req.signed_in(issued)
    request.state.session = issued.session
    return issued


async def sign_out(request: Request, response: Response | None = None) -> None:
    """Revoke the current session and clear its cookies (``response``: as for :func:`sign_in`)."""
    req = keyfob_request(request)
    req.signed_out(await req.core.fob.sign_out(req.cookies, secure=req.secure))
    request.state.session = None


async def require_session(request: Request, *, max_staleness: float | None = None, outage_grace: float = 0,
                          fresh: float | None = None, level: int | None = None) -> Session:
    """The request's session for an endpoint that demands more than the middleware's check.

    ``max_staleness=0``: the store confirms this request (every strategy); ``outage_grace``: the
    revocation view may answer for that many seconds of a store outage; ``fresh`` / ``level``: 403
    ``step_up_required`` unless the user proved who they are that recently / that strongly. Raises
    the keyfob error to answer (the middleware turns it into 401/403/503).
    """
    req = keyfob_request(request)
    if max_staleness is not None or outage_grace:
        fob = req.core.fob
        await req.confirm(max_staleness=max_staleness, outage_grace=outage_grace,
                          meta=_meta(request) if fob.settings.bind is not None else None)
        request.state.session = req.session
    return req.require(fresh=fresh, level=level)


# -- routes -------------------------------------------------------------------------------------------

def _require(request: Request) -> Session:
    """The session, or raise the 401 (with the reason a cookie was refused, when one was)."""
    return keyfob_request(request).require()


def _reply(reply: tuple[int, Any]) -> JSONResponse:
    status, body = reply
    return JSONResponse(body, status_code=status, headers={"cache-control": "no-store"})


class AuthHandlers:
    """The ``/auth`` routes (:class:`keyfob.web.AuthRoutes`) as Starlette endpoints' bodies.

    FastAPI serves the same handlers with typed, documented signatures
    (:func:`keyfob.fastapi.auth_router`). Errors propagate as :class:`KeyfobError`."""

    def __init__(self, fob: Keyfob) -> None:
        self.fob = fob
        self.routes = AuthRoutes(fob)

    async def session(self, request: Request) -> Response:
        return _reply(await self.routes.session(keyfob_request(request)))

    async def sessions(self, request: Request) -> Response:
        return _reply(await self.routes.sessions(keyfob_request(request)))

    async def delete_session(self, request: Request, sid: str) -> Response:
        reply = await self.routes.delete_session(keyfob_request(request), sid)
        request.state.session = keyfob_request(request).session
        return _reply(reply)

    async def revoke_others(self, request: Request) -> Response:
        return _reply(await self.routes.revoke_others(keyfob_request(request)))

    async def signout(self, request: Request) -> Response:
        reply = await self.routes.signout(keyfob_request(request))
        request.state.session = None
        return _reply(reply)

    async def refresh(self, request: Request) -> Response:
        reply = await self.routes.refresh(keyfob_request(request), request.headers.get("content-type"),
                                          await request.body())
        return _reply(reply)

    async def update(self, request: Request) -> Response:
        reply = await self.routes.update(keyfob_request(request), request.headers.get("content-type"),
                                         await request.body())
        return _reply(reply)

    async def csrf(self, request: Request) -> Response:
        return _reply(await self.routes.csrf(keyfob_request(request)))

    async def jwks(self, request: Request) -> Response:
        status, body = self.routes.jwks()
        return JSONResponse(body, status_code=status, headers={"cache-control": "public, max-age=300"})


def auth_routes(fob: Keyfob, *, prefix: str | None = None) -> list[BaseRoute]:
    """The routes of DESIGN.md (``/auth/...`` and ``/.well-known/jwks.json``) as Starlette routes."""
    base = (prefix if prefix is not None else fob.settings.auth_path).rstrip("/")
    h = AuthHandlers(fob)

    def wrap(handler: Any) -> Any:
        async def endpoint(request: Request) -> Response:
            try:
                response: Response = await handler(request, **request.path_params)
                return response
            except KeyfobError as exc:
                return error_response(exc)

        endpoint.__name__ = handler.__name__
        return endpoint

    return [
        Route(f"{base}/session", wrap(h.session), methods=["GET"]),
        Route(f"{base}/session", wrap(h.update), methods=["POST"]),
        Route(f"{base}/sessions", wrap(h.sessions), methods=["GET"]),
        Route(f"{base}/sessions/revoke-others", wrap(h.revoke_others), methods=["POST"]),
        Route(f"{base}/sessions/{{sid}}", wrap(h.delete_session), methods=["DELETE"]),
        Route(f"{base}/signout", wrap(h.signout), methods=["POST"]),
        Route(f"{base}/refresh", wrap(h.refresh), methods=["POST"]),
        Route(f"{base}/csrf", wrap(h.csrf), methods=["GET"]),
        Route("/.well-known/jwks.json", wrap(h.jwks), methods=["GET"]),
    ]

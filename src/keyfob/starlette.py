"""Starlette integration: pure ASGI middleware and the ``/auth`` routes.

```python
from keyfob import Keyfob
from keyfob.starlette import KeyfobMiddleware, auth_routes

fob = Keyfob.from_env()
app = Starlette(routes=[*auth_routes(fob), ...])
app.add_middleware(KeyfobMiddleware, fob=fob)
# in an endpoint: request.state.session  → keyfob.Session | None
```

The middleware authenticates every HTTP request once, exposes ``request.state.session``,
and only wraps ``send`` to add ``Set-Cookie`` on ``http.response.start`` (rolling renewal,
transparent hybrid refresh, sign-in/out helpers). A bad cookie never raises: it is simply
no session (401 where one is required). A store outage answers 503 (fail closed).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, MutableMapping
from typing import Any
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ._session import RequestMeta, Session
from .engine import AuthResult, Issued, Keyfob
from .errors import CSRFError, InvalidToken, KeyfobError, SessionError, StoreUnavailable
from .web import CookieSpec, CSRFProtect, SetCookie, is_local_development, parse_cookie_header

__all__ = [
    "KeyfobMiddleware",
    "auth_routes",
    "current_session",
    "error_response",
    "get_keyfob",
    "sign_in",
    "sign_out",
]

_UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_MAX_FORM_BYTES = 64 * 1024


def error_response(exc: KeyfobError) -> JSONResponse:
    """``{"error": code, "detail": message}`` with the error's status (401, 403, 503...)."""
    headers = {"Retry-After": "1"} if isinstance(exc, StoreUnavailable) else None
    return JSONResponse({"error": exc.code, "detail": str(exc)}, status_code=exc.status_code, headers=headers)


def _header(scope: Scope, name: bytes) -> str | None:
    for k, v in scope.get("headers", ()):
        if k == name:
            return str(v.decode("latin-1"))
    return None


def request_is_secure(fob: Keyfob, scope: Scope) -> bool:
    """Secure cookies, except on plain-http localhost development (unless settings say otherwise)."""
    if fob.settings.cookie_secure is not None:
        return fob.settings.cookie_secure
    host = _header(scope, b"host") or ""
    return not is_local_development(scope.get("scheme", "http"), host)


def request_origin(scope: Scope) -> str:
    host = _header(scope, b"host") or ""
    return f"{scope.get('scheme', 'http')}://{host}"


class KeyfobMiddleware:
    """Authenticate each request; expose ``request.state.session``; write cookies; check CSRF."""

    def __init__(self, app: ASGIApp, fob: Keyfob, *, csrf: bool | None = None,
                 csrf_exempt: tuple[str, ...] = ()) -> None:
        self.app = app
        self.fob = fob
        self.csrf_enabled = fob.settings.csrf if csrf is None else csrf
        self.csrf_exempt = csrf_exempt
        self.csrf_cookie = {
            secure: CookieSpec("keyfob.csrf-token", secure=secure, samesite="lax", httponly=True)
            for secure in (True, False)
        }
        self.csrf = {
            secure: CSRFProtect(fob.csrf_key(), allowed_origins=fob.settings.allowed_origins,
                                cookie=self.csrf_cookie[secure])
            for secure in (True, False)
        }
        self._local_cache: dict[tuple[str, bytes | None], bool] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        fob = self.fob
        # One pass over the headers (the first of each wins, as _header does).
        cookie_raw: bytes | None = None
        auth_raw: bytes | None = None
        host_raw: bytes | None = None
        for k, v in scope.get("headers", ()):
            if k == b"cookie":
                if cookie_raw is None:
                    cookie_raw = v
            elif k == b"authorization":
                if auth_raw is None:
                    auth_raw = v
            elif k == b"host" and host_raw is None:
                host_raw = v
        secure = fob.settings.cookie_secure
        if secure is None:
            secure = not self._local(scope.get("scheme", "http"), host_raw)
        cookies = parse_cookie_header(cookie_raw.decode("latin-1")) if cookie_raw else {}
        state: MutableMapping[str, Any] = scope.setdefault("state", {})
        state["keyfob"] = fob
        state["keyfob_secure"] = secure
        state["keyfob_cookies"] = cookies
        state["keyfob_pending"] = []
        state["keyfob_csrf"] = self.csrf[secure]
        auth = auth_raw.decode("latin-1") if auth_raw is not None else None
        bearer = auth[7:].strip() if auth and auth[:7].lower() == "bearer " else None
        try:
            if bearer:
                result = await fob.authenticate_token(bearer)
            else:
                result = await fob.authenticate(cookies, secure=secure)
        except StoreUnavailable as exc:
            await error_response(exc)(scope, receive, send)
            return
        state["session"] = result.session
        state["keyfob_result"] = result

        if self.csrf_enabled and not bearer and scope["method"] in _UNSAFE and not self._exempt(scope):
            try:
                receive = await self._check_csrf(scope, receive, cookies, secure)
            except CSRFError as exc:
                await error_response(exc)(scope, receive, send)
                return

        async def send_with_cookies(message: Message) -> None:
            if message["type"] == "http.response.start":
                rolled = [] if state.get("keyfob_handled") else state["keyfob_result"].cookies
                out = _merge(rolled, state["keyfob_pending"])
                if out:
                    headers = list(message.get("headers", []))
                    headers += [(b"set-cookie", c.header().encode("latin-1")) for c in out]
                    if not any(k.lower() == b"cache-control" for k, _ in headers):
                        headers.append((b"cache-control", b"private, no-store"))
                    message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_cookies)

    def _local(self, scheme: str, host_raw: bytes | None) -> bool:
        """``is_local_development`` for this request, memoised per (scheme, Host) — bounded."""
        key = (scheme, host_raw)
        hit = self._local_cache.get(key)
        if hit is None:
            hit = is_local_development(scheme, host_raw.decode("latin-1") if host_raw is not None else "")
            if len(self._local_cache) < 256:  # Host is client-controlled: never grow without bound
                self._local_cache[key] = hit
        return hit

    def _exempt(self, scope: Scope) -> bool:
        path: str = scope.get("path", "")
        return any(path.startswith(p) for p in self.csrf_exempt)

    async def _check_csrf(self, scope: Scope, receive: Receive, cookies: Mapping[str, str],
                          secure: bool) -> Receive:
        """Origin/Referer + signed double-submit token, from the header or a urlencoded form field."""
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", ())}
        submitted = headers.get("x-csrf-token")
        ctype = headers.get("content-type", "")
        replay: Receive = receive
        if submitted is None and ctype.startswith("application/x-www-form-urlencoded"):
            body = b""
            more = True
            while more:
                message = await receive()
                body += message.get("body", b"")
                more = message.get("more_body", False)
                if len(body) > _MAX_FORM_BYTES:
                    raise CSRFError("the form is too large to check for a CSRF token",
                                    hint="send the token in the X-CSRF-Token header")
            try:
                submitted = parse_qs(body.decode("latin-1")).get("csrf_token", [None])[0]
            except ValueError:
                submitted = None
            sent = False

            async def replay_body() -> Message:
                nonlocal sent
                if not sent:
                    sent = True
                    return {"type": "http.request", "body": body, "more_body": False}
                return await receive()

            replay = replay_body
        prof = self.fob.profile(secure)
        ambient = any(k == prof.session.name or k.startswith(prof.session.name + ".") or
                      k == prof.refresh.name or k == self.csrf_cookie[secure].name for k in cookies)
        if not ambient:
            # No cookie rides along, so there is no ambient authority to abuse (API clients,
            # refresh-token-in-body); a foreign Origin is still refused (login CSRF).
            self.csrf[secure].check_origin(headers, request_origin(scope))
            return replay
        self.csrf[secure].check(method=scope["method"], headers=headers,
                                cookie_value=self.csrf_cookie[secure].read(cookies), submitted=submitted,
                                request_origin=request_origin(scope))
        return replay


def _merge(rolled: list[SetCookie], pending: list[SetCookie]) -> list[SetCookie]:
    if not pending:
        return rolled
    names = {c.name.split(".")[0] for c in pending}
    return [c for c in rolled if c.name.split(".")[0] not in names] + pending


def get_keyfob(request: Request) -> Keyfob:
    """The Keyfob the middleware put on the request."""
    fob = getattr(request.state, "keyfob", None)
    if fob is None:
        raise KeyfobError("keyfob's middleware is not installed",
                          hint="app.add_middleware(KeyfobMiddleware, fob=fob) (or keyfob.fastapi.install)")
    return fob  # type: ignore[no-any-return]


def current_session(request: Request) -> Session | None:
    """The request's session (set by the middleware), or None."""
    get_keyfob(request)
    return getattr(request.state, "session", None)


def _meta(request: Request) -> RequestMeta:
    ua = request.headers.get("user-agent")
    return RequestMeta(ip=request.client.host if request.client else None,
                       user_agent=ua[:512] if ua else None)


async def sign_in(request: Request, user_id: str, data: Mapping[str, Any] | None = None,
                  response: Response | None = None) -> Issued:
    """Create a session for ``user_id`` (fresh id: no fixation) and set its cookies.

    With ``response`` the cookies go on it; otherwise the middleware adds them to whatever
    response the endpoint returns.
    """
    fob = get_keyfob(request)
    issued = await fob.create(user_id, data, _meta(request), secure=request.state.keyfob_secure,
                              cookies=request.state.keyfob_cookies)
    _queue(request, issued.cookies, response)
    request.state.session = issued.session
    return issued


async def sign_out(request: Request, response: Response | None = None) -> None:
    """Revoke the current session and clear its cookies."""
    fob = get_keyfob(request)
    cleared = await fob.sign_out(request.state.keyfob_cookies, secure=request.state.keyfob_secure)
    _queue(request, cleared, response)
    request.state.session = None


def _queue(request: Request, cookies: list[SetCookie], response: Response | None) -> None:
    if response is not None:
        for c in cookies:
            response.headers.append("set-cookie", c.header())
        # the middleware must not also write the cookies it rolled for this request
        request.state.keyfob_handled = True
    else:
        request.state.keyfob_pending.extend(cookies)


# -- routes -------------------------------------------------------------------------------------------

def _require(request: Request) -> Session:
    session = current_session(request)
    if session is None:
        result: AuthResult | None = getattr(request.state, "keyfob_result", None)
        if result is not None and result.error is not None:
            raise result.error
        raise SessionError("you are not signed in", hint="sign in first")
    return session


async def _guard(request: Request, handler: Any) -> Response:
    try:
        response: Response = await handler(request)
        return response
    except KeyfobError as exc:
        return error_response(exc)


def auth_routes(fob: Keyfob, *, prefix: str | None = None) -> list[BaseRoute]:
    """The routes of DESIGN.md (``/auth/...`` and ``/.well-known/jwks.json``) as Starlette routes."""
    base = (prefix if prefix is not None else fob.settings.auth_path).rstrip("/")

    async def get_session(request: Request) -> Response:
        s = current_session(request)
        return JSONResponse(None if s is None else s.to_authjs())

    async def list_sessions(request: Request) -> Response:
        s = _require(request)
        items = await fob.list_sessions(s.user_id, current=s.id)
        return JSONResponse([i.to_json() for i in items])

    async def delete_session(request: Request) -> Response:
        s = _require(request)
        sid = request.path_params["sid"]
        info = await fob.get_session(sid)
        if info is None or info.user_id != s.user_id:
            return JSONResponse({"error": "not_found", "detail": "no such session among yours"}, 404)
        await fob.revoke(sid)
        response = JSONResponse({"revoked": sid})
        if sid == s.id:
            await sign_out(request, response)
        return response

    async def revoke_others(request: Request) -> Response:
        _require(request)
        n, reissued = await fob.revoke_others(request.state.keyfob_cookies,
                                              secure=request.state.keyfob_secure)
        response = JSONResponse({"revoked": n})
        if reissued is not None:
            _queue(request, reissued.cookies, response)
        return response

    async def signout(request: Request) -> Response:
        response = JSONResponse({"ok": True})
        await sign_out(request, response)
        return response

    async def refresh(request: Request) -> Response:
        token: str | None = None
        if request.headers.get("content-type", "").startswith("application/json"):
            try:
                body = json.loads(await request.body() or b"{}")
            except ValueError:
                raise InvalidToken("the request body is not JSON",
                                   hint='send {"refresh_token": "..."}') from None
            if isinstance(body, dict) and isinstance(body.get("refresh_token"), str):
                token = body["refresh_token"]
        issued = await fob.refresh(token, cookies=request.state.keyfob_cookies,
                                   secure=request.state.keyfob_secure)
        # Tokens go in the body only to a client that sent its refresh token in the body (mobile,
        # CLI); a browser refreshing with its cookie gets them as HttpOnly cookies only (ASVS 3.3.4).
        in_body = token is not None
        payload = {**issued.session.to_authjs(), "access_token": issued.access_token if in_body else None,
                   "refresh_token": issued.refresh_token if in_body else None,
                   "token_type": "Bearer", "expires_in": int(fob.settings.access_ttl)}
        response = JSONResponse(payload, headers={"cache-control": "no-store"})
        _queue(request, issued.cookies, response)
        return response

    async def csrf(request: Request) -> Response:
        protect: CSRFProtect = request.state.keyfob_csrf
        cookie_spec = protect.cookie
        token, cookies = protect.issue(cookie_spec.read(request.state.keyfob_cookies))
        response = JSONResponse({"csrfToken": token}, headers={"cache-control": "no-store"})
        for c in cookies:
            response.headers.append("set-cookie", c.header())
        return response

    async def jwks(request: Request) -> Response:
        return JSONResponse(fob.jwks(), headers={"cache-control": "public, max-age=300"})

    def wrap(handler: Any) -> Any:
        async def endpoint(request: Request) -> Response:
            return await _guard(request, handler)

        endpoint.__name__ = handler.__name__
        return endpoint

    return [
        Route(f"{base}/session", wrap(get_session), methods=["GET"]),
        Route(f"{base}/sessions", wrap(list_sessions), methods=["GET"]),
        Route(f"{base}/sessions/revoke-others", wrap(revoke_others), methods=["POST"]),
        Route(f"{base}/sessions/{{sid}}", wrap(delete_session), methods=["DELETE"]),
        Route(f"{base}/signout", wrap(signout), methods=["POST"]),
        Route(f"{base}/refresh", wrap(refresh), methods=["POST"]),
        Route(f"{base}/csrf", wrap(csrf), methods=["GET"]),
        Route("/.well-known/jwks.json", wrap(jwks), methods=["GET"]),
    ]

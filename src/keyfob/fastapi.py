"""FastAPI integration: one ``install`` call, security dependencies, and the documented ``/auth`` router.

```python
from fastapi import Depends, FastAPI
from keyfob import Keyfob, Session
from keyfob.fastapi import install, require_role, require_session

fob = Keyfob.from_env()
app = FastAPI()
install(app, fob)            # middleware + error handlers + /auth routes + JWKS + OpenAPI

@app.get("/me")
async def me(session: Session = Depends(require_session)):
    return {"user": session.user_id}

@app.delete("/admin/thing", dependencies=[Depends(require_role("admin"))])
async def admin_only(): ...
```

The dependencies are FastAPI *security* dependencies: the schema declares the session cookie
(``keyfobSession``, an API key in a cookie) and the bearer token (``keyfobBearer``) as the two
ways to authenticate, so Swagger UI gets its "Authorize" button, and each operation lists the
errors it can answer. Errors answer ``{"error": code, "detail": message}``: 401 without a valid
session, 403 for a wrong role, a stale sign-in or a failed CSRF check (every unsafe method), 503
when the store is down (any operation). ``install(..., include_in_schema=False)`` hides the
``/auth`` routes from the schema.

Tests: ``TestClient(app)`` works as is (``http://testserver`` counts as local development, so the
cookies are not ``Secure`` and come back). A first ``POST`` that carries keyfob's cookies needs a CSRF
token: ``GET /auth/csrf`` and send ``X-CSRF-Token``; the 403 says so.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Iterator
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.openapi.models import APIKey, APIKeyIn, HTTPBearer
from fastapi.routing import APIRoute
from fastapi.security.base import SecurityBase
from pydantic import BaseModel, Field
from starlette.responses import Response

from ._session import Session
from .engine import Keyfob
from .errors import KeyfobError
from .starlette import (
    AuthHandlers,
    KeyfobMiddleware,
    _meta,
    error_response,
    get_keyfob,
    keyfob_request,
    sign_in,
    sign_out,
)
from .web import SAFE_METHODS, Forbidden

__all__ = [
    "Forbidden",
    "SessionDependency",
    "auth_router",
    "install",
    "optional_session",
    "require_fresh",
    "require_role",
    "require_session",
    "sign_in",
    "sign_out",
]


class ErrorBody(BaseModel):
    """Every keyfob error response."""

    error: str = Field(description="machine-readable code: invalid_token, csrf_failed, forbidden...")
    detail: str = Field(description="what was wrong and what to do")


def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorBody, "description": description}


UNAUTHORIZED = _error("No valid session: sign in (or the cookie/token was refused)")
FORBIDDEN = _error("Signed in, but not allowed (role, stale sign-in) or the CSRF check failed")
CSRF_FAILED = _error("The CSRF check failed: send X-CSRF-Token (from GET /auth/csrf) from this origin")
UNAVAILABLE = _error("The session store is unreachable (fail closed); retry after Retry-After seconds")


#: The bearer half of the security declaration (the middleware reads the header). ``install``
#: writes it into the schema next to ``keyfobSession`` rather than FastAPI resolving it as a
#: sub-dependency on every request (a second level of ``Depends`` costs ~25k instructions).
_BEARER_SCHEME = "keyfobBearer"
_BEARER_MODEL = HTTPBearer(bearerFormat="keyfob access token",
                           description="A keyfob access token (API clients, no cookie sent)")


class SessionDependency(SecurityBase):
    """A FastAPI security dependency: the request's session (authenticated by the middleware).

    ``required``: 401 without a session; ``roles``: 403 unless ``session.role`` is one of them;
    ``fresh``: 403 ``reauthentication_required`` when the sign-in is older than that many seconds
    (``0`` means ``settings.fresh_age``). Declares the cookie and bearer schemes and the error
    responses in the OpenAPI schema (``install`` adds the responses).

    Called with options it gives a new dependency (``Depends(require_session(max_staleness=0))``):
    ``max_staleness`` (seconds; 0 = the store confirms this request), ``outage_grace`` (seconds of
    a store outage this route may be answered from the revocation view), ``step_up_fresh`` /
    ``level`` (403 ``step_up_required`` with what to do; see docs/SESSION_POLICY.md).
    """

    def __init__(self, *, required: bool = True, roles: frozenset[str] = frozenset(),
                 fresh: float | None = None, cookie_name: str = "keyfob.session-token",
                 max_staleness: float | None = None, outage_grace: float = 0,
                 step_up_fresh: float | None = None, level: int | None = None) -> None:
        self.model = APIKey(**{"in": APIKeyIn.cookie}, name=cookie_name,  # type: ignore[arg-type]
                            description="The keyfob session cookie (named __Host-" + cookie_name +
                                        " over https); set by signing in")
        self.scheme_name = "keyfobSession"
        self.required = required
        self.roles = roles
        self.fresh = fresh
        self.cookie_name = cookie_name
        self.max_staleness = max_staleness
        self.outage_grace = outage_grace
        self.step_up_fresh = step_up_fresh
        self.level = level
        self._confirm = max_staleness is not None or bool(outage_grace)
        self.responses: dict[int | str, dict[str, Any]] = {}
        if required:
            self.responses[401] = UNAUTHORIZED
        if roles or fresh is not None or step_up_fresh is not None or level is not None:
            self.responses[403] = FORBIDDEN
        # FastAPI reads the dependency's parameters from this signature, and awaits __call__ (marked
        # a coroutine function below), so the instance itself stays callable with options.
        self.__signature__ = inspect.signature(self._dependency, eval_str=True)

    __signature__: inspect.Signature

    def __call__(self, request: Any = None, **kw: Any) -> Any:
        """As a dependency (FastAPI passes ``request``): the session. With options only: a new
        dependency, e.g. ``require_session(max_staleness=0)``, ``require_session(fresh=600)``,
        ``require_session(level=2)``."""
        if request is not None:
            return self._dependency(request, **kw) if kw else self._dependency(request)
        options: dict[str, Any] = {
            "required": self.required, "roles": self.roles, "fresh": self.fresh,
            "cookie_name": self.cookie_name, "max_staleness": self.max_staleness,
            "outage_grace": self.outage_grace, "step_up_fresh": self.step_up_fresh, "level": self.level}
        if "fresh" in kw:  # require_session(fresh=N): the step-up 403, with its machine-readable reason
            kw["step_up_fresh"] = kw.pop("fresh")
        unknown = set(kw) - set(options)
        if unknown:
            raise TypeError(f"require_session() got unknown options {sorted(unknown)}: use max_staleness, "
                            "outage_grace, fresh, level")
        return SessionDependency(**{**options, **kw})

    if hasattr(inspect, "markcoroutinefunction"):  # Python 3.12+
        inspect.markcoroutinefunction(__call__)
    else:  # Python 3.11: the marker asyncio.iscoroutinefunction (FastAPI's check there) looks for
        __call__._is_coroutine = asyncio.coroutines._is_coroutine  # type: ignore[attr-defined]

    async def _dependency(self, request: Request) -> Session | None:
        req = keyfob_request(request)
        if self._confirm:
            fob = req.core.fob
            await req.confirm(max_staleness=self.max_staleness, outage_grace=self.outage_grace,
                              meta=_meta(request) if fob.settings.bind is not None else None)
        if not self.required:
            return req.session
        session = req.require(fresh=self.step_up_fresh, level=self.level)
        if self.roles and session.role not in self.roles:
            raise Forbidden(f"this needs the role {' or '.join(sorted(self.roles))}",
                            hint="sign in with an account that has it")
        if self.fresh is not None and not req.core.fob.is_fresh(session, self.fresh or None):
            exc = Forbidden("this action needs a recent sign-in", hint="sign in again, then retry")
            exc.code = "reauthentication_required"  # type: ignore[misc]
            raise exc
        return session


#: Dependency: the current session or None.
optional_session = SessionDependency(required=False)
#: Dependency: the current session, or 401 ``{"error": ..., "detail": ...}``.
require_session = SessionDependency()


def require_role(*roles: str) -> SessionDependency:
    """Dependency factory: 401 without a session, 403 unless ``session.data["role"]`` is one of ``roles``."""
    return SessionDependency(roles=frozenset(roles))


def require_fresh(max_age: float | None = None) -> SessionDependency:
    """Dependency factory for sensitive actions: 403 ``reauthentication_required`` when the
    sign-in is older than ``max_age`` seconds (default ``settings.fresh_age``)."""
    return SessionDependency(fresh=max_age if max_age is not None else 0)


# -- the documented /auth router -------------------------------------------------------------------

class AuthUser(BaseModel):
    id: str
    name: str | None = None
    email: str | None = None
    image: str | None = None
    role: str | None = None


class AuthSession(BaseModel):
    """The Auth.js session shape."""

    user: AuthUser
    expires: str = Field(description="ISO-8601, UTC")


class SessionItem(BaseModel):
    id: str
    created: str
    last_seen: str
    expires: str
    ip: str | None
    user_agent: str | None
    device: str
    current: bool


class CsrfToken(BaseModel):
    csrfToken: str = Field(description="send it as X-CSRF-Token, or as the csrf_token form field")


class Revoked(BaseModel):
    revoked: str | int = Field(description="the revoked id, or how many sessions (-1: all, for jwt)")


class Ok(BaseModel):
    ok: bool


class Refreshed(AuthSession):
    access_token: str | None = None
    refresh_token: str | None = None
    token_type: str = "Bearer"
    expires_in: int


class RefreshIn(BaseModel):
    refresh_token: str | None = Field(None, description="for clients without the refresh cookie")


class Jwks(BaseModel):
    keys: list[dict[str, Any]]


def auth_router(fob: Keyfob, *, prefix: str | None = None, include_in_schema: bool = True) -> APIRouter:
    """The ``/auth`` routes (session, sessions, signout, refresh, csrf) and ``/.well-known/jwks.json``,
    documented in the OpenAPI schema unless ``include_in_schema=False``."""
    base = (prefix if prefix is not None else fob.settings.auth_path).rstrip("/")
    h = AuthHandlers(fob)
    router = APIRouter(tags=["auth"], include_in_schema=include_in_schema)
    signed_in = [Depends(require_session)]
    guarded: dict[int | str, dict[str, Any]] = {401: UNAUTHORIZED}

    maybe_signed_in = [Depends(optional_session)]

    @router.get(f"{base}/session", response_model=AuthSession | None, dependencies=maybe_signed_in,
                summary="The current session (Auth.js shape), or null")
    async def get_session(request: Request) -> Response:
        return await h.session(request)

    @router.post(f"{base}/session", response_model=AuthSession, dependencies=signed_in,
                 responses={**guarded, 400: _error("The body is not a JSON object")},
                 summary="Update the session's data (Auth.js update()); the app's on_update callback decides")
    async def update_session(request: Request) -> Response:
        return await h.update(request)

    @router.get(f"{base}/sessions", response_model=list[SessionItem], dependencies=signed_in,
                responses=guarded, summary="The signed-in user's active sessions (devices)")
    async def list_sessions(request: Request) -> Response:
        return await h.sessions(request)

    @router.post(f"{base}/sessions/revoke-others", response_model=Revoked, dependencies=signed_in,
                 responses=guarded, summary="Sign out everywhere else")
    async def revoke_others(request: Request) -> Response:
        return await h.revoke_others(request)

    @router.delete(f"{base}/sessions/{{sid}}", response_model=Revoked, dependencies=signed_in,
                   responses={**guarded, 404: _error("No such session among yours")},
                   summary="Revoke one of your sessions")
    async def delete_session(request: Request, sid: str) -> Response:
        return await h.delete_session(request, sid)

    @router.post(f"{base}/signout", response_model=Ok, dependencies=[Depends(optional_session)],
                 summary="Revoke the current session and clear its cookies")
    async def signout(request: Request) -> Response:
        return await h.signout(request)

    @router.post(f"{base}/refresh", response_model=Refreshed, dependencies=[Depends(optional_session)],
                 responses={401: _error("The refresh token was refused (invalid, expired, revoked, reused)")},
                 openapi_extra={"requestBody": {"required": False, "content": {"application/json": {
                     "schema": RefreshIn.model_json_schema()}}}},
                 summary="Rotate the refresh token and get a new access token (hybrid)")
    async def refresh(request: Request) -> Response:
        return await h.refresh(request)

    @router.get(f"{base}/csrf", response_model=CsrfToken, summary="A CSRF token for forms and fetch")
    async def csrf(request: Request) -> Response:
        return await h.csrf(request)

    @router.get("/.well-known/jwks.json", response_model=Jwks, summary="Public keys for access tokens")
    async def jwks(request: Request) -> Response:
        return await h.jwks(request)

    return router


# -- install -------------------------------------------------------------------------------------------

def _dependencies(dependant: Any) -> Iterator[Any]:
    for sub in dependant.dependencies:
        yield sub.call
        yield from _dependencies(sub)


def _api_routes(routes: Any) -> Iterator[APIRoute]:
    """APIRoutes, also inside included routers (FastAPI >= 0.16x keeps them wrapped)."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from _api_routes(inner.routes)


def _document_errors(app: FastAPI, build: Callable[[], dict[str, Any]], csrf: bool) -> dict[str, Any]:
    """The app's schema plus the errors keyfob can answer: 401 where a keyfob security scheme is
    required, each dependency's 403 (role, fresh sign-in), the middleware's CSRF 403 on every unsafe
    method and its 503 on every operation."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = build()
    declared: dict[tuple[str, str], dict[int | str, dict[str, Any]]] = {}
    for route in _api_routes(app.routes):
        found: dict[int | str, dict[str, Any]] = {}
        for call in _dependencies(route.dependant):
            if isinstance(call, SessionDependency):
                found.update(call.responses)
        for method in route.methods or ():
            declared[(route.path_format, method.lower())] = found
    bearer = False
    for path, item in schema.get("paths", {}).items():
        for method, op in item.items():
            if not isinstance(op, dict) or "responses" not in op:
                continue
            security = op.get("security")
            if security and {"keyfobSession": []} in security and {_BEARER_SCHEME: []} not in security:
                security.insert(security.index({"keyfobSession": []}) + 1, {_BEARER_SCHEME: []})
                bearer = True
            extra = dict(declared.get((path, method), {}))
            if any("keyfobSession" in requirement for requirement in op.get("security", ())) and \
                    (path, method) not in declared:
                extra.setdefault(401, UNAUTHORIZED)  # a route we could not see into (a prefixed router)
            if csrf and method.upper() not in SAFE_METHODS:
                extra.setdefault(403, CSRF_FAILED)
            extra[503] = UNAVAILABLE
            for status, spec in extra.items():
                op["responses"].setdefault(str(status), {
                    "description": spec["description"],
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/KeyfobError"}}},
                })
    if bearer:
        schemes = schema.setdefault("components", {}).setdefault("securitySchemes", {})
        schemes.setdefault(_BEARER_SCHEME, jsonable_encoder(_BEARER_MODEL, by_alias=True, exclude_none=True))
    schemas = schema.setdefault("components", {}).setdefault("schemas", {})
    schemas["KeyfobError"] = ErrorBody.model_json_schema()
    app.openapi_schema = schema
    return schema


def install(app: FastAPI, fob: Keyfob, *, routes: bool = True, csrf: bool | None = None,
            csrf_exempt: tuple[str, ...] = (), include_in_schema: bool = True) -> None:
    """Add keyfob's middleware, its error handlers and (by default) its routes to a FastAPI app.

    ``include_in_schema=False`` keeps the ``/auth`` routes out of the OpenAPI schema. The store opens
    lazily on the first request; call ``await fob.close()`` at shutdown."""

    async def handle(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, KeyfobError)
        return error_response(exc)

    app.add_exception_handler(KeyfobError, handle)
    app.add_middleware(KeyfobMiddleware, fob=fob, csrf=csrf, csrf_exempt=csrf_exempt)
    if routes:
        app.include_router(auth_router(fob, include_in_schema=include_in_schema))
    app.state.keyfob = fob
    build = app.openapi
    csrf_on = fob.settings.csrf if csrf is None else csrf
    app.openapi = lambda: _document_errors(app, build, csrf_on)  # type: ignore[method-assign]


# Kept for code that imported them from here.
_ = get_keyfob

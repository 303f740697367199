"""FastAPI integration: one ``install`` call, dependencies, and the ``/auth`` router.

```python
from fastapi import Depends, FastAPI
from keyfob import Keyfob, Session
from keyfob.fastapi import install, require_role, require_session

fob = Keyfob.from_env()
app = FastAPI()
install(app, fob)            # middleware + error handlers + /auth routes + JWKS

@app.get("/me")
async def me(session: Session = Depends(require_session)):
    return {"user": session.user_id}

@app.delete("/admin/thing", dependencies=[Depends(require_role("admin"))])
async def admin_only(): ...
```

Errors answer ``{"error": code, "detail": message}``: 401 without a valid session,
403 for a wrong role, a stale sign-in or a failed CSRF check, 503 when the store is down.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import APIRouter, FastAPI, Request
from starlette.responses import Response

from ._session import Session
from .engine import Keyfob
from .errors import KeyfobError
from .starlette import (
    KeyfobMiddleware,
    _require,
    auth_routes,
    current_session,
    error_response,
    get_keyfob,
    sign_in,
    sign_out,
)

__all__ = [
    "Forbidden",
    "auth_router",
    "install",
    "optional_session",
    "require_fresh",
    "require_role",
    "require_session",
    "sign_in",
    "sign_out",
]


class Forbidden(KeyfobError):
    """Signed in, but not allowed (wrong role, or the sign-in is too old for this action)."""

    code = "forbidden"
    status_code = 403


async def optional_session(request: Request) -> Session | None:
    """Dependency: the current session or None."""
    return current_session(request)


async def require_session(request: Request) -> Session:
    """Dependency: the current session, or 401 ``{"error": ..., "detail": ...}``."""
    return _require(request)


def require_role(*roles: str) -> Callable[[Request], Awaitable[Session]]:
    """Dependency factory: 401 without a session, 403 unless ``session.data["role"]`` is one of ``roles``."""
    allowed = frozenset(roles)

    async def dependency(request: Request) -> Session:
        session = _require(request)
        if session.role not in allowed:
            raise Forbidden(f"this needs the role {' or '.join(sorted(allowed))}",
                            hint="sign in with an account that has it")
        return session

    return dependency


def require_fresh(max_age: float | None = None) -> Callable[[Request], Awaitable[Session]]:
    """Dependency factory for sensitive actions: 403 ``reauthentication_required`` when the
    sign-in is older than ``max_age`` seconds (default ``settings.fresh_age``)."""

    async def dependency(request: Request) -> Session:
        session = _require(request)
        if not get_keyfob(request).is_fresh(session, max_age):
            exc = Forbidden("this action needs a recent sign-in", hint="sign in again, then retry")
            exc.code = "reauthentication_required"  # type: ignore[misc]
            raise exc
        return session

    return dependency


def auth_router(fob: Keyfob, *, prefix: str | None = None) -> APIRouter:
    """The ``/auth`` routes (session, sessions, signout, refresh, csrf) and ``/.well-known/jwks.json``."""
    router = APIRouter()
    router.routes.extend(auth_routes(fob, prefix=prefix))
    return router


def install(app: FastAPI, fob: Keyfob, *, routes: bool = True, csrf: bool | None = None,
            csrf_exempt: tuple[str, ...] = ()) -> None:
    """Add keyfob's middleware, its error handlers and (by default) its routes to a FastAPI app.

    The store opens lazily on the first request; call ``await fob.close()`` at shutdown."""

    async def handle(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, KeyfobError)
        return error_response(exc)

    app.add_exception_handler(KeyfobError, handle)
    app.add_middleware(KeyfobMiddleware, fob=fob, csrf=csrf, csrf_exempt=csrf_exempt)
    if routes:
        app.include_router(auth_router(fob))
    app.state.keyfob = fob

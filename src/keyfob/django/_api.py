"""Helpers for views: the signed-in user's devices, revoking them, in either way of using keyfob.

They work the same whether the request's session is keyfob's Django session engine
(``SESSION_ENGINE = "keyfob.django.session_backend"``, the user from ``django.contrib.auth``) or
``KeyfobMiddleware`` (``request.keyfob_session``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from django.contrib.auth.signals import user_logged_in, user_logged_out
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest

from .._session import RequestMeta, SessionInfo
from ._loop import home
from .conf import astarted_fob, get_fob, started_fob

if TYPE_CHECKING:
    from ..engine import Issued
    from ..web import RequestState

__all__ = ["asign_in", "asign_out", "csrf_token", "current_session_id", "current_user_id", "list_sessions",
           "revoke_other_sessions", "revoke_session", "sign_in", "sign_out"]


def current_session_id(request: HttpRequest) -> str | None:
    """The public id of this request's keyfob session (safe to show and log), or None."""
    session = getattr(request, "keyfob_session", None)
    if session is not None:
        return str(session.id)
    return getattr(getattr(request, "session", None), "keyfob_id", None)


def current_user_id(request: HttpRequest) -> str | None:
    """keyfob's user id for this request: the keyfob session's, else ``str(request.user.pk)``."""
    session = getattr(request, "keyfob_session", None)
    if session is not None:
        return str(session.user_id)
    user: Any = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        return str(user.pk)
    return None


def list_sessions(request: HttpRequest) -> list[SessionInfo]:
    """The signed-in user's active sessions (``current`` marks this one); [] when signed out."""
    user_id = current_user_id(request)
    if user_id is None:
        return []
    return home.run(get_fob().list_sessions(user_id, current=current_session_id(request)))


def revoke_session(request: HttpRequest, session_id: str) -> bool:
    """Revoke one of the signed-in user's own sessions; False for an unknown or another user's id."""
    user_id = current_user_id(request)
    if user_id is None or not session_id:
        return False
    fob = get_fob()
    info = home.run(fob.get_session(session_id))
    if info is None or info.user_id != user_id:
        return False
    return home.run(fob.revoke(session_id))


def revoke_other_sessions(request: HttpRequest) -> int:
    """Sign the user out on every other device (this one stays signed in); returns how many went
    (-1 for jwt: every other token is refused at its next use, this one is re-issued)."""
    req: RequestState | None = getattr(request, "keyfob", None)
    if req is not None and req.session is not None:  # KeyfobMiddleware: any strategy
        n, reissued = home.run(started_fob().revoke_others(req.cookies, secure=req.secure))
        if reissued is not None:
            req.replaced(reissued)
            request.keyfob_session = reissued.session
        return int(n)
    user_id = current_user_id(request)
    current = current_session_id(request)
    if user_id is None or current is None:
        return 0
    return home.run(get_fob().revoke_user(user_id, keep=current))


# -- KeyfobMiddleware: signing in and out ---------------------------------------------------------------

def _state(request: HttpRequest) -> RequestState:
    req: RequestState | None = getattr(request, "keyfob", None)
    if req is None:
        raise ImproperlyConfigured(
            "this request did not go through keyfob's middleware; add "
            "'keyfob.django.middleware.KeyfobMiddleware' to MIDDLEWARE (after AuthenticationMiddleware)")
    return req


def _user_id_and_model(user: Any) -> tuple[str, Any]:
    if isinstance(user, str):
        return user, None
    pk = getattr(user, "pk", None)
    if pk is None:
        raise ValueError("sign_in needs a saved user (with a primary key) or a user id string")
    return str(pk), user


def _meta(request: HttpRequest) -> RequestMeta:
    return RequestMeta(ip=request.META.get("REMOTE_ADDR") or None,
                       user_agent=request.META.get("HTTP_USER_AGENT") or None)


def _signed_in(request: HttpRequest, req: RequestState, issued: Issued, model_user: Any) -> None:
    req.signed_in(issued)
    request.keyfob_session = issued.session
    if model_user is not None:
        request.user = model_user


def sign_in(request: HttpRequest, user: Any, *, data: Mapping[str, Any] | None = None, remember: bool = True,
            amr: Sequence[str] = ()) -> Issued:
    """Sign ``user`` (a user model instance, or a user id string) in with keyfob: a new session (a
    fresh id, any session the request carried is ended), its cookies and a new CSRF token on the
    response. ``data`` is stored in the session (``data={"role": "admin"}`` for ``role_required``).
    ``remember=False`` ("don't remember me"): browser-session cookies and the browser-session
    lifetimes; ``amr``: the methods the user just proved (``["pwd"]``, for ``require_session(level=)``)."""
    req = _state(request)
    user_id, model_user = _user_id_and_model(user)
    fob = started_fob()
    issued = home.run(fob.create(user_id, data, _meta(request), secure=req.secure, cookies=req.cookies,
                                 remember=remember, amr=amr))
    _signed_in(request, req, issued, model_user)
    if model_user is not None:  # Django's own receivers run, e.g. update_last_login
        user_logged_in.send(sender=model_user.__class__, request=request, user=model_user)
    return issued


async def asign_in(request: HttpRequest, user: Any, *, data: Mapping[str, Any] | None = None,
                   remember: bool = True, amr: Sequence[str] = ()) -> Issued:
    """:func:`sign_in` for async views."""
    req = _state(request)
    user_id, model_user = _user_id_and_model(user)
    fob = await astarted_fob()
    issued = await home.arun(fob.create(user_id, data, _meta(request), secure=req.secure,
                                        cookies=req.cookies, remember=remember, amr=amr))
    _signed_in(request, req, issued, model_user)
    if model_user is not None:
        await user_logged_in.asend(sender=model_user.__class__, request=request, user=model_user)
    return issued


def _signed_out(request: HttpRequest, req: RequestState, cleared: list[Any]) -> Any:
    from django.contrib.auth.models import AnonymousUser  # not at import: the app registry loads this

    user = getattr(request, "user", None)
    req.signed_out(cleared)
    request.keyfob_session = None
    request.user = AnonymousUser()
    return user if user is not None and getattr(user, "is_authenticated", False) else None


def sign_out(request: HttpRequest) -> None:
    """End the request's keyfob session (revoked in the store) and clear its cookies."""
    req = _state(request)
    cleared = home.run(started_fob().sign_out(req.cookies, secure=req.secure))
    user = _signed_out(request, req, cleared)
    if user is not None:
        user_logged_out.send(sender=user.__class__, request=request, user=user)


async def asign_out(request: HttpRequest) -> None:
    """:func:`sign_out` for async views."""
    req = _state(request)
    fob = await astarted_fob()
    cleared = await home.arun(fob.sign_out(req.cookies, secure=req.secure))
    user = _signed_out(request, req, cleared)
    if user is not None:
        await user_logged_out.asend(sender=user.__class__, request=request, user=user)


def csrf_token(request: HttpRequest) -> str:
    """keyfob's CSRF token for this request (a form's ``csrf_token`` field, or ``X-CSRF-Token``)."""
    return _state(request).csrf_token()

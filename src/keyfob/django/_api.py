"""Helpers for views: the signed-in user's devices, revoking them, in either way of using keyfob.

They work the same whether the request's session is keyfob's Django session engine
(``SESSION_ENGINE = "keyfob.django.session_backend"``, the user from ``django.contrib.auth``) or
``KeyfobMiddleware`` (``request.keyfob_session``).
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from .._session import SessionInfo
from ._loop import home
from .conf import get_fob

__all__ = ["current_session_id", "current_user_id", "list_sessions", "revoke_other_sessions",
           "revoke_session"]


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
    """Sign the user out on every other device; returns how many sessions went."""
    user_id = current_user_id(request)
    current = current_session_id(request)
    if user_id is None or current is None:
        return 0
    return home.run(get_fob().revoke_user(user_id, keep=current))

"""The device a request comes from, for the session rows the engine writes (IP, user agent).

Django builds ``SessionStore(session_key)`` without the request, so the ``keyfob.django`` app
records each request's WSGI environ or ASGI scope in a context variable when the request starts
(the ``request_started`` signal carries it); ``current_meta()`` reads the device from it when
the engine writes a session row — most requests write none, so none of them pays for a
``RequestMeta``. asgiref carries context variables into and out of its worker threads.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any

from .._session import RequestMeta

__all__ = ["current_meta", "meta_from_environ", "meta_from_scope", "on_request_started"]

#: The current request's ``("environ", environ)`` or ``("scope", scope)``.
_source: ContextVar[tuple[str, Mapping[str, Any]] | None] = ContextVar("keyfob_django_request", default=None)


def meta_from_environ(environ: Mapping[str, Any]) -> RequestMeta:
    return RequestMeta(ip=environ.get("REMOTE_ADDR") or None,
                       user_agent=(environ.get("HTTP_USER_AGENT") or None))


def meta_from_scope(scope: Mapping[str, Any]) -> RequestMeta:
    client = scope.get("client")
    ua = None
    for name, value in scope.get("headers") or ():
        if name == b"user-agent":
            ua = value.decode("latin-1")
            break
    return RequestMeta(ip=client[0] if client else None, user_agent=ua)


def current_meta() -> RequestMeta | None:
    """The device of the request being served, or None outside one."""
    source = _source.get()
    if source is None:
        return None
    kind, mapping = source
    return meta_from_environ(mapping) if kind == "environ" else meta_from_scope(mapping)


def on_request_started(sender: object, *, environ: Mapping[str, Any] | None = None,
                       scope: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
    """``request_started`` receiver (connected in ``KeyfobConfig.ready``)."""
    if environ is not None:
        _source.set(("environ", environ))
    elif scope is not None:
        _source.set(("scope", scope))

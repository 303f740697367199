"""keyfob's ``/auth`` routes for Django: ``path("auth/", include("keyfob.django.urls"))``.

The same routes, status codes and JSON as every keyfob integration (``keyfob.web.AuthRoutes``):
``GET session``, ``POST session`` (the client's own update, decided by ``Keyfob(on_update=...)``),
``GET csrf``, ``GET sessions``, ``DELETE sessions/<id>``, ``POST sessions/revoke-others``,
``POST signout``, ``POST refresh``; and ``jwks_urlpatterns`` for
``/.well-known/jwks.json`` at the site root. They need ``KeyfobMiddleware``. They are exempt from
Django's ``CsrfViewMiddleware`` and protected by keyfob's CSRF check instead (session-bound
``X-CSRF-Token`` from ``GET csrf``, Origin, Fetch Metadata).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from django.urls import URLPattern, path

from ..errors import KeyfobError
from ..web import AuthRoutes
from ._api import _state
from ._loop import home
from .conf import started_fob
from .middleware import error_response

__all__ = ["jwks_urlpatterns", "urlpatterns"]

app_name = "keyfob"
Route = Callable[..., Coroutine[Any, Any, tuple[int, Any]]]


def _reply(outcome: tuple[int, Any], cache: str = "no-store") -> HttpResponse:
    status, body = outcome
    response = JsonResponse(body, status=status, safe=False)
    response["Cache-Control"] = cache
    return response


def _no_extra(request: HttpRequest) -> tuple[Any, ...]:
    return ()


def _body(request: HttpRequest) -> tuple[Any, ...]:
    return request.content_type, request.body


Handler = tuple[Callable[[AuthRoutes], Route], Callable[[HttpRequest], tuple[Any, ...]]]


def _route(**methods: Handler) -> Callable[..., HttpResponse]:
    """One path's view: ``GET=(pick, extra)``, ``POST=...`` — the ``AuthRoutes`` handler per method
    (``extra``: what it takes from the request besides the core's state), 405 for any other."""
    if "GET" in methods:
        methods.setdefault("HEAD", methods["GET"])
    allowed = ", ".join(m for m in methods if m != "HEAD")

    @csrf_exempt
    def view(request: HttpRequest, **kwargs: Any) -> HttpResponse:
        handler = methods.get(request.method or "")
        if handler is None:
            response = JsonResponse({"error": "method_not_allowed", "detail": f"use {allowed}"}, status=405)
            response["Allow"] = allowed
            return response
        pick, extra = handler
        req = _state(request)
        try:
            routes = AuthRoutes(started_fob())
            return _reply(home.run(pick(routes)(req, *kwargs.values(), *extra(request))))
        except KeyfobError as exc:
            return error_response(exc)

    view.keyfob_csrf = True  # keyfob's CSRF check applies, not Django's
    marked: Callable[..., HttpResponse] = view
    return marked


def _jwks(request: HttpRequest) -> HttpResponse:
    return _reply(AuthRoutes(started_fob()).jwks(), cache="public, max-age=300")


urlpatterns: list[URLPattern] = [
    path("session", _route(GET=(lambda r: r.session, _no_extra), POST=(lambda r: r.update, _body)),
         name="session"),
    path("csrf", _route(GET=(lambda r: r.csrf, _no_extra)), name="csrf"),
    path("sessions", _route(GET=(lambda r: r.sessions, _no_extra)), name="sessions"),
    path("sessions/revoke-others", _route(POST=(lambda r: r.revoke_others, _no_extra)), name="revoke-others"),
    path("sessions/<str:sid>", _route(DELETE=(lambda r: r.delete_session, _no_extra)), name="session-detail"),
    path("signout", _route(POST=(lambda r: r.signout, _no_extra)), name="signout"),
    path("refresh", _route(POST=(lambda r: r.refresh, _body)), name="refresh"),
]

jwks_urlpatterns: list[URLPattern] = [path(".well-known/jwks.json", _jwks, name="keyfob-jwks")]

"""keyfob's ``/auth`` routes for Django: ``path("auth/", include("keyfob.django.urls"))``.

The same routes, status codes and JSON as every keyfob integration (``keyfob.web.AuthRoutes``):
``GET session``, ``GET csrf``, ``GET sessions``, ``DELETE sessions/<id>``,
``POST sessions/revoke-others``, ``POST signout``, ``POST refresh``; and ``jwks_urlpatterns`` for
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


def _route(method: str, pick: Callable[[AuthRoutes], Route],
           extra: Callable[[HttpRequest], tuple[Any, ...]] = _no_extra) -> Callable[..., HttpResponse]:
    @csrf_exempt
    def view(request: HttpRequest, **kwargs: Any) -> HttpResponse:
        if request.method != method and not (method == "GET" and request.method == "HEAD"):
            return JsonResponse({"error": "method_not_allowed", "detail": f"use {method}"}, status=405)
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
    path("session", _route("GET", lambda r: r.session), name="session"),
    path("csrf", _route("GET", lambda r: r.csrf), name="csrf"),
    path("sessions", _route("GET", lambda r: r.sessions), name="sessions"),
    path("sessions/revoke-others", _route("POST", lambda r: r.revoke_others), name="revoke-others"),
    path("sessions/<str:sid>", _route("DELETE", lambda r: r.delete_session), name="session-detail"),
    path("signout", _route("POST", lambda r: r.signout), name="signout"),
    path("refresh", _route("POST", lambda r: r.refresh,
                           lambda request: (request.content_type, request.body)), name="refresh"),
]

jwks_urlpatterns: list[URLPattern] = [path(".well-known/jwks.json", _jwks, name="keyfob-jwks")]

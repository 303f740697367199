"""The HTTP contract's app for Django: keyfob's ``/auth`` routes and the contract's views, sync and
async, function and class-based (the ASGI row runs the async ones natively; the WSGI row through
Django's adapter). The session policy routes: ``/confirmed`` (a sync view), ``/fresh`` (an async
view), ``/strong`` (a class-based view with ``RequireSessionMixin``)."""

from __future__ import annotations

import json
from typing import Any

from django.http import HttpRequest, JsonResponse
from django.views import View

from django.urls import include, path
from keyfob.django import asign_in
from keyfob.django.decorators import RequireSessionMixin, login_required, require_session, role_required
from keyfob.django.urls import jwks_urlpatterns


async def login(request: HttpRequest) -> JsonResponse:
    body: dict[str, Any] = json.loads(request.body)
    issued = await asign_in(request, body["user"], data={"role": body.get("role", "user"), "name": "Ada"},
                            remember=body.get("remember", True), amr=body.get("amr", ()))
    return JsonResponse({"id": issued.session.id})


@login_required
def me(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"user": request.keyfob_session.user_id})  # type: ignore[attr-defined]


@role_required("admin")
async def admin(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"ok": True})


@login_required
def action(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"ok": True})


@require_session(max_staleness=0)
def confirmed(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"user": request.keyfob_session.user_id})  # type: ignore[attr-defined]


@require_session(fresh=600)
async def fresh(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"user": request.keyfob_session.user_id})  # type: ignore[attr-defined]


class Strong(RequireSessionMixin, View):
    level = 2

    def get(self, request: HttpRequest) -> JsonResponse:
        return JsonResponse({"user": request.keyfob_session.user_id})  # type: ignore[attr-defined]


urlpatterns = [
    path("auth/", include("keyfob.django.urls")),
    *jwks_urlpatterns,
    path("login", login),
    path("me", me),
    path("admin", admin),
    path("action", action),
    path("confirmed", confirmed),
    path("fresh", fresh),
    path("strong", Strong.as_view()),
]

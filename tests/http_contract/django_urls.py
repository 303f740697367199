"""The HTTP contract's app for Django: keyfob's ``/auth`` routes and the contract's four views, two
of them async (the ASGI row runs them natively; the WSGI row through Django's adapter)."""

from __future__ import annotations

import json
from typing import Any

from django.http import HttpRequest, JsonResponse

from django.urls import include, path
from keyfob.django import asign_in
from keyfob.django.decorators import login_required, role_required
from keyfob.django.urls import jwks_urlpatterns


async def login(request: HttpRequest) -> JsonResponse:
    body: dict[str, Any] = json.loads(request.body)
    issued = await asign_in(request, body["user"], data={"role": body.get("role", "user"), "name": "Ada"})
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


urlpatterns = [
    path("auth/", include("keyfob.django.urls")),
    *jwks_urlpatterns,
    path("login", login),
    path("me", me),
    path("admin", admin),
    path("action", action),
]

"""Views for keyfob's in-process Django tests."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import aauthenticate, alogin, authenticate, login, logout, update_session_auth_hash
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from django.urls import path


def whoami(request: HttpRequest) -> JsonResponse:
    request.session["seen"] = request.session.get("seen", 0) + 1
    user = request.user
    return JsonResponse({"user": user.get_username() if user.is_authenticated else None,
                         "seen": request.session["seen"]})


def peek(request: HttpRequest) -> JsonResponse:
    """Reads the session without writing it."""
    user = request.user
    return JsonResponse({"user": user.get_username() if user.is_authenticated else None})


@csrf_exempt
def signin(request: HttpRequest) -> HttpResponse:
    user = authenticate(request, username=request.POST["username"], password=request.POST["password"])
    if user is None:
        return HttpResponse(status=401)
    login(request, user)
    return HttpResponse("ok")


@csrf_exempt
def signout(request: HttpRequest) -> HttpResponse:
    logout(request)
    return HttpResponse("bye")


@csrf_exempt
def change_password(request: HttpRequest) -> HttpResponse:
    user = request.user
    assert user.is_authenticated
    user.set_password(request.POST["password"])
    user.save()
    update_session_auth_hash(request, user)
    return HttpResponse("changed")


@csrf_exempt
def cycle(request: HttpRequest) -> HttpResponse:
    request.session.cycle_key()
    return HttpResponse("cycled")


@csrf_exempt
async def asignin(request: HttpRequest) -> HttpResponse:
    user = await aauthenticate(request, username=request.POST["username"], password=request.POST["password"])
    if user is None:
        return HttpResponse(status=401)
    await alogin(request, user)
    return HttpResponse("ok")


async def awhoami(request: HttpRequest) -> JsonResponse:
    user = await request.auser()
    seen = await request.session.aget("seen", 0) + 1
    await request.session.aset("seen", seen)
    return JsonResponse({"user": user.get_username() if user.is_authenticated else None, "seen": seen})


urlpatterns = [
    path("admin/", admin.site.urls),
    path("whoami", whoami),
    path("peek", peek),
    path("signin", signin),
    path("signout", signout),
    path("password", change_password),
    path("cycle", cycle),
    path("asignin", asignin),
    path("awhoami", awhoami),
]

"""KeyfobMiddleware in a Django project: Django users, Django's CSRF alongside keyfob's, decorators,
class-based views, async views, outages. (The framework-neutral HTTP contract runs in
tests/http_contract for django-wsgi and django-asgi.)"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.test import AsyncClient, Client, override_settings
from django.views import View
from django.views.decorators.csrf import csrf_exempt

import keyfob.django as kf
from django.urls import include, path
from keyfob import Keyfob
from keyfob.django._loop import home
from keyfob.django.conf import use_fob
from keyfob.django.decorators import (
    FreshRequiredMixin,
    LoginRequiredMixin,
    RequireSessionMixin,
    RoleRequiredMixin,
    fresh_required,
    login_required,
    require_session,
    role_required,
)
from keyfob.django.urls import jwks_urlpatterns
from tests.conftest import SECRET

STRATEGIES = ["jwt", "database", "hybrid"]
KEYFOB_ONLY = ["keyfob.django.middleware.KeyfobMiddleware"]
WITH_DJANGO = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "keyfob.django.middleware.KeyfobMiddleware",
]


def signin(request: HttpRequest) -> HttpResponse:
    user = get_user_model().objects.get(username=request.POST["username"])
    kf.sign_in(request, user, data={"role": request.POST.get("role", "user")},
               remember=request.POST.get("remember") != "no", amr=request.POST.getlist("amr"))
    return HttpResponse("ok")


def whoami(request: HttpRequest) -> JsonResponse:
    user: Any = request.user
    return JsonResponse({"user": user.get_username() if user.is_authenticated else None,
                         "session": getattr(request, "keyfob_session", None) is not None})


def form(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        return HttpResponse("posted")
    from django.middleware.csrf import get_token

    return HttpResponse(f"<form><input name=csrfmiddlewaretoken value={get_token(request)}>"
                        f"<input name=csrf_token value={kf.csrf_token(request)}></form>")


@csrf_exempt
def webhook(request: HttpRequest) -> HttpResponse:
    return HttpResponse("hooked")


def signout(request: HttpRequest) -> HttpResponse:
    kf.sign_out(request)
    return HttpResponse("bye")


async def asignin(request: HttpRequest) -> HttpResponse:
    user = await get_user_model().objects.aget(username=request.POST["username"])
    await kf.asign_in(request, user)
    return HttpResponse("ok")


@login_required
async def adashboard(request: HttpRequest) -> JsonResponse:
    user = await request.auser()  # type: ignore[attr-defined]
    return JsonResponse({"user": user.get_username()})


@login_required
def dashboard(request: HttpRequest) -> HttpResponse:
    return HttpResponse("dashboard")


@role_required("admin")
def admin_only(request: HttpRequest) -> HttpResponse:
    return HttpResponse("admin")


@fresh_required(max_age=60)
def sensitive(request: HttpRequest) -> HttpResponse:
    return HttpResponse("fresh")


class Reports(LoginRequiredMixin, View):
    def get(self, request: HttpRequest) -> HttpResponse:
        return HttpResponse("reports")


class Audit(RoleRequiredMixin, View):
    required_roles = ("auditor", "admin")

    def get(self, request: HttpRequest) -> HttpResponse:
        return HttpResponse("audit")


class Rekey(FreshRequiredMixin, View):
    fresh_max_age = 60

    async def get(self, request: HttpRequest) -> HttpResponse:
        return HttpResponse("rekey")


@require_session(max_staleness=0)
def pay(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"user": request.user.get_username()})


@require_session(max_staleness=0)
async def apay(request: HttpRequest) -> JsonResponse:
    user = await request.auser()  # type: ignore[attr-defined]
    return JsonResponse({"user": user.get_username()})


class Payout(RequireSessionMixin, View):
    max_staleness = 0

    def get(self, request: HttpRequest) -> JsonResponse:
        return JsonResponse({"user": request.user.get_username()})


class APayout(RequireSessionMixin, View):
    max_staleness = 0

    async def get(self, request: HttpRequest) -> JsonResponse:
        user = await request.auser()  # type: ignore[attr-defined]
        return JsonResponse({"user": user.get_username()})


@require_session(level=2)
def strong(request: HttpRequest) -> HttpResponse:
    return HttpResponse("strong")


class ChangePassword(RequireSessionMixin, View):
    fresh = 600

    async def get(self, request: HttpRequest) -> HttpResponse:
        return HttpResponse("change password")


@require_session
def bare(request: HttpRequest) -> HttpResponse:
    return HttpResponse("bare")


urlpatterns = [
    path("auth/", include("keyfob.django.urls")),
    path("pay", pay),
    path("apay", apay),
    path("payout", Payout.as_view()),
    path("apayout", APayout.as_view()),
    path("strong", strong),
    path("change-password", ChangePassword.as_view()),
    path("bare", bare),
    *jwks_urlpatterns,
    path("signin", csrf_exempt(signin)),
    path("signout", signout),
    path("asignin", csrf_exempt(asignin)),
    path("whoami", whoami),
    path("form", form),
    path("webhook", webhook),
    path("dashboard", dashboard),
    path("adashboard", adashboard),
    path("admin-only", admin_only),
    path("sensitive", sensitive),
    path("reports", Reports.as_view()),
    path("audit", Audit.as_view()),
    path("rekey", Rekey.as_view()),
]


@pytest.fixture(params=STRATEGIES)
def strategy_fob(request: pytest.FixtureRequest, tmp_path: Any, fob: Keyfob) -> Iterator[Keyfob]:
    engine = Keyfob(strategy=request.param, secret=SECRET, store=f"sqlite:///{tmp_path / 'mw.db'}")
    with use_fob(engine):
        yield engine
    from keyfob.django._loop import home

    home.run(engine.close())


def project(middleware: list[str]) -> Any:
    return override_settings(ROOT_URLCONF=__name__, MIDDLEWARE=middleware, LOGIN_URL="/login")


def signed_in_client(role: str = "user", **kwargs: Any) -> Client:
    get_user_model().objects.get_or_create(username="ada")
    client = Client(**kwargs)
    assert client.post("/signin", {"username": "ada", "role": role}).status_code == 200
    return client


def test_request_user_is_the_django_user_of_the_keyfob_session(strategy_fob: Keyfob) -> None:
    with project(KEYFOB_ONLY):
        client = signed_in_client()
        assert client.get("/whoami").json() == {"user": "ada", "session": True}
        assert client.post("/signout", headers=csrf_headers(client)).status_code == 200
        assert client.get("/whoami").json() == {"user": None, "session": False}


def csrf_headers(client: Client) -> dict[str, str]:
    token = client.get("/auth/csrf").json()["csrfToken"]
    return {"X-CSRF-Token": token, "Origin": "http://testserver"}


def test_with_djangos_csrf_middleware_django_protects_views_and_keyfob_its_routes(
        strategy_fob: Keyfob) -> None:
    with project(WITH_DJANGO):
        client = signed_in_client(enforce_csrf_checks=True)
        page = client.get("/form").content.decode()
        django_token = re.search(r"csrfmiddlewaretoken value=([^>\s]+)>", page)
        assert django_token
        assert client.post("/form").status_code == 403  # Django's check: no token
        assert client.post("/form", {"csrfmiddlewaretoken": django_token[1]}).status_code == 200
        assert client.post("/webhook").status_code == 200  # @csrf_exempt is Django's to grant
        forged = client.post("/auth/signout", headers={"Origin": "https://evil.example"})
        assert forged.status_code == 403 and forged.json()["error"] == "csrf_failed"  # keyfob's route
        assert client.get("/whoami").json()["user"] == "ada"
        assert client.post("/auth/signout", headers=csrf_headers(client)).status_code == 200


def test_without_djangos_csrf_middleware_keyfob_protects_every_view(strategy_fob: Keyfob) -> None:
    with project(KEYFOB_ONLY):
        client = signed_in_client()
        page = client.get("/form").content.decode()
        token = re.search(r"csrf_token value=([^>\s]+)>", page)
        assert token
        refused = client.post("/form")
        assert refused.status_code == 403 and refused.json()["error"] == "csrf_failed"
        assert client.post("/form", {"csrf_token": token[1]}).status_code == 200
        assert client.post("/form", {"csrf_token": "forged"}).status_code == 403
        assert client.post("/webhook").status_code == 200  # @csrf_exempt still exempts
        cross = client.post("/form", {"csrf_token": token[1]}, headers={"Sec-Fetch-Site": "cross-site"})
        assert cross.status_code == 403


def test_login_required_redirects_html_and_answers_json_401_otherwise(strategy_fob: Keyfob) -> None:
    with project(KEYFOB_ONLY):
        anonymous = Client()
        page = anonymous.get("/dashboard", headers={"Accept": "text/html"})
        assert page.status_code == 302 and page["Location"] == "/login?next=/dashboard"
        api = anonymous.get("/dashboard")
        assert api.status_code == 401 and api.json()["error"]
        assert anonymous.get("/reports").status_code == 401
        client = signed_in_client()
        assert client.get("/dashboard").content == b"dashboard"
        assert client.get("/reports").content == b"reports"


def test_role_and_fresh_guards_for_functions_and_class_based_views(strategy_fob: Keyfob) -> None:
    with project(KEYFOB_ONLY):
        user = signed_in_client("user")
        assert user.get("/admin-only").status_code == 403
        assert user.get("/audit").status_code == 403
        admin = signed_in_client("admin")
        assert admin.get("/admin-only").content == b"admin"
        assert admin.get("/audit").content == b"audit"
        assert admin.get("/sensitive").content == b"fresh"
        assert admin.get("/rekey").content == b"rekey"


def test_fresh_required_refuses_an_old_sign_in(fob: Keyfob, tmp_path: Any) -> None:
    from keyfob import FakeClock

    clock = FakeClock()
    engine = Keyfob(strategy="hybrid", secret=SECRET, store=f"sqlite:///{tmp_path / 'f.db'}", clock=clock)
    with use_fob(engine), project(KEYFOB_ONLY):
        client = signed_in_client("admin")
        clock.advance(61)
        old = client.get("/sensitive")
        assert old.status_code == 403 and old.json()["error"] == "reauthentication_required"
        assert client.get("/rekey").status_code == 403


@pytest.mark.anyio
async def test_async_views_and_the_async_middleware_path(strategy_fob: Keyfob) -> None:
    from asgiref.sync import sync_to_async

    await sync_to_async(get_user_model().objects.get_or_create)(username="ada")
    with project(KEYFOB_ONLY):
        client = AsyncClient()
        assert (await client.post("/asignin", {"username": "ada"})).status_code == 200
        assert (await client.get("/adashboard")).json() == {"user": "ada"}
        assert (await client.get("/rekey")).content == b"rekey"


CONFIRMED = ["pay", "apay", "payout", "apayout"]  # sync and async, function and class-based


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_require_session_max_staleness_0_asks_the_store_in_every_kind_of_view(
    strategy: str, fob: Keyfob, tmp_path: Any,
) -> None:
    db = f"sqlite:///{tmp_path / 'pay.db'}"
    engine = Keyfob(strategy=strategy, secret=SECRET, store=db, feed=None)  # no feed: a stale view
    other_node = Keyfob(strategy=strategy, secret=SECRET, store=db, feed=None)
    with use_fob(engine), project(KEYFOB_ONLY):
        for route in CONFIRMED:
            client = signed_in_client()
            assert client.get(f"/{route}").json() == {"user": "ada"}, route
            sid = kf.current_session_id(client.get("/whoami").wsgi_request)
            assert sid is not None
            home.run(other_node.revoke(sid))
            assert client.get("/whoami").json()["session"] is (strategy != "database")  # the view's staleness
            refused = client.get(f"/{route}")
            assert refused.status_code == 401, route
            if strategy != "database":  # (database: the default check above already refused, and cleared)
                assert refused.json()["error"] == "session_revoked", route
        home.run(other_node.close())
        page = client.get("/pay", headers={"Accept": "text/html"})
        assert page.status_code == 302 and page["Location"] == "/login?next=/pay"
    home.run(engine.close())


@pytest.mark.anyio
async def test_require_session_max_staleness_0_under_the_async_client(strategy_fob: Keyfob) -> None:
    from asgiref.sync import sync_to_async

    await sync_to_async(get_user_model().objects.get_or_create)(username="ada")
    with project(KEYFOB_ONLY):
        client = AsyncClient()
        assert (await client.post("/asignin", {"username": "ada"})).status_code == 200
        for route in CONFIRMED:
            assert (await client.get(f"/{route}")).json() == {"user": "ada"}, route
        assert (await client.post("/auth/signout", headers={
            "X-CSRF-Token": (await client.get("/auth/csrf")).json()["csrfToken"],
            "Origin": "http://testserver"})).status_code == 200
        for route in CONFIRMED:
            assert (await client.get(f"/{route}")).status_code == 401, route


def test_require_session_step_up_403s_say_what_to_do(fob: Keyfob, tmp_path: Any) -> None:
    from keyfob import FakeClock

    clock = FakeClock()
    engine = Keyfob(strategy="hybrid", secret=SECRET, store=f"sqlite:///{tmp_path / 's.db'}", clock=clock)
    with use_fob(engine), project(KEYFOB_ONLY):
        get_user_model().objects.get_or_create(username="ada")
        client = Client()
        assert client.post("/signin", {"username": "ada", "amr": ["pwd"]}).status_code == 200
        assert client.get("/bare").content == b"bare"
        assert client.get("/change-password").content == b"change password"
        weak = client.get("/strong")
        assert weak.status_code == 403
        assert {k: weak.json()[k] for k in ("error", "reason", "level", "current_level")} == {
            "error": "step_up_required", "reason": "level", "level": 2, "current_level": 1}
        assert "elevate" in weak.json()["hint"]
        clock.advance(601)
        stale = client.get("/change-password")
        assert stale.status_code == 403
        assert (stale.json()["reason"], stale.json()["max_age"]) == ("fresh", 600)
        assert client.get("/bare").content == b"bare"  # still signed in: only the step-up views ask
        strong_client = Client()
        assert strong_client.post("/signin", {"username": "ada", "amr": ["pwd", "otp"]}).status_code == 200
        assert strong_client.get("/strong").content == b"strong"
        assert Client().get("/bare").status_code == 401
    home.run(engine.close())


def test_require_session_without_keyfob_middleware_names_it(fob: Keyfob) -> None:
    from django.core.exceptions import ImproperlyConfigured

    with project(WITH_DJANGO[:3]), pytest.raises(ImproperlyConfigured, match="KeyfobMiddleware"):
        Client().get("/bare")


@pytest.mark.parametrize("route", CONFIRMED)
def test_a_store_outage_during_the_confirmation_is_a_503(route: str, fob: Keyfob) -> None:
    from tests.conftest import require_service
    from tests.http_contract.test_store_outage import REDIS_SERVER, PrivateRedis

    require_service("redis-server", os.access(REDIS_SERVER, os.X_OK), "apt-get install redis-server")
    server = PrivateRedis()
    try:
        # jwt without a feed: the middleware's check needs no store, the confirmation does
        engine = Keyfob(strategy="jwt", secret=SECRET, store=server.url, feed=None)
        with use_fob(engine), project(KEYFOB_ONLY):
            client = signed_in_client()
            assert client.get(f"/{route}").status_code == 200
            server.kill()
            assert client.get("/whoami").json()["session"] is True
            down = client.get(f"/{route}")
            assert down.status_code == 503 and down["Retry-After"], route
            assert down.json()["error"] == "store_unavailable"
        home.run(engine.close())
    finally:
        server.kill()


def test_a_guard_mixin_without_its_guard_cannot_be_instantiated() -> None:
    from keyfob.django.decorators import _GuardMixin

    class Unguarded(_GuardMixin, View):
        pass

    with pytest.raises(TypeError, match="keyfob_guard"):
        Unguarded()


def test_a_store_outage_is_a_503_never_an_anonymous_pass(fob: Keyfob, tmp_path: Any) -> None:
    up = Keyfob(strategy="database", secret=SECRET, store=f"sqlite:///{tmp_path / 'o.db'}")
    with use_fob(up), project(KEYFOB_ONLY):
        client = signed_in_client()
    down = Keyfob(strategy="database", secret=SECRET, store="postgresql://postgres@127.0.0.1:1/none")
    with use_fob(down), project(KEYFOB_ONLY):
        response = client.get("/whoami")
        assert response.status_code == 503 and response["Retry-After"]
        assert response.json()["error"] == "store_unavailable"
        assert Client().get("/whoami").status_code == 200  # no cookie: nothing to check, no outage


def test_middleware_helpers_outside_the_middleware_say_what_to_add(fob: Keyfob) -> None:
    from django.core.exceptions import ImproperlyConfigured
    from django.test import RequestFactory

    with pytest.raises(ImproperlyConfigured, match="KeyfobMiddleware"):
        kf.sign_in(RequestFactory().get("/"), "u1")


def test_a_store_outage_under_the_session_engine_is_a_503_with_the_middleware(fob: Keyfob) -> None:
    from django.conf import settings

    key = "k" * 43  # a well-formed session key: the engine has to ask the store
    down = {"SECRET": SECRET, "STORE": "postgresql://postgres@127.0.0.1:1/none"}
    with override_settings(KEYFOB=down), project(WITH_DJANGO):
        client = Client()
        client.cookies[settings.SESSION_COOKIE_NAME] = key
        response = client.get("/whoami")  # request.user reads the session: the store is down
        assert response.status_code == 503 and response.json()["error"] == "store_unavailable"


def test_the_admin_lists_and_revokes_keyfob_middleware_sessions(fob: Keyfob, tmp_path: Any) -> None:
    from django.contrib import admin

    engine = Keyfob(strategy="hybrid", secret=SECRET, store=f"sqlite:///{tmp_path / 'adm.db'}")
    admin_urls = [path("admin/", admin.site.urls), *urlpatterns]
    # the admin's own sign-in is a Django session: Django's engine (keyfob's stores database sessions only)
    with use_fob(engine), override_settings(ROOT_URLCONF=_Urls(admin_urls), MIDDLEWARE=[
            *WITH_DJANGO, "django.contrib.messages.middleware.MessageMiddleware"],
            SESSION_ENGINE="django.contrib.sessions.backends.db"):
        device = signed_in_client()
        ada = get_user_model().objects.get(username="ada")
        get_user_model().objects.create_superuser("root", "root@example.test", "pw-root-1")
        staff = Client()
        assert staff.login(username="root", password="pw-root-1")
        page = staff.get(f"/admin/auth/user/{ada.pk}/change/").content.decode()
        (sid,) = re.findall(r'data-session-id="([^"]+)"', page)
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
        assert token
        staff.post(f"/admin/auth/user/{ada.pk}/keyfob-sessions/revoke/",
                   {"session_id": sid, "csrfmiddlewaretoken": token[1]})
        assert device.get("/whoami").json()["user"] is None  # hybrid: refused at once on this node
    from keyfob.django._loop import home

    home.run(engine.close())


class _Urls:
    """A URLconf object for ``override_settings(ROOT_URLCONF=...)``."""

    def __init__(self, patterns: list[Any]) -> None:
        self.urlpatterns = patterns


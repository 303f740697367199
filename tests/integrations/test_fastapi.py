"""FastAPI over HTTP: the middleware, the dependencies and the /auth routes, for every strategy."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI, Request

from keyfob import FakeClock, Keyfob, Session
from keyfob.fastapi import install, require_fresh, require_role, require_session, sign_in

pytestmark = pytest.mark.anyio
SECRET = "kf-http-secret-0123456789abcdef0123456789abcdef0123456789ab"
STRATEGIES = ["jwt", "database", "hybrid"]


def make_app(fob: Keyfob) -> FastAPI:
    app = FastAPI()
    install(app, fob)

    @app.post("/login")
    async def login(request: Request) -> dict[str, Any]:
        form = await request.json()
        issued = await sign_in(request, form["user"], {"role": form.get("role", "user"), "name": "Ada"})
        return {"id": issued.session.id}

    @app.get("/me")
    async def me(session: Session = Depends(require_session)) -> dict[str, Any]:
        return {"user": session.user_id, "role": session.role}

    @app.get("/admin", dependencies=[Depends(require_role("admin"))])
    async def admin() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/sensitive", dependencies=[Depends(require_fresh(300))])
    async def sensitive() -> dict[str, bool]:
        return {"ok": True}

    return app


@pytest.fixture(params=STRATEGIES)
async def fob(request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock) -> AsyncIterator[Keyfob]:
    f = Keyfob(strategy=request.param, secret=SECRET, store=f"sqlite:///{tmp_path / 'kf.db'}", clock=clock)
    yield f
    await f.close()


@pytest.fixture
async def client(fob: Keyfob) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=make_app(fob))
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as c:
        yield c


async def csrf_headers(client: httpx.AsyncClient) -> dict[str, str]:
    token = (await client.get("/auth/csrf")).json()["csrfToken"]
    return {"x-csrf-token": token, "origin": "http://localhost"}


async def login(client: httpx.AsyncClient, user: str = "u1", role: str = "user") -> None:
    r = await client.post("/login", json={"user": user, "role": role}, headers=await csrf_headers(client))
    assert r.status_code == 200, r.text


async def test_protected_route_without_session_is_401_json(client: httpx.AsyncClient) -> None:
    r = await client.get("/me")
    assert r.status_code == 401
    body = r.json()
    assert set(body) == {"error", "detail"}


@pytest.mark.parametrize(
    "value", ["garbage", "a" * 5000, "%00%01", "e30.e30.e30", "x.y.z.w.v", "\u00e9\u00e9"]
)
async def test_garbled_cookie_is_401_never_500(client: httpx.AsyncClient, fob: Keyfob, value: str) -> None:
    name = fob.profile(False).session.name
    r = await client.get("/me", headers={"cookie": f"{name}={value}".encode()})
    assert r.status_code == 401
    assert r.json()["error"] in {"invalid_token", "session_error"}


async def test_sign_in_then_protected_route_works(client: httpx.AsyncClient) -> None:
    await login(client)
    r = await client.get("/me")
    assert r.status_code == 200
    assert r.json() == {"user": "u1", "role": "user"}


async def test_local_development_cookies_are_not_secure_and_are_httponly(fob: Keyfob) -> None:
    transport = httpx.ASGITransport(app=make_app(fob))
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as c:
        r = await c.post("/login", json={"user": "u1"}, headers=await csrf_headers(c))
    cookies = r.headers.get_list("set-cookie")
    assert cookies
    for c_ in cookies:
        assert "HttpOnly" in c_ and "SameSite=Lax" in c_ and "Secure" not in c_


async def test_production_cookies_are_secure_with_host_prefix(fob: Keyfob) -> None:
    transport = httpx.ASGITransport(app=make_app(fob))
    async with httpx.AsyncClient(transport=transport, base_url="https://app.example") as c:
        tok = (await c.get("/auth/csrf")).json()["csrfToken"]
        r = await c.post("/login", json={"user": "u1"},
                         headers={"x-csrf-token": tok, "origin": "https://app.example"})
        assert r.status_code == 200
        for c_ in r.headers.get_list("set-cookie"):
            assert c_.startswith("__Host-") and "Secure" in c_ and "HttpOnly" in c_
        assert (await c.get("/me")).status_code == 200


async def test_wrong_role_is_403_and_right_role_is_200(client: httpx.AsyncClient) -> None:
    await login(client, role="user")
    assert (await client.get("/admin")).status_code == 403
    await login(client, role="admin")
    assert (await client.get("/admin")).status_code == 200


async def test_require_fresh_refuses_an_old_sign_in(client: httpx.AsyncClient, clock: FakeClock) -> None:
    await login(client)
    assert (await client.get("/sensitive")).status_code == 200
    clock.advance(301)
    r = await client.get("/sensitive")
    assert r.status_code == 403 and r.json()["error"] == "reauthentication_required"


async def test_auth_session_has_the_authjs_shape(client: httpx.AsyncClient) -> None:
    assert (await client.get("/auth/session")).json() is None
    await login(client)
    body = (await client.get("/auth/session")).json()
    assert body["user"]["id"] == "u1" and body["user"]["name"] == "Ada"
    assert body["expires"].endswith("Z")


async def test_session_rolls_through_the_middleware(client: httpx.AsyncClient, clock: FakeClock) -> None:
    await login(client)
    clock.advance(86400 + 1)
    r = await client.get("/me")
    assert r.status_code == 200
    assert r.headers.get_list("set-cookie"), "rolled/refreshed cookies are written on the response"
    assert (await client.get("/me")).status_code == 200


async def test_signout_clears_cookies_and_ends_the_session(client: httpx.AsyncClient) -> None:
    await login(client)
    r = await client.post("/auth/signout", headers=await csrf_headers(client))
    assert r.status_code == 200
    set_cookies = r.headers.get_list("set-cookie")
    assert all("Max-Age=0" in c for c in set_cookies if "csrf-token" not in c)
    assert any("csrf-token" in c and "Max-Age=0" not in c for c in set_cookies), "a new anonymous CSRF token"
    assert (await client.get("/me")).status_code == 401


async def test_unsafe_request_without_csrf_token_is_403(client: httpx.AsyncClient) -> None:
    await login(client)
    r = await client.post("/auth/signout")
    assert r.status_code == 403 and r.json()["error"] == "csrf_failed"
    r = await client.post("/auth/signout", headers={"origin": "https://evil.example",
                                                    **{"x-csrf-token": "whatever"}})
    assert r.status_code == 403


async def test_device_list_and_revoking_own_and_foreign_sessions(
    fob: Keyfob, client: httpx.AsyncClient
) -> None:
    if fob.settings.strategy == "jwt":
        pytest.skip("jwt sessions are stateless: there is no device list")
    other = await fob.create("u2", {})
    await login(client)
    await login(client)  # a second sign-in over the first: the first is gone (fresh id)
    phone = await fob.create("u1", {})
    sessions = (await client.get("/auth/sessions")).json()
    assert len(sessions) == 2 and sum(s["current"] for s in sessions) == 1
    h = await csrf_headers(client)
    assert (await client.delete(f"/auth/sessions/{other.session.id}", headers=h)).status_code == 404
    assert (await client.delete(f"/auth/sessions/{phone.session.id}", headers=h)).status_code == 200
    assert len((await client.get("/auth/sessions")).json()) == 1


async def test_revoke_others_keeps_this_browser_signed_in(fob: Keyfob, client: httpx.AsyncClient) -> None:
    await login(client)
    phone = await fob.create("u1", {})
    r = await client.post("/auth/sessions/revoke-others", headers=await csrf_headers(client))
    assert r.status_code == 200
    assert (await client.get("/me")).status_code == 200
    assert (await fob.authenticate({c.name: c.value for c in phone.cookies})).session is None


async def test_store_outage_is_503_not_500_and_not_a_pass() -> None:
    fob = Keyfob(strategy="database", secret=SECRET, store="postgresql://postgres@127.0.0.1:1/test")
    transport = httpx.ASGITransport(app=make_app(fob))
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as c:
        r = await c.get("/me", headers={"cookie": f"{fob.profile(False).session.name}={'A' * 43}"})
    assert r.status_code == 503
    assert r.json()["error"] == "store_unavailable"
    await fob.close()


async def test_bearer_token_authenticates_api_clients_without_csrf(
    fob: Keyfob, client: httpx.AsyncClient
) -> None:
    issued = await fob.create("api-user", {"role": "user"})
    assert issued.access_token is not None
    r = await client.get("/me", headers={"authorization": f"Bearer {issued.access_token}"})
    assert r.status_code == 200 and r.json()["user"] == "api-user"


async def test_hybrid_refresh_endpoint_serves_non_browser_clients(
    fob: Keyfob, client: httpx.AsyncClient
) -> None:
    if fob.settings.strategy != "hybrid":
        pytest.skip("refresh tokens are hybrid-only")
    issued = await fob.create("mobile", {})
    r = await client.post("/auth/refresh", json={"refresh_token": issued.refresh_token})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["access_token"] and body["refresh_token"] and body["refresh_token"] != issued.refresh_token
    client.cookies.clear()  # a mobile client keeps no cookie jar
    r2 = await client.post("/auth/refresh", json={"refresh_token": "not-a-token"})
    assert r2.status_code == 401


async def test_jwks_endpoint_is_served(client: httpx.AsyncClient) -> None:
    r = await client.get("/.well-known/jwks.json")
    assert r.status_code == 200 and "keys" in r.json()


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_testclient_with_its_default_base_url_keeps_the_session(strategy: str, tmp_path: Path) -> None:
    # A new user's first test: TestClient(app) talks to http://testserver. The cookies must not be
    # Secure there (httpx would never send them back over http), and a POST with them needs the token.
    from fastapi.testclient import TestClient

    fob = Keyfob(strategy=strategy, secret=SECRET, store=f"sqlite:///{tmp_path / 'kf.db'}")
    with TestClient(make_app(fob)) as client:
        assert client.base_url.host == "testserver"
        r = client.post("/login", json={"user": "u1"})
        assert r.status_code == 200 and all("Secure" not in c for c in r.headers.get_list("set-cookie"))
        assert client.get("/me").json()["user"] == "u1"
        refused = client.post("/auth/signout")
        assert refused.status_code == 403 and "GET /auth/csrf" in refused.json()["detail"]
        token = client.get("/auth/csrf").json()["csrfToken"]
        assert client.post("/auth/signout", headers={"x-csrf-token": token}).status_code == 200
        assert client.get("/me").status_code == 401
        assert client.portal is not None
        client.portal.call(fob.close)

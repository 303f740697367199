"""One HTTP contract for every framework and strategy: routes, status codes, CSRF, cookies, cache headers.

The frameworks are registered in ``frameworks.py`` (add one there and every test here runs on it).
The CSRF cases at the bottom are the holes of issue #10; each failed before the request core.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from keyfob import Keyfob

from .frameworks import FRAMEWORKS, Client, Reply

SECRET = "kf-contract-secret-7Hq2pLx9Vw4Rt8Nz3Kc6Jb1Mf5Gd0Sy2Ua7Ee4Ii9Oo3"
STRATEGIES = ["jwt", "database", "hybrid"]
EVIL = "https://evil.example"


@pytest.fixture(params=STRATEGIES)
def fob(request: pytest.FixtureRequest, tmp_path: Path) -> Keyfob:
    return Keyfob(strategy=request.param, secret=SECRET, store=f"sqlite:///{tmp_path / 'kf.db'}")


@pytest.fixture(params=sorted(FRAMEWORKS))
def client(request: pytest.FixtureRequest, fob: Keyfob) -> Iterator[Client]:
    with FRAMEWORKS[request.param](fob) as c:
        yield c


def csrf(client: Client) -> list[tuple[str, str]]:
    r = client.request("GET", "/auth/csrf")
    assert r.status == 200, r.body
    return [("X-CSRF-Token", r.body["csrfToken"]), ("Origin", client.base_url)]


def login(client: Client, user: str = "u1", role: str = "user") -> Reply:
    r = client.request("POST", "/login", json={"user": user, "role": role}, headers=csrf(client))
    assert r.status == 200, r.body
    return r


def session_cookie_names(fob: Keyfob) -> set[str]:
    prof = fob.profile(False)
    return {prof.session.name, prof.refresh.name}


def signed_in(client: Client) -> bool:
    return client.request("GET", "/me").status == 200


# -- routes and status codes -------------------------------------------------------------------------

def test_protected_route_without_session_is_401_json(client: Client) -> None:
    r = client.request("GET", "/me")
    assert r.status == 401 and set(r.body) == {"error", "detail"}


@pytest.mark.parametrize("value", ["garbage", "a" * 4000, "e30.e30.e30", "x.y.z.w.v"])
def test_garbled_cookie_is_401_never_500(client: Client, fob: Keyfob, value: str) -> None:
    client.set_cookie(fob.profile(False).session.name, value)
    r = client.request("GET", "/me")
    assert r.status == 401 and r.body["error"] == "invalid_token"


def test_sign_in_protected_route_and_sign_out(client: Client) -> None:
    login(client)
    r = client.request("GET", "/me")
    assert r.status == 200 and r.body == {"user": "u1"}
    r = client.request("POST", "/auth/signout", headers=csrf(client))
    assert r.status == 200 and r.body == {"ok": True}
    assert not signed_in(client)


def test_cookies_sent_in_several_cookie_headers_are_all_read(client: Client) -> None:
    """HTTP/2 may send each cookie in a header field of its own (RFC 9113 §8.2.3), and some proxies
    pass them on that way: the session cookie need not be in the first ``Cookie`` header. On every
    adapter, including those that get them joined with ``,`` (WSGI servers, Django's ASGI handler)."""
    login(client)
    jar = client.cookies()
    client.clear_cookies()
    split = [("Cookie", "theme=dark"), *(("Cookie", f"{k}={v}") for k, v in jar.items())]
    r = client.request("GET", "/me", headers=split)
    assert r.status == 200 and r.body == {"user": "u1"}
    token = client.request("GET", "/auth/csrf", headers=split).body["csrfToken"]  # its cookie: in split
    assert not client.cookies()  # no cookie set: the session-bound one was read from its own header
    r = client.request("POST", "/action",
                       headers=[*split, ("X-CSRF-Token", token), ("Origin", client.base_url)])
    assert r.status == 200, r.body


def test_wrong_role_is_403_and_right_role_is_200(client: Client) -> None:
    login(client, role="user")
    r = client.request("GET", "/admin")
    assert r.status == 403 and r.body["error"] == "forbidden"
    login(client, role="admin")
    assert client.request("GET", "/admin").status == 200


def test_auth_session_is_null_then_the_authjs_shape(client: Client) -> None:
    assert client.request("GET", "/auth/session").body is None
    login(client)
    body = client.request("GET", "/auth/session").body
    assert body["user"] == {"id": "u1", "name": "Ada", "role": "user"} and body["expires"].endswith("Z")


def test_auth_session_routes_are_no_store(client: Client, fob: Keyfob) -> None:
    for path in ("/auth/session", "/auth/csrf"):
        assert client.request("GET", path).headers.get("cache-control") == "no-store", path
    login(client)
    paths = ["/auth/session", "/auth/csrf"] + ([] if fob.settings.strategy == "jwt" else ["/auth/sessions"])
    for path in paths:
        r = client.request("GET", path)
        assert r.status == 200 and r.headers.get("cache-control") == "no-store", path
        assert r.vary is not None and "cookie" in r.vary.lower(), path


def test_session_responses_are_no_store_and_vary_on_cookie(client: Client) -> None:
    anonymous = client.request("GET", "/me")
    assert "cookie" not in (anonymous.vary or "").lower()  # nothing session-specific: left alone
    login(client)
    r = client.request("GET", "/me")
    assert r.headers.get("cache-control") == "no-store" and "cookie" in (r.vary or "").lower()


def test_cookies_have_the_same_names_and_attributes_everywhere(client: Client, fob: Keyfob) -> None:
    r = login(client)
    names = session_cookie_names(fob)
    seen = {}
    for header in r.set_cookies:
        name = header.split("=", 1)[0]
        attributes = {part.strip().split("=")[0] for part in header.split(";")[1:]}
        seen[name] = attributes
    assert fob.profile(False).session.name in seen
    assert "keyfob.csrf-token" in seen, "sign-in hands out a CSRF token bound to the new session"
    for name, attributes in seen.items():
        assert {"Path", "HttpOnly", "SameSite"} <= attributes, name
        assert "Secure" not in attributes, f"{name}: {client.base_url} is local development"
        if name in names:
            assert {"Max-Age", "Expires"} <= attributes, name
    if fob.settings.strategy == "hybrid":
        assert fob.profile(False).refresh.name in seen


def test_device_list_and_revoking_own_and_foreign_sessions(client: Client, fob: Keyfob) -> None:
    if fob.settings.strategy == "jwt":
        pytest.skip("jwt sessions are stateless: there is no device list")
    other = login_elsewhere(fob, "u2")
    login(client)
    phone = login_elsewhere(fob, "u1")
    sessions = client.request("GET", "/auth/sessions").body
    assert len(sessions) == 2 and sum(s["current"] for s in sessions) == 1
    h = csrf(client)
    assert client.request("DELETE", f"/auth/sessions/{other}", headers=h).status == 404
    r = client.request("DELETE", f"/auth/sessions/{phone}", headers=h)
    assert r.status == 200 and r.body == {"revoked": phone}
    assert len(client.request("GET", "/auth/sessions").body) == 1


def test_a_user_agent_over_512_characters_is_kept_to_512_on_every_adapter(client: Client,
                                                                           fob: Keyfob) -> None:
    if fob.settings.strategy == "jwt":
        pytest.skip("jwt sessions are stateless: there is no device list")
    agent = "Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0 " + "x" * 600
    r = client.request("POST", "/login", json={"user": "u1"}, headers=[*csrf(client), ("User-Agent", agent)])
    assert r.status == 200, r.body
    (listed,) = client.request("GET", "/auth/sessions").body
    assert listed["user_agent"] == agent[:512]


def login_elsewhere(fob: Keyfob, user: str) -> str:
    """A session of ``user`` made on another device (its own client and store connection)."""
    import asyncio

    other = Keyfob(fob.settings)

    async def make() -> str:
        try:
            return (await other.create(user, {})).session.id
        finally:
            await other.close()

    return asyncio.run(make())


def test_revoke_others_keeps_this_browser_signed_in(client: Client, fob: Keyfob) -> None:
    login(client)
    r = client.request("POST", "/auth/sessions/revoke-others", headers=csrf(client))
    assert r.status == 200 and "revoked" in r.body
    assert signed_in(client)


def test_refresh_route_rotates_the_refresh_cookie(client: Client, fob: Keyfob) -> None:
    if fob.settings.strategy != "hybrid":
        pytest.skip("refresh tokens are hybrid-only")
    login(client)
    before = client.cookies()[fob.profile(False).refresh.name]
    r = client.request("POST", "/auth/refresh", headers=csrf(client))
    assert r.status == 200 and r.body["access_token"] is None, "a browser gets its tokens as cookies only"
    assert client.cookies()[fob.profile(False).refresh.name] != before
    assert signed_in(client)


def test_refresh_without_a_token_is_401(client: Client) -> None:
    r = client.request("POST", "/auth/refresh", json={"refresh_token": "not-a-token"})
    assert r.status == 401


def test_jwks_is_public_and_cacheable(client: Client) -> None:
    r = client.request("GET", "/.well-known/jwks.json")
    assert r.status == 200 and "keys" in r.body and "max-age" in r.headers["cache-control"]


# -- CSRF -----------------------------------------------------------------------------------------------

def test_same_origin_post_with_the_token_passes(client: Client) -> None:
    login(client)
    assert client.request("POST", "/action", headers=csrf(client)).status == 200


def test_form_field_token_passes_and_wrong_form_token_is_403(client: Client) -> None:
    login(client)
    token = dict(csrf(client))["X-CSRF-Token"]
    origin = [("Origin", client.base_url)]
    assert client.request("POST", "/action", headers=origin, form={"csrf_token": token}).status == 200
    r = client.request("POST", "/action", headers=origin, form={"csrf_token": "nope"})
    assert r.status == 403 and r.body["error"] == "csrf_failed"


def test_forged_signout_from_a_foreign_origin_is_403(client: Client) -> None:
    login(client)
    r = client.request("POST", "/auth/signout", headers=[("Origin", EVIL)])
    assert r.status == 403 and r.body["error"] == "csrf_failed"
    assert signed_in(client)


def test_post_with_cookies_but_no_token_is_403_with_a_hint(client: Client) -> None:
    login(client)
    r = client.request("POST", "/action")
    assert r.status == 403 and r.body["error"] == "csrf_failed"
    assert "GET /auth/csrf" in r.body["detail"], "the message says what to do"


def test_bearer_header_does_not_switch_csrf_off_while_the_cookies_act(client: Client) -> None:
    login(client)
    r = client.request("POST", "/auth/signout", headers=[("Origin", EVIL), ("Authorization", "bearer x")])
    assert r.status == 403 and r.body["error"] == "csrf_failed"
    assert signed_in(client)


def test_login_csrf_with_a_bearer_header_is_refused(client: Client) -> None:
    r = client.request("POST", "/login", json={"user": "mallory"},
                       headers=[("Origin", EVIL), ("Authorization", "Bearer x")])
    assert r.status == 403
    assert not signed_in(client)


def test_a_valid_bearer_without_cookies_needs_no_csrf(client: Client, fob: Keyfob) -> None:
    import asyncio

    api = Keyfob(fob.settings)

    async def issue() -> str:
        try:
            token = (await api.create("api-user", {})).access_token
            assert token is not None
            return token
        finally:
            await api.close()

    token = asyncio.run(issue())
    r = client.request("POST", "/action", headers=[("Authorization", f"Bearer {token}"), ("Origin", EVIL)])
    assert r.status == 200, r.body


def test_tossed_csrf_cookie_from_another_browser_is_refused(client: Client, fob: Keyfob) -> None:
    # The attacker's own, genuine anonymous token and cookie, planted in the signed-in victim's jar.
    with FRAMEWORKS["starlette"](Keyfob(fob.settings)) as attacker:
        token = dict(csrf(attacker))["X-CSRF-Token"]
        planted = attacker.cookies()["keyfob.csrf-token"]
    login(client)
    jar = {**client.cookies(), "keyfob.csrf-token": planted}  # the planted cookie replaces the victim's
    client.clear_cookies()
    for name, value in jar.items():
        client.set_cookie(name, value)
    r = client.request("POST", "/action", headers=[("X-CSRF-Token", token)])  # no Origin (privacy tools)
    assert r.status == 403 and r.body["error"] == "csrf_failed"


def test_csrf_token_is_replaced_at_sign_in(client: Client) -> None:
    before = csrf(client)
    login(client)
    r = client.request("POST", "/action", headers=before)
    assert r.status == 403, "the anonymous token must not survive sign-in"
    assert client.request("POST", "/action", headers=csrf(client)).status == 200


def test_sec_fetch_site_cross_site_is_refused_even_with_a_valid_token(client: Client) -> None:
    login(client)
    r = client.request("POST", "/action", headers=[*csrf(client), ("Sec-Fetch-Site", "cross-site")])
    assert r.status == 403 and "Sec-Fetch-Site" in r.body["detail"]
    same = client.request("POST", "/action", headers=[*csrf(client), ("Sec-Fetch-Site", "same-origin")])
    assert same.status == 200


def test_two_origin_headers_are_refused(client: Client) -> None:
    login(client)
    token = dict(csrf(client))["X-CSRF-Token"]
    r = client.request("POST", "/action", headers=[("Origin", EVIL), ("Origin", client.base_url),
                                                   ("X-CSRF-Token", token)])
    assert r.status == 403 and "more than one Origin" in r.body["detail"]


def test_foreign_referer_without_an_origin_header_is_refused(client: Client) -> None:
    login(client)
    token = dict(csrf(client))["X-CSRF-Token"]
    r = client.request("POST", "/action", headers=[("X-CSRF-Token", token), ("Referer", f"{EVIL}/page")])
    assert r.status == 403 and r.body["error"] == "csrf_failed"
    same = client.request("POST", "/action", headers=[("X-CSRF-Token", token),
                                                      ("Referer", f"{client.base_url}/page")])
    assert same.status == 200

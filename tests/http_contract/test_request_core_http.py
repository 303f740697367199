"""The request core's response rules over HTTP, on every framework x strategy: the cookies a request
rolls next to the ones the view sets, the CSRF token a page holds across refreshes, updates and
confirmed routes, and the cache headers of a response that sets cookies.

Each test kills a mutant of ``web/_request.py`` that ``tools/mutate.py`` showed surviving the other
suites (issue 9); ``tools/MUTATION.md`` lists the survivors judged equivalent instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from keyfob import FakeClock, Keyfob, Session

from .frameworks import FRAMEWORKS, Client, Reply
from .test_http_contract import SECRET, csrf

STRATEGIES = ["jwt", "database", "hybrid"]
#: The frameworks whose adapters have the session-policy routes (see test_session_policy_http.py).
POLICY_FRAMEWORKS = ["fastapi", "flask", "starlette"]
#: update_age and access_ttl: past it, the next request rolls (jwt, database) or refreshes (hybrid)
ROLL = 60.0


def allow_all(session: Session, requested: Any) -> dict[str, Any] | None:
    return dict(requested)


@pytest.fixture(params=STRATEGIES)
def fob(request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock) -> Keyfob:
    return Keyfob(strategy=request.param, secret=SECRET, store=f"sqlite:///{tmp_path / 'kf.db'}", clock=clock,
                  feed=None, update_age=ROLL, access_ttl=ROLL, on_update=allow_all)


@pytest.fixture(params=sorted(FRAMEWORKS))
def client(request: pytest.FixtureRequest, fob: Keyfob) -> Iterator[Client]:
    with FRAMEWORKS[request.param](fob) as c:
        yield c


def login(client: Client) -> Reply:
    r = client.request("POST", "/login", json={"user": "u1"}, headers=csrf(client))
    assert r.status == 200, r.body
    return r


def logical(set_cookie: str) -> str:
    """A ``Set-Cookie`` header's cookie name, chunk suffix (``name.0``) removed."""
    name = set_cookie.split("=", 1)[0]
    head, dot, tail = name.rpartition(".")
    return head if dot and tail.isdigit() else name


def keep_only_session_cookies(client: Client, fob: Keyfob) -> None:
    """Drop the CSRF cookie from the jar (a new tab after the browser lost it, say)."""
    jar = client.cookies()
    csrf_name = f"{fob.settings.cookie_name.removesuffix('.session-token')}.csrf-token"
    client.clear_cookies()
    for name, value in jar.items():
        if name != csrf_name:
            client.set_cookie(name, value)


def test_a_request_that_rolls_the_session_and_sets_a_csrf_cookie_sends_both(
        client: Client, fob: Keyfob, clock: FakeClock) -> None:
    login(client)
    keep_only_session_cookies(client, fob)
    clock.advance(ROLL + 1)
    r = client.request("GET", "/auth/csrf")  # rolls (or refreshes) the session, issues a CSRF cookie
    assert r.status == 200
    names = [logical(c) for c in r.set_cookies]
    session = fob.profile(False).session.name
    assert session in names, "the rolled session cookie was dropped for the CSRF one"
    assert any(n.endswith(".csrf-token") for n in names)
    assert len(names) == len(set(names)), f"a cookie set twice in one response: {names}"
    assert client.request("GET", "/me").status == 200


def test_a_sign_out_that_follows_a_roll_clears_the_cookies_once(
        client: Client, fob: Keyfob, clock: FakeClock) -> None:
    login(client)
    clock.advance(ROLL + 1)
    r = client.request("POST", "/auth/signout", headers=csrf(client))
    assert r.status == 200
    names = [logical(c) for c in r.set_cookies]
    assert len(names) == len(set(names)), f"a cookie set twice in one response: {names}"
    assert client.request("GET", "/me").status == 401


@pytest.mark.parametrize("framework", POLICY_FRAMEWORKS)  # Django's adapter has no POST /auth/session yet
def test_a_client_update_keeps_the_pages_csrf_token_valid(framework: str, fob: Keyfob) -> None:
    """The session id stays, so the token a page holds must stay valid (no re-bound CSRF cookie)."""
    with FRAMEWORKS[framework](fob) as client:
        login(client)
        page = csrf(client)
        r = client.request("POST", "/auth/session", json={"data": {"theme": "dark"}}, headers=page)
        assert r.status == 200, r.body
        assert client.request("POST", "/action", headers=page).status == 200


def test_a_refresh_keeps_the_pages_csrf_token_valid(client: Client, fob: Keyfob) -> None:
    if fob.settings.strategy != "hybrid":
        pytest.skip("refresh tokens are hybrid-only")
    login(client)
    page = csrf(client)
    assert client.request("POST", "/auth/refresh", headers=page).status == 200
    assert client.request("POST", "/action", headers=page).status == 200


def test_a_response_that_sets_session_cookies_is_no_store_and_varies_on_cookie(client: Client) -> None:
    r = login(client)  # the app's own route: nothing but keyfob adds its cache headers
    assert r.set_cookies
    assert r.headers.get("cache-control") == "no-store"
    assert r.vary is not None and "cookie" in r.vary.lower()


def test_cookie_secure_true_gives_secure_cookies_even_on_plain_http(tmp_path: Path) -> None:
    """``cookie_secure=True`` is obeyed on a development host too (the auto rule is only the default)."""
    for name in sorted(FRAMEWORKS):
        fob = Keyfob(strategy="database", secret=SECRET, store=f"sqlite:///{tmp_path / 'kf.db'}", feed=None,
                     cookie_secure=True)
        with FRAMEWORKS[name](fob) as client:
            r = client.request("GET", "/auth/csrf")
            assert r.status == 200, (name, r.body)
            secure_csrf = [c for c in r.set_cookies if c.startswith("__Host-") and "; Secure" in c]
            assert secure_csrf, (name, r.set_cookies)
            page = [("X-CSRF-Token", r.body["csrfToken"]), ("Origin", client.base_url)]
            r = client.request("POST", "/login", json={"user": "u1"}, headers=page)
            assert r.status == 200, (name, r.body)
            session = [c for c in r.set_cookies if logical(c) == fob.profile(True).session.name]
            assert session and "secure" in session[0].lower(), (name, r.set_cookies)


@pytest.mark.parametrize("framework", POLICY_FRAMEWORKS)
def test_a_confirmed_route_keeps_the_pages_csrf_token_valid(framework: str, fob: Keyfob) -> None:
    """``max_staleness=0`` authenticates again; the session is the same, so the page's token stays."""
    with FRAMEWORKS[framework](fob) as client:
        login(client)
        page = csrf(client)
        assert client.request("GET", "/confirmed").status == 200
        assert client.request("POST", "/action", headers=page).status == 200


def test_a_link_from_another_site_to_a_page_is_not_csrf_checked(client: Client) -> None:
    """A GET changes nothing: following a link from another site (Sec-Fetch-Site: cross-site) works."""
    login(client)
    r = client.request("GET", "/me", headers=[("Sec-Fetch-Site", "cross-site")])
    assert r.status == 200, r.body


def test_with_csrf_off_an_unsafe_request_needs_no_token(tmp_path: Path) -> None:
    for name in sorted(FRAMEWORKS):
        fob = Keyfob(strategy="hybrid", secret=SECRET, store=f"sqlite:///{tmp_path / 'kf.db'}", feed=None,
                     csrf=False)
        with FRAMEWORKS[name](fob) as client:
            assert client.request("POST", "/login", json={"user": "u1"}).status == 200, name
            r = client.request("POST", "/action")
            assert r.status == 200, (name, r.body)


def test_a_form_post_with_the_token_in_the_header_passes_without_the_field(client: Client) -> None:
    """The ``X-CSRF-Token`` header is the token whatever the body is: a form without ``csrf_token`` passes."""
    login(client)
    r = client.request("POST", "/action", headers=csrf(client), form={"comment": "hello"})
    assert r.status == 200, r.body


def test_the_session_cookie_is_the_credential_even_next_to_a_bearer_header(client: Client) -> None:
    """With a keyfob cookie present the cookie authenticates; a stray ``Authorization: Bearer`` is ignored."""
    login(client)
    r = client.request("GET", "/me", headers=[("Authorization", "Bearer not-a-token")])
    assert r.status == 200 and r.body == {"user": "u1"}


@pytest.mark.parametrize("framework", POLICY_FRAMEWORKS)
def test_a_confirmed_route_keeps_the_cookies_the_first_check_rolled(framework: str, fob: Keyfob,
                                                                      clock: FakeClock) -> None:
    """The middleware's check rolls the session, then the route authenticates again (max_staleness=0):
    the roll's cookies still go out."""
    with FRAMEWORKS[framework](fob) as client:
        login(client)
        clock.advance(ROLL + 1)
        r = client.request("GET", "/confirmed")
        assert r.status == 200, r.body
        names = [logical(c) for c in r.set_cookies]
        assert fob.profile(False).session.name in names
        assert len(names) == len(set(names)), f"a cookie set twice in one response: {names}"
        assert client.request("GET", "/me").status == 200


def test_a_plain_request_past_update_age_sends_the_rolled_cookies(client: Client, fob: Keyfob,
                                                                   clock: FakeClock) -> None:
    """Nothing but the session to write: the roll (jwt, database) or the refresh (hybrid) still goes out."""
    login(client)
    clock.advance(ROLL + 1)
    r = client.request("GET", "/me")
    assert r.status == 200
    assert fob.profile(False).session.name in [logical(c) for c in r.set_cookies]
    clock.advance(ROLL + 1)
    assert client.request("GET", "/me").status == 200, "the browser kept the cookies it was sent"


def test_a_refused_session_cookie_is_cleared_by_the_401(client: Client, fob: Keyfob) -> None:
    client.set_cookie(fob.profile(False).session.name, "garbage")
    r = client.request("GET", "/me")
    assert r.status == 401
    cleared = [c for c in r.set_cookies if logical(c) == fob.profile(False).session.name]
    assert cleared and "max-age=0" in cleared[0].lower(), r.set_cookies

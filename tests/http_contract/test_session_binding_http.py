"""Device binding (``bind="soft"|"strict"``) through the integrations, at each store check.

The middleware's own check passes the request's device whenever ``bind`` is set, so the binding
holds on plain routes, not only on ``max_staleness`` ones: under database at every request (each is
a store check), under hybrid at each refresh (the middleware's transparent one and ``POST
/auth/refresh``) and at every request while the revocation view is down (the store answers), under
jwt at every request (the token carries its binding). Starlette, FastAPI, Flask and Django (WSGI
and ASGI).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass

import pytest

from keyfob import Event, FakeClock, Keyfob

from .frameworks import FRAMEWORKS, Client
from .test_http_contract import csrf

SECRET = "kf-binding-http-secret-Qw8eRt5yUi2oPa6sDf9gHj3kLz7xCv1bNm4"
LAPTOP = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/141.0 Safari/537.36"
PHONE = "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) " \
        "Version/18.1 Mobile/15E148 Safari/604.1"
LAPTOP_UPDATED = LAPTOP.replace("Chrome/141.0", "Chrome/142.0")  # a browser update: same family


@pytest.fixture(params=["fastapi", "flask", "starlette", "django-wsgi", "django-asgi"])
def framework(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def make_fob(strategy: str, bind: str, store: str, clock: FakeClock, events: list[Event]) -> Keyfob:
    return Keyfob(strategy=strategy, secret=SECRET, store=store, clock=clock, bind=bind,
                  on_event=events.append)


@pytest.fixture
def memory_store() -> str:
    return f"memory://binding-{uuid.uuid4().hex[:8]}"  # with its feed: the view is live


def login(client: Client) -> None:
    r = client.request("POST", "/login", json={"user": "u1", "amr": ["pwd"]},
                       headers=[*csrf(client), ("user-agent", LAPTOP)])
    assert r.status == 200, r.body


@dataclass
class Bound:
    """A client of this test's framework signed in from LAPTOP; its engine (``bind`` set) and events."""

    client: Client
    fob: Keyfob
    events: list[Event]


SignIn = Callable[[str, str], Bound]


@pytest.fixture
def signed_in(framework: str, memory_store: str, clock: FakeClock) -> Iterator[SignIn]:
    """``signed_in(strategy, bind)``: an engine with that binding, and a client signed in on it."""
    with ExitStack() as stack:
        def sign_in(strategy: str, bind: str) -> Bound:
            events: list[Event] = []
            fob = make_fob(strategy, bind, memory_store, clock, events)
            client = stack.enter_context(FRAMEWORKS[framework](fob))
            login(client)
            return Bound(client, fob, events)

        yield sign_in


def me(client: Client, ua: str) -> int:
    return client.request("GET", "/me", headers=[("user-agent", ua)]).status


def mismatches(events: list[Event]) -> list[Event]:
    return [e for e in events if e.name == "binding_mismatch"]


@pytest.mark.parametrize("strategy", ["jwt", "database"])
def test_strict_binding_revokes_a_session_used_from_another_device_at_the_plain_routes_check(
    signed_in: SignIn, strategy: str
) -> None:
    b = signed_in(strategy, "strict")
    assert me(b.client, LAPTOP) == 200 and me(b.client, LAPTOP_UPDATED) == 200  # same family: no mismatch
    assert mismatches(b.events) == []
    assert me(b.client, PHONE) == 401  # GET /me has no policy options: the default check binds
    assert [e.detail["mode"] for e in mismatches(b.events)] == ["strict"]
    assert any(e.name == "revoked" and e.detail.get("reason") == "binding" for e in b.events)
    assert me(b.client, LAPTOP) == 401  # revoked, not merely refused once


def test_strict_binding_under_hybrid_holds_at_the_next_refresh(signed_in: SignIn, clock: FakeClock) -> None:
    b = signed_in("hybrid", "strict")
    # a live access token is checked against the view only: no store check, so no binding check yet
    assert me(b.client, PHONE) == 200 and mismatches(b.events) == []
    clock.advance(b.fob.settings.access_ttl + 1)  # the access token expires: the middleware refreshes
    assert me(b.client, PHONE) == 401
    assert [e.detail["mode"] for e in mismatches(b.events)] == ["strict"]
    assert me(b.client, LAPTOP) == 401  # the whole session is gone


def test_strict_binding_under_hybrid_holds_at_post_auth_refresh(signed_in: SignIn) -> None:
    b = signed_in("hybrid", "strict")
    r = b.client.request("POST", "/auth/refresh", headers=[*csrf(b.client), ("user-agent", LAPTOP)])
    assert r.status == 200, r.body
    r = b.client.request("POST", "/auth/refresh", headers=[*csrf(b.client), ("user-agent", PHONE)])
    assert r.status == 401 and r.body["error"] == "session_revoked", r.body
    assert [e.detail["mode"] for e in mismatches(b.events)] == ["strict"]


def test_strict_binding_under_hybrid_holds_at_every_request_while_the_view_is_down(signed_in: SignIn) -> None:
    b = signed_in("hybrid", "strict")
    b.fob.view.live = False  # as when the feed's connection drops: the store answers every request
    assert me(b.client, LAPTOP) == 200
    assert me(b.client, PHONE) == 401 and len(mismatches(b.events)) == 1


@pytest.mark.parametrize("strategy", ["jwt", "database", "hybrid"])
def test_soft_binding_keeps_the_session_but_a_fresh_route_asks_to_sign_in_again(
    signed_in: SignIn, strategy: str, clock: FakeClock
) -> None:
    b = signed_in(strategy, "soft")
    fresh = b.client.request("GET", "/fresh", headers=[("user-agent", LAPTOP)])
    assert fresh.status == 200, fresh.body
    if strategy == "hybrid":  # the mismatch is seen at the next store check: the refresh
        assert me(b.client, PHONE) == 200 and mismatches(b.events) == []
        clock.advance(b.fob.settings.access_ttl + 1)
    assert me(b.client, PHONE) == 200  # soft: still signed in
    assert [e.detail["mode"] for e in mismatches(b.events)] == ["soft"]
    moved = b.client.request("GET", "/fresh", headers=[("user-agent", PHONE)])
    assert moved.status == 403 and moved.body["reason"] == "fresh", moved.body
    again = b.client.request("GET", "/fresh", headers=[("user-agent", PHONE)])
    assert again.status == 403 and len(mismatches(b.events)) == 1  # stale until elevate; one event


def test_an_adapter_that_reads_no_device_compares_no_binding(memory_store: str, clock: FakeClock) -> None:
    # Django's adapter does not fill the view's device yet: with bind="strict", its requests must not
    # count as "another device" (that would revoke every session at its first request).
    from keyfob import RequestMeta
    from keyfob.web import RequestCore, RequestView

    events: list[Event] = []
    fob = make_fob("database", "strict", memory_store, clock, events)

    async def run() -> tuple[bool, bool]:
        async with fob:
            issued = await fob.create("u1", {}, RequestMeta(ip="203.0.113.9", user_agent=LAPTOP))
            jar = {c.name: c.value for c in issued.cookies}
            core = RequestCore(fob)
            blind = core.begin(RequestView(method="GET", scheme="https", host="app.example", cookies=jar))
            kept = (await core.authenticate(blind)).session is not None
            moved = core.begin(RequestView(method="GET", scheme="https", host="app.example", cookies=jar,
                                           client_ip="203.0.113.9", user_agent=PHONE))
            refused = (await core.authenticate(moved)).session is None
            return kept, refused

    assert asyncio.run(run()) == (True, True)
    assert len(mismatches(events)) == 1

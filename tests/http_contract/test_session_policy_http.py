"""Session policy over HTTP, for every framework and strategy: a route's staleness, step-up 403s,
remember-me cookies and the client's own session update (docs/SESSION_POLICY.md)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from keyfob import FakeClock, Keyfob, Session

from .frameworks import FRAMEWORKS, Client
from .test_http_contract import csrf

SECRET = "kf-policy-http-secret-7Hq2pLx9Vw4Rt8Nz3Kc6Jb1Mf5Gd0Sy2Ua7Ee4Ii9"
STRATEGIES = ["jwt", "database", "hybrid"]


def allow_name(session: Session, requested: Any) -> dict[str, Any] | None:
    return {"name": str(requested["name"])} if set(requested) == {"name"} else None


@pytest.fixture(params=STRATEGIES)
def strategy(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'kf.db'}"


@pytest.fixture
def fob(strategy: str, db_url: str, clock: FakeClock) -> Keyfob:
    # no feed: another node's revocations reach this one only through the store
    return Keyfob(strategy=strategy, secret=SECRET, store=db_url, clock=clock, feed=None,
                  on_update=allow_name)


@pytest.fixture(params=sorted(FRAMEWORKS))
def client(request: pytest.FixtureRequest, fob: Keyfob) -> Iterator[Client]:
    with FRAMEWORKS[request.param](fob) as c:
        yield c


def login(client: Client, **body: Any) -> str:
    r = client.request("POST", "/login", json={"user": "u1", **body}, headers=csrf(client))
    assert r.status == 200, r.body
    return str(r.body["id"])


def test_confirmed_route_sees_a_revoke_the_view_has_not(client: Client, strategy: str, db_url: str,
                                                        clock: FakeClock) -> None:
    sid = login(client)
    assert client.request("GET", "/confirmed").status == 200

    async def revoke_on_another_node() -> None:
        other = Keyfob(strategy=strategy, secret=SECRET, store=db_url, clock=clock, feed=None)
        try:
            await other.revoke(sid)
        finally:
            await other.close()

    asyncio.run(revoke_on_another_node())
    default = client.request("GET", "/me").status
    assert default == (401 if strategy == "database" else 200)  # the view's staleness, by default
    assert client.request("GET", "/confirmed").status == 401  # max_staleness=0: the store says no


def test_fresh_and_level_routes_answer_a_step_up_403_that_says_what_to_do(client: Client,
                                                                          clock: FakeClock) -> None:
    login(client, amr=["pwd"])
    assert client.request("GET", "/fresh").status == 200
    strong = client.request("GET", "/strong")
    assert strong.status == 403 and strong.body["error"] == "step_up_required"
    assert (strong.body["reason"], strong.body["level"], strong.body["current_level"]) == ("level", 2, 1)
    clock.advance(601)
    stale = client.request("GET", "/fresh")
    assert stale.status == 403 and stale.body["reason"] == "fresh" and stale.body["max_age"] == 600
    assert "elevate" in stale.body["hint"]
    assert client.request("GET", "/me").status == 200  # still signed in: only the step-up routes ask


def test_not_remembered_sign_in_sets_browser_session_cookies(client: Client, fob: Keyfob) -> None:
    r = client.request("POST", "/login", json={"user": "u1", "remember": False}, headers=csrf(client))
    assert r.status == 200
    name = fob.profile(False).session.name
    mine = [c for c in r.set_cookies if c.startswith(name + "=")]
    assert mine and all("max-age" not in c.lower() and "expires" not in c.lower() for c in mine)
    remembered = client.request("POST", "/login", json={"user": "u2"}, headers=csrf(client))
    assert any(c.startswith(name + "=") and "max-age" in c.lower() for c in remembered.set_cookies)


def test_client_update_goes_through_the_server_callback(client: Client) -> None:
    login(client)
    r = client.request("POST", "/auth/session", json={"data": {"name": "Grace"}}, headers=csrf(client))
    assert r.status == 200, r.body
    assert r.body["user"]["name"] == "Grace"
    assert client.request("GET", "/auth/session").body["user"]["name"] == "Grace"
    refused = client.request("POST", "/auth/session", json={"data": {"role": "admin"}}, headers=csrf(client))
    assert refused.status == 403 and refused.body["error"] == "update_refused"
    assert client.request("GET", "/auth/session").body["user"]["role"] == "user"
    bad = client.request("POST", "/auth/session", json=["x"], headers=csrf(client))
    assert bad.status == 400

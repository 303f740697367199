"""The ``/auth`` routes' answers to what a client may send them, on every framework x strategy: a refresh
token in a JSON body, bodies that are not what the route takes, a session id that is not the caller's.

Each test kills a mutant of ``web/_routes.py`` that ``tools/mutate.py`` showed surviving the other
suites (issue 9); ``tools/MUTATION.md`` lists the survivors judged equivalent instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from keyfob import Keyfob, Session

from .frameworks import FRAMEWORKS, Client
from .test_http_contract import SECRET, csrf, login, signed_in

STRATEGIES = ["jwt", "database", "hybrid"]
#: The frameworks whose adapters have ``POST /auth/session`` (Django's does not yet).
UPDATE_FRAMEWORKS = ["fastapi", "flask", "starlette"]


def allow_all(session: Session, requested: Any) -> dict[str, Any] | None:
    return dict(requested)


@pytest.fixture(params=STRATEGIES)
def fob(request: pytest.FixtureRequest, tmp_path: Path) -> Keyfob:
    return Keyfob(strategy=request.param, secret=SECRET, store=f"sqlite:///{tmp_path / 'kf.db'}", feed=None,
                  on_update=allow_all)


@pytest.fixture(params=sorted(FRAMEWORKS))
def client(request: pytest.FixtureRequest, fob: Keyfob) -> Iterator[Client]:
    with FRAMEWORKS[request.param](fob) as c:
        yield c


def hybrid_only(fob: Keyfob) -> None:
    if fob.settings.strategy != "hybrid":
        pytest.skip("refresh tokens are hybrid-only")


def test_a_refresh_token_in_a_json_body_gets_both_tokens_in_the_body(client: Client, fob: Keyfob) -> None:
    """A mobile or CLI client sends its refresh token in the body, without cookies: tokens come back there."""
    hybrid_only(fob)
    login(client)
    refresh = client.cookies()[fob.profile(False).refresh.name]
    client.clear_cookies()
    r = client.request("POST", "/auth/refresh", json={"refresh_token": refresh})
    assert r.status == 200, r.body
    assert isinstance(r.body["access_token"], str) and isinstance(r.body["refresh_token"], str)
    assert r.body["refresh_token"] != refresh and r.body["token_type"] == "Bearer"
    bearer = client.request("GET", "/me", headers=[("Authorization", f"Bearer {r.body['access_token']}")])
    assert bearer.status == 200 and bearer.body == {"user": "u1"}


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b'{"refresh_token": 5}', b""],
                         ids=["not-json", "a-list", "token-not-a-string", "empty"])
def test_a_refresh_body_without_a_usable_token_is_a_401_never_a_500(client: Client, body: bytes) -> None:
    r = client.request("POST", "/auth/refresh", raw=body, headers=[("Content-Type", "application/json")])
    assert r.status == 401 and r.body["error"] == "invalid_token", r.body
    assert isinstance(r.body["detail"], str) and "refresh" in r.body["detail"], r.body  # says what to send
    if body == b"{not json":
        assert "not JSON" in r.body["detail"], r.body


def test_deleting_a_session_id_that_does_not_exist_is_404(client: Client) -> None:
    login(client)
    r = client.request("DELETE", "/auth/sessions/no-such-session", headers=csrf(client))
    assert r.status == 404 and r.body["error"] == "not_found"
    assert signed_in(client)


@pytest.mark.parametrize("framework", UPDATE_FRAMEWORKS)
@pytest.mark.parametrize(("content_type", "body"), [
    ("application/json", b"[1, 2]"), ("application/json", b'{"data": 5}'), ("application/json", b"{oops"),
    ("text/plain", b'{"data": {"theme": "dark"}}'),
], ids=["a-list", "data-not-an-object", "not-json", "not-json-content-type"])
def test_a_client_update_that_is_not_a_json_object_is_a_400(framework: str, fob: Keyfob, content_type: str,
                                                           body: bytes) -> None:
    with FRAMEWORKS[framework](fob) as client:
        login(client)
        r = client.request("POST", "/auth/session", raw=body,
                           headers=[*csrf(client), ("Content-Type", content_type)])
        assert r.status == 400 and r.body["error"] == "bad_request", r.body
        assert "theme" not in (client.request("GET", "/auth/session").body or {}).get("user", {})

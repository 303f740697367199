"""The request core driven directly (no framework): what its public helpers return, and its bounds.

Each test kills a mutant of ``web/_request.py`` that ``tools/mutate.py`` showed surviving the HTTP
suites, whose adapters do not read these values (issue 9).
"""

from __future__ import annotations

import pytest

from keyfob import Keyfob
from keyfob.web import RequestCore, RequestView

pytestmark = pytest.mark.anyio

SECRET = "kf-core-secret-9Gm3Rt7Yq1Lp5Xw8Zc2Vb6Nh4Jd0Ks3Fa7Ue1Ri5To9"


@pytest.fixture
async def fob() -> Keyfob:
    return Keyfob(strategy="database", secret=SECRET, store="memory://", feed=None)


async def test_confirm_returns_the_session_it_confirmed(fob: Keyfob) -> None:
    issued = await fob.create("u1", {}, secure=True)
    core = RequestCore(fob)
    req = core.begin(RequestView(method="GET", scheme="https", host="app.example",
                                 cookies={c.name: c.value for c in issued.cookies}))
    req.admit(await core.authenticate(req))
    confirmed = await req.confirm(max_staleness=0)
    assert confirmed is not None and confirmed.id == issued.session.id == req.session.id  # type: ignore[union-attr]
    await fob.revoke(issued.session.id)
    assert await req.confirm(max_staleness=0) is None and req.session is None
    # signed out by the second check: the CSRF token is re-bound to "no session", its cookie goes out
    assert req.csrf_binding == "" and [c for c in req.set_cookies() if c.name == req.csrf_cookie.name]
    await fob.close()


async def test_the_cookie_alias_is_the_csrf_cookie(fob: Keyfob) -> None:
    core = RequestCore(fob)
    for scheme, host in (("https", "app.example"), ("http", "localhost")):
        req = core.begin(RequestView(method="GET", scheme=scheme, host=host))
        assert req.cookie is req.csrf_cookie and req.cookie.name.endswith("csrf-token")
    await fob.close()


async def test_the_host_cache_stays_bounded_whatever_hosts_clients_send(fob: Keyfob) -> None:
    """``Host`` is client-controlled: the cache of "is this local development?" answers stops at 256."""
    core = RequestCore(fob)
    for i in range(1000):
        assert core.is_secure("https", f"h{i}.example") is True
    assert core.is_secure("http", "localhost") is False
    assert len(core._local_cache) == 256
    await fob.close()


async def test_csrf_exempt_paths_skip_the_check_and_no_other_path_does(fob: Keyfob) -> None:
    from keyfob.errors import CSRFError

    issued = await fob.create("u1", {}, secure=True)
    cookies = {c.name: c.value for c in issued.cookies}
    core = RequestCore(fob, csrf_exempt=("/webhooks/",))

    async def post(path: str) -> bool:
        req = core.begin(RequestView(method="POST", scheme="https", host="app.example", path=path,
                                     cookies=cookies, origin="https://app.example"))
        return req.admit(await core.authenticate(req))

    assert not await post("/webhooks/stripe")  # exempt: no token asked for, nothing raised
    with pytest.raises(CSRFError):
        await post("/action")  # the session cookie rides along and no token was sent
    await fob.close()


def test_a_view_counts_the_origin_it_was_given() -> None:
    def view(**kw: object) -> RequestView:
        return RequestView(method="POST", scheme="https", host="a.example", **kw)  # type: ignore[arg-type]

    assert view(origin="https://a.example").origin_count == 1
    assert view().origin_count == 0
    assert view(origin="https://a.example", origin_count=2).origin_count == 2


async def test_issue_after_the_token_was_issued_hands_back_the_same_token_and_no_new_cookie(
        fob: Keyfob) -> None:
    core = RequestCore(fob)
    req = core.begin(RequestView(method="GET", scheme="https", host="app.example"))
    req.admit(await core.authenticate(req))
    token = req.csrf_token()
    assert req.issue(None) == (token, [])
    await fob.close()


async def test_an_anonymous_request_that_sets_nothing_finishes_with_no_headers(fob: Keyfob) -> None:
    core = RequestCore(fob)
    req = core.begin(RequestView(method="GET", scheme="https", host="app.example"))
    req.admit(await core.authenticate(req))
    assert list(req.finish()) == []
    await fob.close()


async def test_a_session_replacing_none_rebinds_the_csrf_token_to_it(fob: Keyfob) -> None:
    """``replaced()`` on a request that had no session (a refresh with only its refresh cookie, say)."""
    core = RequestCore(fob)
    req = core.begin(RequestView(method="POST", scheme="https", host="app.example"))
    req.admit(await core.authenticate(req))
    anonymous = req.csrf_token()
    issued = await fob.create("u1", {}, secure=True)
    req.replaced(issued)
    assert req.session is not None and req.csrf_binding == issued.session.id
    assert req.csrf_token() != anonymous
    rebound = [c for c in req.set_cookies() if c.name == req.csrf_cookie.name]
    assert rebound, "the re-bound CSRF cookie goes out"
    await fob.close()


@pytest.mark.parametrize(("cache_control", "vary", "expected"), [
    (False, None, [("cache-control", "no-store"), ("vary", "Cookie")]),
    (True, None, [("vary", "Cookie")]),  # the view chose its own Cache-Control: kept, not doubled
    (False, "Accept-Encoding, Cookie", [("cache-control", "no-store")]),  # already varies on Cookie
    (False, "*", [("cache-control", "no-store")]),
    (False, "Accept", [("cache-control", "no-store"), ("vary", "Cookie")]),
    (True, "cookie", []),
])
async def test_a_signed_in_response_gets_only_the_cache_headers_it_lacks(
        fob: Keyfob, cache_control: bool, vary: str | None, expected: list[tuple[str, str]]) -> None:
    issued = await fob.create("u1", {}, secure=True)
    core = RequestCore(fob)
    req = core.begin(RequestView(method="GET", scheme="https", host="app.example",
                                 cookies={c.name: c.value for c in issued.cookies}))
    req.admit(await core.authenticate(req))
    assert req.session is not None
    assert list(req.finish(cache_control=cache_control, vary=vary)) == expected
    await fob.close()

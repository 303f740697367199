"""The decisions' exact edges, on every strategy x store: deadlines to the second, reasons, reuse,
the revocation fallback, what rotate keeps, what revoke returns.

Written to pin behaviours a mutation run showed the older suites did not notice (issue 9).
"""

from __future__ import annotations

import asyncio

import pytest

from keyfob import (
    FakeClock,
    InvalidToken,
    Keyfob,
    SessionExpired,
    SessionRevoked,
    TokenReuseDetected,
)

from .stores_for_strategies import (  # noqa: F401  (make_store_url, strategy, make_fob: fixtures)
    SECRET,
    STORE_PARAMS,
    STRATEGIES,
    Jar,
    MakeFob,
    StoreFactory,
    keyfob_factory,
    make_fob,
    make_store_url,
    strategy,
)
from .test_strategy_contract import sign_in

pytestmark = pytest.mark.anyio

HOUR = 3600.0
DAY = 86400.0


def stateful(fob: Keyfob) -> bool:
    return fob.settings.strategy != "jwt"


def access_only(fob: Keyfob, jar: Jar) -> Jar:
    name = fob.profile(True).session.name
    return Jar({name: jar[name]})


async def expiry(fob: Keyfob, jar: Jar) -> SessionExpired | None:
    """The SessionExpired that refuses this jar (for hybrid: at its refresh), or None if it is alive."""
    result = await fob.authenticate(jar)
    if result.session is not None:
        jar.apply(result.cookies)
        return None
    assert isinstance(result.error, SessionExpired), result.reason
    return result.error


# -- deadlines, to the second ----------------------------------------------------------------------


async def test_absolute_deadline_is_exclusive_and_says_absolute(make_fob: MakeFob, clock: FakeClock) -> None:
    fob = make_fob(absolute_timeout=10 * HOUR, update_age=HOUR, access_ttl=600)
    jar = await sign_in(fob)
    start = clock()
    for _ in range(9):  # stay active: neither idle nor max_age can end it
        clock.advance(HOUR)
        assert await expiry(fob, jar) is None
    clock.now = start + 10 * HOUR - 1
    assert await expiry(fob, jar) is None, "alive one second before the absolute deadline"
    clock.now = start + 10 * HOUR
    err = await expiry(fob, jar)
    assert err is not None and err.reason == "absolute"
    assert err.expired_at == pytest.approx(start + 10 * HOUR)


async def test_idle_deadline_is_exclusive_and_says_idle(make_fob: MakeFob, clock: FakeClock) -> None:
    fob = make_fob(idle_timeout=2 * HOUR, update_age=HOUR, access_ttl=600)
    jar = await sign_in(fob)
    start = clock()
    clock.now = start + 2 * HOUR - 1
    assert await expiry(fob, jar) is None, "alive one second before the idle deadline"
    seen = clock()  # that request counted as activity (the session rolled)
    clock.now = seen + 2 * HOUR
    err = await expiry(fob, jar)
    assert err is not None and err.reason == "idle"
    assert err.expired_at == pytest.approx(seen + 2 * HOUR)


async def test_max_age_deadline_says_max_age(make_fob: MakeFob, clock: FakeClock) -> None:
    fob = make_fob(max_age=2 * DAY, update_age=2 * DAY, access_ttl=600, clock_skew=1)
    early, late = await sign_in(fob), await sign_in(fob)  # two quiet sessions, signed in together
    start = clock()
    skew = 1.0 if fob.settings.strategy == "jwt" else 0.0  # a JWT's exp allows clock_skew
    clock.now = start + 2 * DAY + skew - 1
    assert await expiry(fob, early) is None, "alive one second before max_age"
    clock.now = start + 2 * DAY + skew
    err = await expiry(fob, late)
    assert err is not None and err.reason == "max_age"
    assert err.expired_at == pytest.approx(start + 2 * DAY)


async def test_no_timeout_means_no_idle_or_absolute_end(make_fob: MakeFob, clock: FakeClock) -> None:
    fob = make_fob(max_age=30 * DAY, update_age=DAY)
    jar = await sign_in(fob)
    for _ in range(40):
        clock.advance(DAY + 1)
        assert await expiry(fob, jar) is None


# -- rotate -----------------------------------------------------------------------------------------


async def test_rotate_without_data_keeps_the_session_data(make_fob: MakeFob) -> None:
    fob = make_fob()
    jar = await sign_in(fob, name="Ada", role="admin")
    issued = await fob.rotate(jar)
    assert issued.session.data.get("role") == "admin" and issued.session.data.get("name") == "Ada"
    result = await fob.authenticate(Jar(jar).apply(issued.cookies))
    assert result.session is not None and result.session.data.get("role") == "admin"


async def test_rotate_refuses_an_idle_expired_session(make_fob: MakeFob, clock: FakeClock) -> None:
    fob = make_fob(idle_timeout=HOUR, update_age=600, access_ttl=600)
    jar = await sign_in(fob)
    clock.advance(HOUR)
    with pytest.raises(SessionExpired) as info:
        await fob.rotate(jar, data={"role": "admin"})
    assert info.value.reason == "idle"
    assert (await fob.authenticate(jar)).session is None, "a refused rotate revives nothing"


async def test_hybrid_rotate_refuses_a_rotated_out_refresh_token(make_fob: MakeFob, clock: FakeClock,
                                                                strategy: str) -> None:
    if strategy != "hybrid":
        pytest.skip("only hybrid has refresh tokens")
    fob = make_fob()
    jar = await sign_in(fob)
    old = Jar(jar)
    jar.apply((await fob.refresh(cookies=jar)).cookies)
    clock.advance(fob.settings.refresh_grace + 1)
    with pytest.raises((InvalidToken, TokenReuseDetected, SessionRevoked)):
        await fob.rotate(old, data={"role": "admin"})
    sessions = await fob.list_sessions("u1")
    assert len(sessions) <= 1, "a rotated-out token never mints a second session"


# -- revocation ------------------------------------------------------------------------------------


async def test_revoke_returns_whether_a_session_went(make_fob: MakeFob) -> None:
    fob = make_fob()
    jar = await sign_in(fob)
    session = (await fob.authenticate(jar)).session
    assert session is not None
    assert await fob.revoke(session.id) is True
    if stateful(fob):
        assert await fob.revoke(session.id) is False, "already gone"
        assert await fob.revoke("no-such-session-id") is False


async def test_revoked_session_says_session_revoked(make_fob: MakeFob) -> None:
    fob = make_fob()
    jar = await sign_in(fob)
    session = (await fob.authenticate(jar)).session
    assert session is not None
    await fob.revoke(session.id)
    result = await fob.authenticate(jar)
    assert result.session is None and result.reason == "session_revoked"


async def test_session_ended_by_a_user_version_bump_says_session_revoked(make_fob: MakeFob) -> None:
    """"Sign out everywhere" by version bump is a revocation on every strategy, not a malformed token."""
    fob = make_fob()
    jar = await sign_in(fob)
    assert (await fob.authenticate(jar)).session is not None
    await fob.bump_user_version("u1")
    result = await fob.authenticate(jar)
    assert result.session is None and result.reason == "session_revoked"


async def lose_feed(fob: Keyfob) -> None:
    """``fob``'s feed drops and stays down: its listener stops (no late "up" or event can arrive, which a
    bare ``view.live = False`` did not prevent: a subscription or reconnect finishing after it resynced
    and turned the view live again), and the view is told so, as a dropped line tells it."""
    if fob.view.feed is not None:
        await fob.view.feed.close()
    await fob.view._on_state(False)
    assert not fob.view.live


async def test_feed_down_falls_back_to_the_stores_revocations(make_fob: MakeFob) -> None:
    node_a, node_b = make_fob(), make_fob()
    jar = await sign_in(node_a)
    await node_a.start()
    await node_b.start()
    session = (await node_a.authenticate(jar)).session
    assert session is not None
    await lose_feed(node_a)  # node A lost its feed...
    await node_b.revoke(session.id)  # ...so it never hears of node B's revocation
    assert session.id not in node_a.view.revoked
    assert (await node_a.authenticate(jar)).session is None


async def test_feed_down_falls_back_to_the_stores_user_versions(make_fob: MakeFob) -> None:
    node_a, node_b = make_fob(), make_fob()
    jar = await sign_in(node_a)
    await node_a.start()
    await node_b.start()
    assert (await node_a.authenticate(jar)).session is not None
    await lose_feed(node_a)
    await node_b.bump_user_version("u1")
    assert "u1" not in node_a.view.min_version
    assert (await node_a.authenticate(access_only(node_a, jar))).session is None


async def test_version_bump_reaches_another_node(make_fob: MakeFob) -> None:
    node_a, node_b = make_fob(), make_fob()
    jar = await sign_in(node_a)
    await node_a.start()
    await node_b.start()
    assert (await node_a.authenticate(jar)).session is not None
    await node_b.bump_user_version("u1")
    for _ in range(100):  # the feed delivers asynchronously
        if (await node_a.authenticate(access_only(node_a, jar))).session is None:
            break
        await asyncio.sleep(0.01)
    assert (await node_a.authenticate(access_only(node_a, jar))).session is None


async def test_sign_out_with_only_the_access_cookie_revokes_the_session(make_fob: MakeFob) -> None:
    fob = make_fob()
    jar = await sign_in(fob)
    await fob.sign_out(access_only(fob, jar))
    assert (await fob.authenticate(jar)).session is None
    if fob.settings.strategy == "hybrid":
        with pytest.raises((InvalidToken, SessionRevoked)):
            await fob.refresh(cookies=jar)


async def test_revoke_others_returns_a_count_never_minus_one(make_fob: MakeFob) -> None:
    fob = make_fob()
    phone, laptop = await sign_in(fob), await sign_in(fob)
    n, reissued = await fob.revoke_others(laptop)
    assert n >= 0
    if stateful(fob):
        assert n == 1
    if reissued is not None:
        laptop.apply(reissued.cookies)
    assert (await fob.authenticate(laptop)).session is not None
    assert (await fob.authenticate(phone)).session is None


# -- hybrid: refresh margin and grace window --------------------------------------------------------


@pytest.fixture
def hybrid_only(strategy: str) -> None:
    if strategy != "hybrid":
        pytest.skip("hybrid only")


@pytest.mark.usefixtures("hybrid_only")
async def test_access_token_is_refreshed_once_within_the_margin(make_fob: MakeFob, clock: FakeClock) -> None:
    fob = make_fob(access_ttl=600)  # margin: min(60, 600 / 5) = 60 s
    jar = await sign_in(fob)
    start = clock()
    clock.now = start + 600 - 61
    assert (await fob.authenticate(jar)).cookies == [], "more than the margin left: no refresh"
    clock.now = start + 600 - 60
    result = await fob.authenticate(jar)
    assert result.session is not None and result.cookies, "at the margin: refreshed in the same request"


@pytest.mark.usefixtures("hybrid_only")
async def test_grace_window_ends_exactly_at_refresh_grace(make_fob: MakeFob, clock: FakeClock) -> None:
    fob = make_fob(refresh_grace=10)
    jar = await sign_in(fob)
    token = fob.profile(True).refresh.read(jar)
    assert token is not None
    await fob.refresh(token)
    clock.advance(10)
    inside = await fob.refresh(token)
    assert inside.refresh_token is None, "inside the window: an access token, the refresh cookie stays"
    clock.advance(1)
    with pytest.raises(TokenReuseDetected):
        await fob.refresh(token)


@pytest.mark.usefixtures("hybrid_only")
async def test_grace_window_does_not_revive_an_expired_session(make_fob: MakeFob, clock: FakeClock) -> None:
    fob = make_fob(idle_timeout=HOUR, update_age=600, access_ttl=600, refresh_grace=10)
    jar = await sign_in(fob)
    token = fob.profile(True).refresh.read(jar)
    assert token is not None
    clock.advance(HOUR - 5)
    await fob.refresh(token)
    clock.advance(HOUR)  # the winner's session went idle since; a replay must not bring it back
    with pytest.raises((SessionExpired, TokenReuseDetected)):
        await fob.refresh(token)


@pytest.mark.usefixtures("hybrid_only")
async def test_refresh_of_an_idle_session_says_idle(make_fob: MakeFob, clock: FakeClock) -> None:
    fob = make_fob(idle_timeout=HOUR, update_age=600, access_ttl=600)
    jar = await sign_in(fob)
    clock.advance(HOUR)
    with pytest.raises(SessionExpired) as info:
        await fob.refresh(cookies=jar)
    assert info.value.reason == "idle"


@pytest.mark.usefixtures("hybrid_only")
async def test_oversized_refresh_cookie_is_invalid_not_missing(make_fob: MakeFob) -> None:
    fob = make_fob()
    name = fob.profile(True).refresh.name
    with pytest.raises(InvalidToken) as info:
        await fob.refresh(cookies={name: "a" * 20_000})
    assert "no refresh token was sent" not in str(info.value)
    assert "too large" in str(info.value) or "not valid" in str(info.value)


# -- Auth.js compatibility cookie names ---------------------------------------------------------------


@pytest.mark.parametrize(("secure", "name"), [(True, "__Secure-authjs.session-token"),
                                              (False, "authjs.session-token")])
async def test_authjs_compat_reads_and_writes_authjs_cookie_names(tmp_path: object, clock: FakeClock,
                                                                  secure: bool, name: str) -> None:
    fob = Keyfob(strategy="database", secret=SECRET, store=f"sqlite:///{tmp_path}/next.db",
                 authjs_compat=True, clock=clock)
    try:
        issued = await fob.create("u1", {"role": "user"}, secure=secure)
        assert [c.name for c in issued.cookies] == [name]
        assert issued.cookies[0].secure is secure
        result = await fob.authenticate({name: issued.cookies[0].value}, secure=secure)
        assert result.session is not None and result.session.user_id == "u1"
        wrong = await fob.authenticate({"__Host-" + name: issued.cookies[0].value}, secure=secure)
        assert wrong.session is None
    finally:
        await fob.close()


@pytest.mark.usefixtures("hybrid_only")
async def test_revoke_others_hands_back_the_cookies_of_a_refresh_it_caused(make_fob: MakeFob,
                                                                         clock: FakeClock) -> None:
    fob = make_fob()
    phone, laptop = await sign_in(fob), await sign_in(fob)
    clock.advance(fob.settings.access_ttl + 1)  # the laptop's access token expired: revoke_others refreshes
    n, reissued = await fob.revoke_others(laptop)
    assert n == 1 and reissued is not None
    laptop.apply(reissued.cookies)
    clock.advance(fob.settings.refresh_grace + 1)
    assert (await fob.authenticate(laptop)).session is not None, "no reuse alarm on the laptop's own token"
    assert (await fob.authenticate(phone)).session is None

"""Hybrid strategy: refresh rotation, the grace window, reuse detection, races, the revocation view.

Runs on every store that keeps refresh tokens (memory, SQLite, PostgreSQL, Redis).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from keyfob import (
    Event,
    FakeClock,
    InvalidToken,
    Keyfob,
    SessionLimitReached,
    SessionRevoked,
    TokenReuseDetected,
)

from .stores_for_strategies import (  # noqa: F401
    STORE_PARAMS,
    MakeFob,
    StoreFactory,
    keyfob_factory,
    make_store_url,
)
from .test_strategy_contract import SECRET, Jar

pytestmark = pytest.mark.anyio



@pytest.fixture(params=STORE_PARAMS)
async def make_fob(request: pytest.FixtureRequest, make_store_url: StoreFactory,
                   clock: FakeClock) -> AsyncIterator[MakeFob]:
    async with keyfob_factory(await make_store_url(request.param), clock, "hybrid", SECRET) as factory:
        yield factory


@pytest.fixture
def fob(make_fob: MakeFob) -> Keyfob:
    return make_fob()


async def signed_in(fob: Keyfob, user: str = "u1") -> Jar:
    return Jar().apply((await fob.create(user, {"role": "user"})).cookies)


def refresh_of(fob: Keyfob, jar: Jar) -> str:
    value = fob.profile(True).refresh.read(jar)
    assert value is not None
    return value


async def test_expired_access_token_is_refreshed_transparently(fob: Keyfob, clock: FakeClock) -> None:
    jar = await signed_in(fob)
    old_refresh = refresh_of(fob, jar)
    clock.advance(fob.settings.access_ttl + 1)
    result = await fob.authenticate(jar)
    assert result.session is not None, "the user never sees 'login expired'"
    names = {c.name for c in result.cookies}
    assert names == {fob.profile(True).session.name, fob.profile(True).refresh.name}
    jar.apply(result.cookies)
    assert refresh_of(fob, jar) != old_refresh


async def test_access_token_alone_needs_no_store_read(fob: Keyfob) -> None:
    jar = await signed_in(fob)
    access_only = {fob.profile(True).session.name: jar[fob.profile(True).session.name]}

    async def fail(*a: Any, **k: Any) -> Any:
        raise AssertionError("the hybrid hot path must not read the store")

    fob.store.get = fail  # type: ignore[method-assign]
    fob.store.get_by_id = fail  # type: ignore[method-assign]
    result = await fob.authenticate(access_only)
    assert result.session is not None


async def test_access_token_is_refused_as_a_refresh_token_and_vice_versa(fob: Keyfob) -> None:
    jar = await signed_in(fob)
    prof = fob.profile(True)
    access, refresh = jar[prof.session.name], refresh_of(fob, jar)
    with pytest.raises(InvalidToken):
        await fob.refresh(access)
    result = await fob.authenticate({prof.session.name: refresh})
    assert result.session is None and result.reason == "invalid_token"


async def test_concurrent_refresh_inside_grace_window_does_not_sign_out(
    fob: Keyfob, clock: FakeClock
) -> None:
    jar = await signed_in(fob)
    token = refresh_of(fob, jar)
    first = await fob.refresh(token)
    clock.advance(2)  # the second tab's request was in flight
    second = await fob.refresh(token)
    assert second.session.id == first.session.id
    assert second.refresh_token is None, "the loser keeps the winner's refresh cookie"
    jar.apply(first.cookies)
    assert (await fob.authenticate(jar)).session is not None


async def test_replay_of_retired_refresh_token_after_grace_revokes_the_session(make_fob: MakeFob,
                                                                             clock: FakeClock) -> None:
    events: list[Event] = []
    fob = make_fob(on_event=events.append)
    jar = await signed_in(fob)
    stolen = refresh_of(fob, jar)
    legit = await fob.refresh(stolen)
    jar.apply(legit.cookies)
    clock.advance(fob.settings.refresh_grace + 1)
    with pytest.raises(TokenReuseDetected) as info:
        await fob.refresh(stolen)
    assert info.value.family_id == legit.session.id
    assert any(e.name == "reuse_detected" and e.session_id == legit.session.id for e in events)
    # the whole family is dead: the legitimate holder's tokens too
    with pytest.raises((SessionRevoked, InvalidToken)):
        await fob.refresh(refresh_of(fob, jar))
    assert (await fob.authenticate(jar)).session is None


async def test_fifty_concurrent_refreshes_leave_exactly_one_chain(make_fob: MakeFob) -> None:
    events: list[Event] = []
    fob = make_fob(on_event=events.append)
    jar = await signed_in(fob)
    token = refresh_of(fob, jar)
    results = await asyncio.gather(*(fob.refresh(token) for _ in range(50)), return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException)]
    assert errors == [], "no false theft alarm inside the grace window"
    minted = [r.refresh_token for r in results if not isinstance(r, BaseException) and r.refresh_token]
    assert len(minted) == 1, "exactly one new refresh token"
    assert not any(e.name == "reuse_detected" for e in events)
    live = [r for r in await fob.store.list_user("u1") if r.retired_at is None]
    assert len(live) == 1
    new = await fob.refresh(minted[0])
    assert new.session.user_id == "u1"



async def test_session_limit_refuse_holds_under_concurrent_sign_ins(make_fob: MakeFob) -> None:
    fob = make_fob(max_sessions_per_user=3, session_limit_policy="refuse")
    results = await asyncio.gather(*(signed_in(fob) for _ in range(20)), return_exceptions=True)
    jars = [r for r in results if isinstance(r, Jar)]
    refused = [r for r in results if isinstance(r, SessionLimitReached)]
    assert len(jars) == 3 and len(refused) == 17, [r for r in results if not isinstance(r, Jar)]
    assert len(await fob.list_sessions("u1")) == 3
    for jar in jars:
        assert (await fob.refresh(refresh_of(fob, jar))).session.user_id == "u1"


async def test_session_limit_evict_holds_under_concurrent_sign_ins(make_fob: MakeFob) -> None:
    events: list[Event] = []
    fob = make_fob(max_sessions_per_user=3, session_limit_policy="evict", on_event=events.append)
    results = await asyncio.gather(*(signed_in(fob) for _ in range(20)), return_exceptions=True)
    assert all(isinstance(r, Jar) for r in results), [r for r in results if not isinstance(r, Jar)]
    assert len(await fob.list_sessions("u1")) == 3
    evicted = [e for e in events if e.name == "revoked"]
    assert len(evicted) == 17 and len({e.session_id for e in evicted}) == 17
    assert all(e.detail == {"reason": "session_limit"} for e in evicted)
    survivors = 0
    for jar in results:
        assert isinstance(jar, Jar)
        access_ok = (await fob.authenticate({fob.profile(True).session.name:
                                             jar[fob.profile(True).session.name]})).session is not None
        try:
            await fob.refresh(refresh_of(fob, jar))
        except (InvalidToken, SessionRevoked):
            assert not access_ok, "an evicted session's access token is refused at once"
        else:
            assert access_ok
            survivors += 1
    assert survivors == 3

async def test_revocation_reaches_another_node_through_the_feed(make_fob: MakeFob) -> None:
    node_a, node_b = make_fob(), make_fob()
    jar = await signed_in(node_a)
    await node_b.start()
    session = (await node_b.authenticate(jar)).session
    assert session is not None
    await node_a.revoke(session.id)
    # the feed delivers asynchronously; SQLite/memory without a shared feed fall back. Polled up to
    # 10 s (it is done in milliseconds; how fast is keyfob bench's to measure, not this test's)
    for _ in range(1000):
        if (await node_b.authenticate(jar)).session is None:
            break
        await asyncio.sleep(0.01)
    assert (await node_b.authenticate(jar)).session is None


async def test_user_version_bump_refuses_old_access_tokens(fob: Keyfob) -> None:
    jar = await signed_in(fob)
    prof = fob.profile(True)
    access_only = {prof.session.name: jar[prof.session.name]}
    await fob.bump_user_version("u1")
    assert (await fob.authenticate(access_only)).session is None


async def test_feed_loss_falls_back_to_store_checks(fob: Keyfob) -> None:
    jar = await signed_in(fob)
    await fob.start()
    fob.view.live = False  # as if the pub/sub connection dropped
    session = (await fob.authenticate(jar)).session
    assert session is not None
    await fob.store.delete(session.id)  # revoked by someone who could not publish
    assert (await fob.authenticate(jar)).session is None

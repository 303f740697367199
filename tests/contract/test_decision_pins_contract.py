"""More of the decisions' edges, on every strategy x store: what the revoke/bump/list calls return,
what each strategy refuses, and claims a shared-secret issuer could get wrong.

Each test here kills a mutant that `tools/mutate.py` showed surviving the other suites (issue 9);
`tools/MUTATION.md` lists the survivors judged equivalent instead.
"""

from __future__ import annotations

from typing import Any

import pytest

from keyfob import ConfigError, FakeClock, InvalidToken, Keyfob

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


def jwt_only(fob: Keyfob) -> None:
    if fob.settings.strategy != "jwt":
        pytest.skip("jwt only")


# -- what the user-wide calls return ------------------------------------------------------------------


async def test_revoke_user_ends_every_session_and_says_how_many(make_fob: MakeFob) -> None:
    fob = make_fob()
    jars = [await sign_in(fob), await sign_in(fob)]
    other = await sign_in(fob, "u2")
    n = await fob.revoke_user("u1")
    assert n == (-1 if fob.settings.strategy == "jwt" else 2)  # jwt: "all of them", uncounted
    for jar in jars:
        assert (await fob.authenticate(jar)).session is None
    assert (await fob.authenticate(other)).session is not None


async def test_bump_user_version_returns_each_new_version(make_fob: MakeFob) -> None:
    fob = make_fob()
    first = await fob.bump_user_version("u1")
    second = await fob.bump_user_version("u1")
    assert isinstance(first, int) and second == first + 1


async def test_device_list_is_the_stored_sessions_and_empty_under_jwt(make_fob: MakeFob) -> None:
    fob = make_fob()
    await sign_in(fob)
    sessions = await fob.list_sessions("u1")
    assert len(sessions) == (0 if fob.settings.strategy == "jwt" else 1)


# -- what jwt refuses ------------------------------------------------------------------------------------


async def test_refresh_without_refresh_tokens_is_refused_with_a_hint_naming_the_strategy_to_use(
        make_fob: MakeFob) -> None:
    fob = make_fob()
    if fob.settings.strategy == "hybrid":
        pytest.skip("hybrid has refresh tokens")
    await sign_in(fob)
    with pytest.raises(InvalidToken) as info:
        await fob.refresh("any-refresh-token")
    assert "hybrid" in (info.value.hint or "")


async def test_jwt_revoke_user_keeping_one_session_is_a_config_error(make_fob: MakeFob) -> None:
    fob = make_fob()
    jwt_only(fob)
    jar = await sign_in(fob)
    current = (await fob.authenticate(jar)).session
    assert current is not None
    with pytest.raises(ConfigError, match="revoke_others"):
        await fob.revoke_user("u1", keep=current.id)
    assert (await fob.authenticate(jar)).session is not None, "nothing was revoked"


@pytest.mark.parametrize("created", [True, "yesterday", None])
async def test_jwt_claims_with_a_non_numeric_creation_time_are_an_invalid_token(
        make_fob: MakeFob, clock: FakeClock, created: Any) -> None:
    """A token minted by another holder of the secret (an Auth.js app) with a bad ``ct`` is refused."""
    fob = make_fob()
    jwt_only(fob)
    codec = fob.strategy.codec  # type: ignore[attr-defined]
    claims = {"sub": "u1", "sid": "s-1", "ver": 0, "ct": created}
    token = codec.encode(claims, max_age=HOUR, now=clock())
    result = await fob.authenticate_token(token)
    assert result.session is None and result.reason == "invalid_token"


async def test_jwt_rolls_at_exactly_update_age(make_fob: MakeFob, clock: FakeClock) -> None:
    fob = make_fob(update_age=HOUR)
    jwt_only(fob)
    clock.now = float(int(clock()))  # iat is whole seconds
    jar = await sign_in(fob)
    clock.advance(HOUR - 1)
    assert (await fob.authenticate(jar)).cookies == [], "younger than update_age: not re-issued"
    clock.advance(1)
    assert (await fob.authenticate(jar)).cookies != [], "update_age old: re-issued"


async def test_rotate_without_a_session_says_sign_in_first(make_fob: MakeFob) -> None:
    fob = make_fob()
    await sign_in(fob)
    with pytest.raises(InvalidToken) as info:
        await fob.rotate({})
    assert info.value.hint == "sign in first"


# -- hybrid: access token and refresh token together --------------------------------------------------


def hybrid_only(fob: Keyfob) -> None:
    if fob.settings.strategy != "hybrid":
        pytest.skip("hybrid only")


async def test_expired_access_token_alone_is_expired_not_invalid(make_fob: MakeFob, clock: FakeClock) -> None:
    fob = make_fob(access_ttl=600)
    hybrid_only(fob)
    jar = await sign_in(fob)
    access = Jar({fob.profile(True).session.name: jar[fob.profile(True).session.name]})
    clock.advance(601)
    result = await fob.authenticate(access)
    assert result.session is None and result.reason == "session_expired"


async def test_garbled_access_token_with_a_good_refresh_token_is_refreshed(make_fob: MakeFob) -> None:
    fob = make_fob()
    hybrid_only(fob)
    jar = await sign_in(fob)
    jar[fob.profile(True).session.name] = "garbled"
    result = await fob.authenticate(jar)
    assert result.session is not None and result.session.user_id == "u1"
    assert any(c.name == fob.profile(True).session.name for c in result.cookies), "a new access token"


async def test_rotate_with_a_concurrently_refreshed_token_asks_to_retry(make_fob: MakeFob) -> None:
    fob = make_fob(refresh_grace=30)
    hybrid_only(fob)
    old = await sign_in(fob)
    new = Jar(old).apply((await fob.refresh(cookies=old)).cookies)
    with pytest.raises(InvalidToken) as info:
        await fob.rotate(old)  # the other tab's refresh won a moment ago
    assert "retry" in (info.value.hint or "")
    assert (await fob.authenticate(new)).session is not None, "the winner's session is untouched"
    assert len(await fob.list_sessions("u1")) == 1


@pytest.mark.parametrize("access", ["absent", "garbled"])
async def test_sign_out_with_the_refresh_cookie_revokes_the_session(make_fob: MakeFob, access: str) -> None:
    fob = make_fob()
    hybrid_only(fob)
    jar = await sign_in(fob)
    name = fob.profile(True).session.name
    if access == "absent":
        del jar[name]
    else:
        jar[name] = "garbled"
    await fob.sign_out(jar)
    assert await fob.list_sessions("u1") == []


async def test_sign_out_with_an_unknown_refresh_token_falls_back_to_the_access_token(
        make_fob: MakeFob) -> None:
    fob = make_fob()
    hybrid_only(fob)
    jar = await sign_in(fob)
    stranger = await sign_in(fob, "u2")
    await fob.revoke_user("u2")  # its refresh token now names no row
    jar[fob.profile(True).refresh.name] = stranger[fob.profile(True).refresh.name]
    await fob.sign_out(jar)
    assert await fob.list_sessions("u1") == []


@pytest.mark.parametrize("bad", [{"sub": 123}, {"sub": ""}, {"ver": "1"}, {"ver": True}, {"ver": 1.0}],
                         ids=["sub-number", "sub-empty", "ver-string", "ver-bool", "ver-float"])
async def test_jwt_claims_with_a_bad_subject_or_version_are_an_invalid_token(
        make_fob: MakeFob, clock: FakeClock, bad: dict[str, Any]) -> None:
    fob = make_fob()
    jwt_only(fob)
    codec = fob.strategy.codec  # type: ignore[attr-defined]
    token = codec.encode({"sub": "u1", "sid": "s-1", "ver": 0, **bad}, max_age=HOUR, now=clock())
    result = await fob.authenticate_token(token)
    assert result.session is None and result.reason == "invalid_token"


@pytest.mark.parametrize("bad", [{"sid": 5}, {"sid": ["s-1"]}, {"sid": {"id": "s-1"}}, {"sid": True},
                                 {"sid": None, "jti": 7}],
                         ids=["sid-number", "sid-list", "sid-object", "sid-bool", "jti-number"])
async def test_jwt_claims_with_a_session_id_that_is_not_a_string_are_an_invalid_token(
        make_fob: MakeFob, clock: FakeClock, bad: dict[str, Any]) -> None:
    """The revocation view is keyed by the session id: a token whose ``sid`` (or, without one, ``jti``)
    is not a string could never be found there, so it is refused rather than let past the check."""
    fob = make_fob()
    jwt_only(fob)
    codec = fob.strategy.codec  # type: ignore[attr-defined]
    claims = {"sub": "u1", "ver": 0, **bad}
    token = codec.encode({k: v for k, v in claims.items() if v is not None}, max_age=HOUR, now=clock())
    result = await fob.authenticate_token(token)
    assert result.session is None and result.reason == "invalid_token"


@pytest.mark.parametrize("bad", [{"sid": None}, {"sid": ""}, {"sub": 5}, {"sub": ""}, {"ver": "0"}],
                         ids=["no-sid", "sid-empty", "sub-number", "sub-empty", "ver-string"])
async def test_access_token_with_a_bad_identity_is_an_invalid_token(
        make_fob: MakeFob, clock: FakeClock, bad: dict[str, Any]) -> None:
    """An access token signed with the app's key but without a usable (sid, sub, ver) is refused."""
    fob = make_fob()
    hybrid_only(fob)
    from keyfob.strategies._access import ACCESS_TYP

    strategy = fob.strategy
    now = int(clock())
    claims = {"sub": "u1", "sid": "s-1", "ver": 0, "aud": strategy.audience,  # type: ignore[attr-defined]
              "iat": now, "exp": now + 300, **bad}
    token = strategy.signer.sign({k: v for k, v in claims.items() if v is not None},  # type: ignore[attr-defined]
                                 typ=ACCESS_TYP)
    result = await fob.authenticate_token(token)
    assert result.session is None and result.reason == "invalid_token"


async def test_a_row_without_authenticated_at_gives_the_creation_time_as_auth_time(
        make_fob: MakeFob, clock: FakeClock) -> None:
    """Rows of an older layout or another writer may lack authenticated_at: auth_time falls back."""
    fob = make_fob()
    hybrid_only(fob)
    from keyfob.stores import SessionRecord
    from keyfob.strategies._base import new_token, token_hash

    await fob.start()
    created = float(int(clock()) - 100)
    refresh = new_token()
    await fob.store.add(SessionRecord(token_hash=token_hash(refresh), id="s-old", user_id="u1",
                                      created_at=created, last_seen_at=created, expires_at=clock() + HOUR,
                                      authenticated_at=None))
    issued = await fob.refresh(refresh)
    assert issued.session.claims["auth_time"] == int(created)
    assert issued.session.authenticated_at == created


async def test_revoke_others_tells_the_other_browsers_they_were_revoked(make_fob: MakeFob) -> None:
    fob = make_fob()
    here, there = await sign_in(fob), await sign_in(fob)
    _, reissued = await fob.revoke_others(here)
    if reissued is not None:
        here.apply(reissued.cookies)
    assert (await fob.authenticate(here)).session is not None
    result = await fob.authenticate(there)
    assert result.session is None and result.reason == "session_revoked"

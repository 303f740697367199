"""The contract every strategy keeps, on every store: create → authenticate → roll → expire → sign out.

Parametrized strategy x store; server-backed stores skip with a reason locally and fail
under CI=true when their server is missing. Time is a fake clock, never sleep.
"""

from __future__ import annotations

from typing import Any

import pytest

from keyfob import Event, FakeClock, Keyfob, RequestMeta, SessionExpired

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

DAY = 86400.0

pytestmark = pytest.mark.anyio




@pytest.fixture
def fob(make_fob: MakeFob) -> Keyfob:
    return make_fob()


async def sign_in(fob: Keyfob, user: str = "u1", **data: Any) -> Jar:
    issued = await fob.create(user, data or {"name": "Ada", "role": "admin"},
                              RequestMeta(ip="127.0.0.1",
                                          user_agent="Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0"))
    return Jar().apply(issued.cookies)


async def test_created_session_authenticates_with_its_data(fob: Keyfob) -> None:
    jar = await sign_in(fob, "u1", name="Ada", role="admin")
    result = await fob.authenticate(jar)
    assert result.session is not None
    assert result.session.user_id == "u1"
    assert result.session.data["role"] == "admin"
    assert result.session.strategy == fob.settings.strategy
    assert result.cookies == []  # nothing to roll yet


async def test_no_cookie_means_no_session_and_no_reason(fob: Keyfob) -> None:
    result = await fob.authenticate({})
    assert result.session is None and result.reason is None


@pytest.mark.parametrize("garbage", ["x", "a" * 43, "e30.e30.e30", "....", "\x00\x01", "é" * 50, "a.b.c.d.e"])
async def test_garbled_cookie_is_rejected_without_store_write(fob: Keyfob, garbage: str) -> None:
    await sign_in(fob)
    before = await fob.store.count()
    prof = fob.profile(True)
    result = await fob.authenticate({prof.session.name: garbage, prof.refresh.name: garbage})
    assert result.session is None
    assert result.reason in {"invalid_token", "session_expired"}
    assert await fob.store.count() == before


async def test_tampered_cookie_is_rejected(fob: Keyfob) -> None:
    jar = await sign_in(fob)
    name = fob.profile(True).session.name
    value = jar[name]
    flipped = value[:-2] + ("A" if value[-2] != "A" else "B") + value[-1]
    result = await fob.authenticate({name: flipped})
    assert result.session is None
    assert result.reason == "invalid_token"


async def test_session_rolls_once_older_than_update_age(fob: Keyfob, clock: FakeClock) -> None:
    jar = await sign_in(fob)
    first = await fob.authenticate(jar)
    assert first.session is not None
    clock.advance(DAY + 1)
    rolled = await fob.authenticate(jar)
    assert rolled.session is not None
    assert rolled.cookies, "an old-enough session must be re-issued"
    assert rolled.session.expires_at > first.session.expires_at
    jar.apply(rolled.cookies)
    again = await fob.authenticate(jar)
    assert again.session is not None and again.session.id == first.session.id


async def test_session_is_not_rewritten_before_update_age(fob: Keyfob, clock: FakeClock) -> None:
    jar = await sign_in(fob)
    clock.advance(60)
    result = await fob.authenticate(jar)
    assert result.session is not None and result.cookies == []


async def test_session_expires_after_max_age_without_activity(make_fob: MakeFob, clock: FakeClock) -> None:
    fob = make_fob(max_age=7 * DAY)
    jar = await sign_in(fob)
    clock.advance(7 * DAY + 60)
    result = await fob.authenticate(jar)
    assert result.session is None
    assert result.reason in {"session_expired", "invalid_token"}


async def test_rolling_keeps_an_active_session_alive_past_max_age(
    make_fob: MakeFob, clock: FakeClock
) -> None:
    fob = make_fob(max_age=3 * DAY, update_age=DAY)
    jar = await sign_in(fob)
    for _ in range(6):  # six days of daily use
        clock.advance(DAY + 1)
        result = await fob.authenticate(jar)
        assert result.session is not None
        jar.apply(result.cookies)


async def test_idle_timeout_expires_a_quiet_session(make_fob: MakeFob, clock: FakeClock) -> None:
    fob = make_fob(idle_timeout=3600, update_age=600)
    jar = await sign_in(fob)
    clock.advance(1000)
    result = await fob.authenticate(jar)
    assert result.session is not None
    jar.apply(result.cookies)
    clock.advance(3601)
    assert (await fob.authenticate(jar)).session is None


async def test_absolute_timeout_ends_even_an_active_session(make_fob: MakeFob, clock: FakeClock) -> None:
    fob = make_fob(absolute_timeout=2 * DAY, update_age=3600)
    jar = await sign_in(fob)
    for _ in range(47):
        clock.advance(3601)
        result = await fob.authenticate(jar)
        if result.session is None:
            break
        jar.apply(result.cookies)
    clock.advance(2 * 3600)
    assert (await fob.authenticate(jar)).session is None


async def test_sign_out_revokes_the_session_and_clears_cookies(fob: Keyfob) -> None:
    jar = await sign_in(fob)
    stolen = dict(jar)
    cleared = await fob.sign_out(jar)
    assert cleared and all(c.max_age == 0 for c in cleared)
    jar.apply(cleared)
    assert (await fob.authenticate(jar)).session is None
    # a copy of the cookie taken before sign-out is refused too
    assert (await fob.authenticate(stolen)).session is None


async def test_revoked_session_is_rejected(fob: Keyfob) -> None:
    jar = await sign_in(fob)
    session = (await fob.authenticate(jar)).session
    assert session is not None
    await fob.revoke(session.id)
    result = await fob.authenticate(jar)
    assert result.session is None
    assert result.cookies, "a dead session's cookies are cleared"


async def test_bump_user_version_invalidates_every_token_of_the_user(fob: Keyfob) -> None:
    a, b = await sign_in(fob, "u1"), await sign_in(fob, "u1")
    other = await sign_in(fob, "u2")
    await fob.bump_user_version("u1")
    assert (await fob.authenticate(a)).session is None
    assert (await fob.authenticate(b)).session is None
    assert (await fob.authenticate(other)).session is not None
    fresh = await sign_in(fob, "u1")
    assert (await fob.authenticate(fresh)).session is not None


async def test_sign_in_over_an_existing_session_gets_a_new_id(fob: Keyfob) -> None:
    jar = await sign_in(fob)
    old = (await fob.authenticate(jar)).session
    assert old is not None
    issued = await fob.create("u1", {"role": "user"}, cookies=jar)
    assert issued.session.id != old.id
    assert (await fob.authenticate(dict(jar))).session is None, "the pre-sign-in session must die"
    assert (await fob.authenticate(Jar(jar).apply(issued.cookies))).session is not None


async def test_rotate_gives_a_new_token_and_kills_the_old_one(fob: Keyfob) -> None:
    jar = await sign_in(fob, role="user")
    old = dict(jar)
    issued = await fob.rotate(jar, data={"role": "admin"})
    new = Jar(jar).apply(issued.cookies)
    result = await fob.authenticate(new)
    assert result.session is not None and result.session.data["role"] == "admin"
    assert (await fob.authenticate(old)).session is None


async def test_rotate_on_privilege_change_does_not_count_as_a_fresh_sign_in(
    fob: Keyfob, clock: FakeClock
) -> None:
    jar = await sign_in(fob, role="user")
    clock.advance(600)
    issued = await fob.rotate(jar, data={"role": "admin"})
    session = (await fob.authenticate(Jar(jar).apply(issued.cookies))).session
    assert session is not None and session.data["role"] == "admin"
    assert not fob.is_fresh(session, max_age=300)  # require_fresh still asks for the password
    assert fob.is_fresh(session, max_age=900)


async def test_revoke_others_keeps_only_the_current_session(fob: Keyfob) -> None:
    phone, laptop, tablet = await sign_in(fob), await sign_in(fob), await sign_in(fob)
    n, reissued = await fob.revoke_others(laptop)
    if reissued is not None:
        laptop.apply(reissued.cookies)
    assert (await fob.authenticate(laptop)).session is not None
    assert (await fob.authenticate(phone)).session is None
    assert (await fob.authenticate(tablet)).session is None
    assert n == (0 if fob.settings.strategy == "jwt" else 2)  # jwt cannot count cookies it never stored


async def test_callbacks_shape_stored_and_exposed_data(make_fob: MakeFob) -> None:
    def on_token(token: dict[str, Any], user_id: str) -> dict[str, Any]:
        return {**token, "plan": "pro"}

    def on_session(session: dict[str, Any], token: Any) -> dict[str, Any]:
        return {k: v for k, v in session.items() if k != "secret_note"}

    fob = make_fob(on_token=on_token, on_session=on_session)
    jar = await sign_in(fob, secret_note="hidden", name="Ada")
    result = await fob.authenticate(jar)
    assert result.session is not None
    if fob.settings.strategy != "database":  # database sessions expose stored data as stored
        assert "secret_note" not in result.session.data
    assert result.session.data["plan"] == "pro"


async def test_events_carry_public_ids_never_tokens(make_fob: MakeFob, clock: FakeClock) -> None:
    events: list[Event] = []
    fob = make_fob(on_event=events.append)
    jar = await sign_in(fob)
    clock.advance(DAY + 1)
    jar.apply((await fob.authenticate(jar)).cookies)
    await fob.sign_out(jar)
    names = [e.name for e in events]
    assert names[0] == "created" and "signed_out" in names
    assert any(n in ("rolled", "refreshed") for n in names)
    tokens = set(jar.values())
    for e in events:
        assert (e.session_id and e.session_id not in tokens) or e.name == "signed_out"
        assert not any(t and t in repr(e) for t in tokens)


async def test_expired_error_says_why(make_fob: MakeFob, clock: FakeClock) -> None:
    fob = make_fob(idle_timeout=600, update_age=100)
    jar = await sign_in(fob)
    clock.advance(601)
    result = await fob.authenticate(jar)
    assert result.session is None
    if isinstance(result.error, SessionExpired):
        assert result.error.reason in ("idle", "access", "max_age")

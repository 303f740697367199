"""The one liveness rule, to the second, and the Redis Lua script that mirrors it."""

from __future__ import annotations

import itertools

import pytest

from keyfob import SessionExpired, Settings
from keyfob.stores import SessionRecord
from keyfob.stores._protocol import is_live
from keyfob.strategies import _lifetimes as lifetimes

SECRET = "kf-contract-secret-0123456789abcdef0123456789abcdef01234567"
T0 = 1_800_000_000.0


def settings(**kw: object) -> Settings:
    return Settings(secrets=(SECRET,), **kw)  # type: ignore[arg-type]


def record(**kw: object) -> SessionRecord:
    base: dict[str, object] = {"token_hash": b"h" * 32, "id": "s1", "user_id": "u1", "created_at": T0,
                               "last_seen_at": T0, "expires_at": T0 + 1000}
    return SessionRecord(**{**base, **kw})  # type: ignore[arg-type]


@pytest.mark.parametrize(("rec", "s", "now", "reason"), [
    (record(absolute_expires_at=T0 + 100), settings(), T0 + 99.5, None),
    (record(absolute_expires_at=T0 + 100), settings(), T0 + 100, "absolute"),
    (record(), settings(idle_timeout=60), T0 + 59.5, None),
    (record(), settings(idle_timeout=60), T0 + 60, "idle"),
    (record(), settings(), T0 + 999.5, None),
    (record(), settings(), T0 + 1000, "max_age"),
    (record(absolute_expires_at=T0 + 10), settings(idle_timeout=5), T0 + 20, "absolute"),
    (record(expires_at=T0 + 10), settings(idle_timeout=10), T0 + 10, "idle"),
])
def test_check_alive_edges_and_reasons(rec: SessionRecord, s: Settings, now: float,
                                      reason: str | None) -> None:
    if reason is None:
        lifetimes.check_alive(rec, now, s)
        assert is_live(rec, now, s.idle_timeout)
        return
    with pytest.raises(SessionExpired) as info:
        lifetimes.check_alive(rec, now, s)
    assert info.value.reason == reason
    assert not is_live(rec, now, s.idle_timeout)


def test_a_retired_row_is_not_live() -> None:
    assert not is_live(record(retired_at=T0), T0, None)


def test_rolling_expiry_is_capped_by_idle_and_absolute() -> None:
    assert lifetimes.new_expiry(T0, None, settings(max_age=1000, update_age=10)) == T0 + 1000
    assert lifetimes.new_expiry(T0, None, settings(max_age=1000, update_age=10, idle_timeout=50)) == T0 + 50
    capped = settings(max_age=1000, update_age=10, idle_timeout=50)
    assert lifetimes.new_expiry(T0, T0 + 20, capped) == T0 + 20
    assert lifetimes.absolute_deadline(T0, settings()) is None
    assert lifetimes.absolute_deadline(T0, settings(absolute_timeout=5000)) == T0 + 5000


def test_touch_is_throttled_by_update_age_or_a_quarter_of_idle() -> None:
    s = settings(update_age=100)
    assert not lifetimes.needs_touch(T0, T0 + 99.5, s)
    assert lifetimes.needs_touch(T0, T0 + 100, s)
    s = settings(update_age=100, idle_timeout=200)
    assert not lifetimes.needs_touch(T0, T0 + 49.5, s)
    assert lifetimes.needs_touch(T0, T0 + 50, s)


# -- the Redis mirror -----------------------------------------------------------------------------


def _lua_live_cases() -> list[tuple[SessionRecord, float, float | None]]:
    cases = []
    for retired, absolute, idle, now in itertools.product(
        [None, T0], [None, T0 + 100, T0 + 100.5], [None, 60.0, 60.25], [T0, T0 + 59.5, T0 + 60, T0 + 60.25,
                                                                        T0 + 100, T0 + 100.5, T0 + 1000]
    ):
        cases.append((record(retired_at=retired, absolute_expires_at=absolute), now, idle))
    return cases


def test_redis_lua_liveness_mirrors_is_live() -> None:
    """Run the Lua library's ``live`` function in a real Redis and compare it with ``is_live``."""
    from tests.conftest import REDIS_URL, require_redis

    require_redis()
    import redis

    from keyfob.stores import redis as redis_store

    lua = redis_store.LIVENESS_LUA + (  # the function the store runs, read from the store module itself
        "local function opt(x) if x == '' then return nil end return tonumber(x) end\n"
        "return is_live(ARGV[1] ~= '' and ARGV[1] or false, opt(ARGV[2]), tonumber(ARGV[3]),"
        " tonumber(ARGV[4]), tonumber(ARGV[5]), opt(ARGV[6])) and 1 or 0")
    client = redis.Redis.from_url(REDIS_URL)
    try:
        for rec, now, idle in _lua_live_cases():
            args = [
                "" if rec.retired_at is None else repr(rec.retired_at),
                "" if rec.absolute_expires_at is None else repr(rec.absolute_expires_at),
                repr(rec.last_seen_at), repr(rec.expires_at), repr(now), "" if idle is None else repr(idle),
            ]
            got = client.eval(lua, 0, *args)
            assert bool(got) == is_live(rec, now, idle), (rec, now, idle)
    finally:
        client.close()

"""The revocation view across strategies x stores (issue 11): store wipes, horizons, pruning edges.

* A store wipe never resurrects a session: tokens carry the store epoch (``ep``), a fresh engine
  reads the new epoch after ``migrate`` and refuses every token minted before the wipe, and a
  running engine does too once it notices (a token of the new epoch reaches it, or its sweep).
* Every view entry (revoked session, user version, update marker) leaves the view at its horizon
  — and the store, after ``cleanup()`` — and not before; a pruned version never lets a token
  minted before its bump through (pinned at the exact edges).

Time is the fake clock; the sweep is ``fob.view.maintain()`` (what the background task runs).
"""

from __future__ import annotations

import pytest

from keyfob import FakeClock, Issued, Keyfob
from tests.contract.stores_for_strategies import (
    Jar,
    MakeFob,
    make_fob,
    make_store_url,
    strategy,
    wipe_store_url,
)

__all__ = ["make_fob", "make_store_url", "strategy"]  # the fixtures this suite uses

pytestmark = pytest.mark.anyio


def horizon(fob: Keyfob) -> float:
    """How long the view keeps an entry: until the last token it refuses has expired everywhere."""
    s = fob.settings
    return (s.max_age if fob.strategy.name == "jwt" else s.access_ttl) + s.clock_skew


def credential(fob: Keyfob, issued: Issued) -> str:
    token = getattr(issued, "access_token", None)
    assert isinstance(token, str)
    return token


# -- store wipes ---------------------------------------------------------------------------------


async def before_the_wipe(fob: Keyfob) -> tuple[Issued, Issued]:
    """Start ``fob`` and give it two sessions to wipe: alice's, revoked, and bob's, kept."""
    await fob.start()
    revoked = await fob.create("alice")
    kept = await fob.create("bob")
    assert (await fob.revoke(revoked.session.id)) is True
    return revoked, kept


async def test_after_a_wipe_a_fresh_engine_refuses_every_token_minted_before_it(make_fob: MakeFob) -> None:
    before = make_fob()
    revoked, kept = await before_the_wipe(before)
    old_epoch = before.view.epoch
    await wipe_store_url(before.settings.store)
    fresh = make_fob()  # a new process: migrates the wiped store (a new epoch), reads it
    await fresh.start()
    assert fresh.view.epoch != old_epoch
    for issued in (revoked, kept):
        result = await fresh.authenticate_token(credential(fresh, issued))
        assert result.session is None, f"{issued.session.user_id}'s pre-wipe token was accepted"
    after = credential(fresh, await fresh.create("carol"))
    assert (await fresh.authenticate_token(after)).session is not None


async def test_after_a_wipe_a_running_engine_refuses_pre_wipe_tokens_once_it_hears_of_the_new_epoch(
    make_fob: MakeFob,
) -> None:
    running = make_fob()
    revoked, kept = await before_the_wipe(running)
    await wipe_store_url(running.settings.store)
    fresh = make_fob()
    await fresh.start()
    # A token of the new epoch reaches the running engine: the store is asked, the view resets.
    news = await running.authenticate_token(credential(fresh, await fresh.create("carol")))
    assert news.session is not None and news.session.user_id == "carol"
    if running.strategy.name != "database":  # its tokens are rows (the wipe took them): no epoch
        assert running.view.epoch == fresh.view.epoch
    for issued in (revoked, kept):
        assert (await running.authenticate_token(credential(running, issued))).session is None


async def test_after_a_wipe_a_running_engine_refuses_pre_wipe_tokens_after_its_sweep(
    make_fob: MakeFob,
) -> None:
    running = make_fob()
    revoked, kept = await before_the_wipe(running)
    old_epoch = running.view.epoch
    await wipe_store_url(running.settings.store)
    await running.view.maintain()  # the periodic sweep: no epoch, so it migrates the store again
    assert running.view.epoch != old_epoch
    for issued in (revoked, kept):
        assert (await running.authenticate_token(credential(running, issued))).session is None
    fresh = make_fob()
    await fresh.start()
    assert fresh.view.epoch == running.view.epoch  # both processes agree on the new epoch
    made = await running.create("dave")
    assert (await fresh.authenticate_token(credential(fresh, made))).session is not None


# -- horizons ------------------------------------------------------------------------------------


async def test_view_entries_leave_the_view_at_their_horizon_and_the_store_after_cleanup(
    make_fob: MakeFob, clock: FakeClock
) -> None:
    fob = make_fob()
    if fob.strategy.name == "database":
        pytest.skip("the database strategy's tokens are rows: its view holds tombstones until the row's end")
    await fob.start()
    gone = await fob.create("alice")
    changed = await fob.create("carol")
    await fob.revoke(gone.session.id)
    await fob.bump_user_version("bob")
    await fob.update_session(changed.session.id, {"plan": "pro"})
    store, view = fob.store, fob.view
    assert gone.session.id in view.revoked and "bob" in view.min_version and view.updated
    clock.advance(horizon(fob) - 1)
    await view.maintain()
    await fob.cleanup()
    assert gone.session.id in view.revoked and "bob" in view.min_version and view.updated
    assert await store.is_revoked(gone.session.id, now=clock())
    assert dict(await store.user_versions()) == {"bob": 1}
    clock.advance(1)
    await view.maintain()
    assert view.revoked == {} and view.min_version == {} and view.updated == {}
    clock.advance(0.001)  # the stores prune what is *past* its horizon (an entry at it stays)
    await fob.cleanup()
    assert not await store.is_revoked(gone.session.id, now=clock())
    assert dict(await store.user_versions()) == {}
    assert (await store.changes(None, now=clock())).events == []
    assert await store.get_user_version("bob") == 1  # the number itself never goes down


async def test_a_pruned_version_never_lets_a_token_minted_before_the_bump_through(
    make_fob: MakeFob, clock: FakeClock
) -> None:
    fob = make_fob()
    if fob.strategy.name == "database":
        pytest.skip("the database strategy has no token versions in its tokens")
    await fob.start()
    assert clock() == int(clock()), "the worst case: exp = iat + lifetime exactly"
    old = credential(fob, await fob.create("alice"))  # minted at the instant of the bump
    await fob.bump_user_version("alice")
    bumped_at = clock()
    # The last instant the entry is kept: the token must be refused (by the version, or expired).
    clock.advance(horizon(fob) - 0.001)
    await fob.view.maintain()
    assert fob.view.min_version.get("alice") == 1
    assert (await fob.authenticate_token(old)).session is None
    # At the horizon the entry goes; the token had expired by then, by construction.
    clock.now = bumped_at + horizon(fob)
    await fob.view.maintain()
    assert "alice" not in fob.view.min_version
    result = await fob.authenticate_token(old)
    assert result.session is None and result.reason == "session_expired"
    # A token minted now (the view holds no version) is refused by the next bump all the same.
    new = credential(fob, await fob.create("alice"))
    assert (await fob.authenticate_token(new)).session is not None
    await fob.bump_user_version("alice")
    assert (await fob.authenticate_token(new)).session is None


async def test_a_jwt_cookie_from_before_store_epochs_is_accepted_and_reissued_with_the_epoch(
    make_fob: MakeFob, clock: FakeClock
) -> None:
    fob = make_fob()
    if fob.strategy.name != "jwt":
        pytest.skip("jwt only: hybrid refreshes a legacy access token, database tokens are rows")
    await fob.start()
    codec = fob.strategy.codec  # type: ignore[attr-defined]
    legacy = codec.encode({"sub": "alice", "sid": "legacy-sid-0000000000", "ver": 0,
                           "auth_time": int(clock()), "ct": int(clock())}, max_age=3600, now=clock())
    result = await fob.authenticate_token(legacy)
    assert result.session is not None and result.session.user_id == "alice"
    assert result.cookies, "re-issued at once, so the cookie carries the epoch from now on"
    fresh = codec.decode(Jar().apply(result.cookies)[fob.profile(True).session.name], now=clock())
    assert fresh["ep"] == fob.view.epoch is not None
    await fob.revoke("legacy-sid-0000000000")
    assert (await fob.authenticate_token(legacy)).session is None  # still under revocation

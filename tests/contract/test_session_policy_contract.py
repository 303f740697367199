"""Session policy (issue 14), the same contract under jwt, database and hybrid, on every store:
staleness per route, live updates, remember-me, step-up, impersonation, device binding.

Time is a fake clock. "Another node" is a second engine on the same store with no feed, so
nothing reaches it but the store: that is how a revoke the view has not seen is made.
"""

from __future__ import annotations

from typing import Any

import pytest

from keyfob import (
    Event,
    FakeClock,
    ImpersonationRefused,
    Issued,
    Keyfob,
    RequestMeta,
    Session,
    StepUpRequired,
    UpdateRefused,
)
from keyfob.web import SetCookie

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

HOUR, DAY = 3600.0, 86400.0
LAPTOP = RequestMeta(ip="198.51.100.20", user_agent="Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0")
SAME_NET = RequestMeta(ip="198.51.100.77", user_agent="Mozilla/5.0 (X11; Linux x86_64) Firefox/141.0")
IPHONE_UA = "Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X) Version/18.0 Safari/604.1"
PHONE = RequestMeta(ip="203.0.113.9", user_agent=IPHONE_UA)

pytestmark = pytest.mark.anyio


def events_of(fob: Keyfob) -> list[Event]:
    seen: list[Event] = []
    fob.on_event(seen.append)
    return seen


async def signed_in(fob: Keyfob, user: str = "u1", data: dict[str, Any] | None = None,
                    **kw: Any) -> tuple[Jar, Session]:
    issued = await fob.create(user, {"name": "Ada", "role": "admin"} if data is None else data,
                              kw.pop("meta", LAPTOP), **kw)
    return Jar().apply(issued.cookies), issued.session


async def current(fob: Keyfob, jar: Jar, **kw: Any) -> Session | None:
    result = await fob.authenticate(jar, **kw)
    jar.apply(result.cookies)
    return result.session


# -- 1. staleness per route ---------------------------------------------------------------------------------


async def test_max_staleness_zero_sees_a_revoke_the_view_has_not(make_fob: MakeFob, strategy: str) -> None:
    node_a, node_b = make_fob(feed=None), make_fob(feed=None)
    jar, session = await signed_in(node_a)
    assert await current(node_a, jar) is not None
    await node_b.revoke(session.id)  # on another node: only the store knows

    default = await node_a.authenticate(jar)
    if strategy == "database":
        assert default.session is None  # every request is a store check
    else:
        assert default.session is not None  # the view's staleness: this is what None accepts
    confirmed = await node_a.authenticate(jar, max_staleness=0)
    assert confirmed.session is None
    # database: the row is gone and this node saw no tombstone, so it is an unknown token
    assert confirmed.reason == ("invalid_token" if strategy == "database" else "session_revoked")


async def test_a_bound_without_a_feed_is_unknown_so_the_store_answers(make_fob: MakeFob) -> None:
    node_a, node_b = make_fob(feed=None), make_fob(feed=None)
    jar, _ = await signed_in(node_a)
    await node_a.start()
    assert node_a.view.bound is None  # honest: without a feed the view knows only this process
    await node_b.revoke_user("u1")
    assert (await node_a.authenticate(jar, max_staleness=3600)).session is None


async def test_max_staleness_zero_keeps_a_live_session(make_fob: MakeFob) -> None:
    fob = make_fob()
    jar, _ = await signed_in(fob)
    got = await current(fob, jar, max_staleness=0)
    assert got is not None and got.user_id == "u1" and got.data["role"] == "admin"


# -- 2. live session updates --------------------------------------------------------------------------------


async def test_update_session_reaches_the_next_request_without_sign_out(make_fob: MakeFob) -> None:
    fob = make_fob()
    jar, session = await signed_in(fob)
    seen = events_of(fob)
    assert await fob.update_session(session.id, {"role": "viewer"})
    after = await current(fob, jar)
    assert after is not None and after.data["role"] == "viewer" and after.data["name"] == "Ada"
    assert after.user_id == "u1"
    assert any(e.name == "updated" for e in seen)
    again = await current(fob, jar)  # the re-issued cookie carries it: no loop of re-issues
    assert again is not None and again.data["role"] == "viewer"
    assert (await fob.authenticate(jar)).cookies == []


async def test_update_user_sessions_reaches_every_session_of_the_user(make_fob: MakeFob) -> None:
    fob = make_fob()
    laptop, _ = await signed_in(fob, "u1")
    phone, _ = await signed_in(fob, "u1", meta=PHONE)
    other, _ = await signed_in(fob, "u2")
    n = await fob.update_user_sessions("u1", {"role": "viewer"})
    assert n in (2, -1)  # -1: jwt, whose sessions cannot be counted
    for jar in (laptop, phone):
        got = await current(fob, jar)
        assert got is not None and got.data["role"] == "viewer"
    untouched = await current(fob, other)
    assert untouched is not None and untouched.data["role"] == "admin"


async def test_update_of_the_store_confirmed_route_is_visible_at_once(make_fob: MakeFob) -> None:
    fob = make_fob()
    jar, session = await signed_in(fob)
    await fob.update_session(session.id, {"role": "viewer"})
    got = await current(fob, jar, max_staleness=0)
    assert got is not None and got.data["role"] == "viewer"


async def test_client_update_passes_through_the_server_callback(make_fob: MakeFob) -> None:
    def allow_name_only(session: Session, requested: Any) -> dict[str, Any] | None:
        if set(requested) - {"name"}:
            return None
        return {"name": str(requested["name"])[:40]}

    with pytest.raises(UpdateRefused, match="does not accept"):
        plain = make_fob()
        await plain.update_current(Jar().apply((await plain.create("u1", {})).cookies), {"name": "x"})
    fob = make_fob(on_update=allow_name_only)
    jar, _ = await signed_in(fob)
    out = await fob.update_current(jar, {"name": "Grace"})
    jar.apply(out.cookies)
    assert out.session.data["name"] == "Grace"
    got = await current(fob, jar)
    assert got is not None and got.data["name"] == "Grace" and got.data["role"] == "admin"
    with pytest.raises(UpdateRefused):
        await fob.update_current(jar, {"role": "owner"})
    got = await current(fob, jar)
    assert got is not None and got.data["role"] == "admin"


async def test_reserved_policy_key_is_refused_in_app_data(make_fob: MakeFob) -> None:
    fob = make_fob()
    _, session = await signed_in(fob)
    with pytest.raises(ValueError, match="_kf"):
        await fob.update_session(session.id, {"_kf": {"lvl": 2}})
    with pytest.raises(ValueError, match="_kf"):
        await fob.create("u9", {"_kf": {"imp": "x"}})


# -- 3. remember-me -----------------------------------------------------------------------------------------


def _session_cookie(fob: Keyfob, issued: Issued) -> SetCookie:
    name = fob.profile().session.name
    return next(c for c in issued.cookies if c.name == name)


async def test_not_remembered_sign_in_gets_a_browser_session_cookie_and_its_idle_timeout(
        make_fob: MakeFob, clock: FakeClock) -> None:
    fob = make_fob()
    issued = await fob.create("u1", {"role": "user"}, LAPTOP, remember=False)
    assert _session_cookie(fob, issued).max_age is None  # dies with the browser
    assert issued.session.remembered is False
    assert all(c.max_age is None for c in issued.cookies)
    jar = Jar().apply(issued.cookies)
    remembered = await fob.create("u2", {"role": "user"}, LAPTOP, remember=True)
    assert _session_cookie(fob, remembered).max_age == int(fob.settings.max_age)
    kept = Jar().apply(remembered.cookies)

    clock.advance(fob.settings.browser_idle_timeout or 0)  # 12 h idle: the browser session is over
    assert (await fob.authenticate(jar)).session is None
    assert await current(fob, kept) is not None  # the remembered one lives on


async def test_not_remembered_session_stays_a_browser_session_across_rolls_until_its_absolute_end(
        make_fob: MakeFob, clock: FakeClock) -> None:
    fob = make_fob()
    jar = Jar().apply((await fob.create("u1", {}, LAPTOP, remember=False)).cookies)
    rolled: list[SetCookie] = []
    for _ in range(11):  # active every 2 h: the idle timeout never fires
        clock.advance(2 * HOUR)
        result = await fob.authenticate(jar)
        assert result.session is not None and result.session.remembered is False
        rolled += result.cookies
        jar.apply(result.cookies)
    assert rolled and all(c.max_age is None for c in rolled if c.value)
    clock.advance(2 * HOUR)  # 24 h after sign-in: browser_absolute_timeout
    assert (await fob.authenticate(jar)).session is None


async def test_cookie_max_age_is_capped_at_400_days(make_fob: MakeFob) -> None:
    fob = make_fob(max_age=500 * DAY)
    issued = await fob.create("u1", {}, LAPTOP)
    assert _session_cookie(fob, issued).max_age == 400 * 86400


# -- 4. assurance: fresh and level --------------------------------------------------------------------------


async def test_fresh_and_level_answer_step_up_with_a_machine_readable_reason(
        make_fob: MakeFob, clock: FakeClock) -> None:
    fob = make_fob()
    jar, session = await signed_in(fob, amr=["pwd"])
    assert session.amr == ("pwd",) and session.level == 1
    assert fob.step_up(session, fresh=600) is None
    clock.advance(601)
    got = await current(fob, jar)
    assert got is not None
    need = fob.step_up(got, fresh=600)
    assert isinstance(need, StepUpRequired) and need.status_code == 403
    assert need.to_json()["error"] == "step_up_required" and need.to_json()["reason"] == "fresh"
    assert need.to_json()["max_age"] == 600 and "elevate" in need.hint
    level = fob.step_up(got, level=2)
    assert level is not None and level.to_json() | {"hint": ""} == {
        "error": "step_up_required", "reason": "level", "level": 2, "current_level": 1, "hint": ""}


async def test_refresh_roll_and_rotation_never_count_as_fresh(make_fob: MakeFob, clock: FakeClock) -> None:
    fob = make_fob(update_age=HOUR, access_ttl=300)
    jar, session = await signed_in(fob, amr=["pwd"])
    clock.advance(2 * HOUR)  # access token expired (hybrid refreshes), cookie older than update_age (rolls)
    result = await fob.authenticate(jar)
    assert result.cookies  # something was re-issued
    jar.apply(result.cookies)
    assert result.session is not None and not fob.is_fresh(result.session, 600)
    assert result.session.authenticated_at == pytest.approx(session.authenticated_at, abs=1)
    rotated = await fob.rotate(jar)
    jar.apply(rotated.cookies)
    assert not fob.is_fresh(rotated.session, 600)
    after = await current(fob, jar)
    assert after is not None and fob.step_up(after, fresh=600) is not None


async def test_elevate_records_the_method_raises_the_level_and_issues_a_new_token(
        make_fob: MakeFob, clock: FakeClock) -> None:
    fob = make_fob()
    jar, _ = await signed_in(fob, amr=["pwd"])
    old = Jar(jar)
    clock.advance(HOUR)
    seen = events_of(fob)
    got = await current(fob, jar)
    assert got is not None
    issued = await fob.elevate(got, "otp", cookies=jar)
    jar.apply(issued.cookies)
    assert issued.session.amr == ("pwd", "otp") and issued.session.level == 2
    assert [e.name for e in seen].count("elevated") == 1
    after = await current(fob, jar)
    assert after is not None and after.level == 2 and "otp" in after.amr
    assert fob.step_up(after, fresh=600, level=2) is None
    assert (await fob.authenticate(old)).session is None  # ASVS 7.2.4: the pre-elevation token is dead
    clock.advance(601)
    later = await current(fob, jar)
    assert later is not None and later.level == 2 and fob.step_up(later, fresh=600) is not None


# -- 5. impersonation ---------------------------------------------------------------------------------------


async def test_impersonation_start_stop_and_audit(make_fob: MakeFob, strategy: str) -> None:
    fob = make_fob()
    seen = events_of(fob)
    admin_jar, admin = await signed_in(fob, "admin-1", {"name": "Root", "role": "admin"})
    issued = await fob.impersonate(admin, "u2", data={"name": "Bob", "role": "user"}, cookies=admin_jar)
    jar = Jar(admin_jar).apply(issued.cookies)
    acting = await current(fob, jar)
    assert acting is not None and acting.user_id == "u2" and acting.impersonated_by == "admin-1"
    assert acting.data["name"] == "Bob"
    started = next(e for e in seen if e.name == "impersonation_started")
    assert started.user_id == "u2" and started.detail["admin"] == "admin-1"
    devices = await fob.list_sessions("u2")
    if strategy != "jwt":  # jwt keeps no device list at all
        assert [d.impersonated_by for d in devices] == ["admin-1"]
        assert devices[0].to_json()["impersonated_by"] == "admin-1"

    back = await fob.stop_impersonating(jar)
    assert back is not None
    imp_jar = Jar(jar)
    jar.apply(back.cookies)
    me = await current(fob, jar)
    assert me is not None and me.user_id == "admin-1" and me.impersonated_by is None
    assert (await fob.authenticate(imp_jar)).session is None  # the impersonation is over
    stopped = next(e for e in seen if e.name == "impersonation_stopped")
    assert stopped.detail["admin"] == "admin-1" and stopped.detail["resumed"] is True


async def test_impersonation_ends_at_its_ttl(make_fob: MakeFob, clock: FakeClock) -> None:
    fob = make_fob()
    _, admin = await signed_in(fob, "admin-1")
    jar = Jar().apply((await fob.impersonate(admin, "u2", ttl=600, data={"role": "user"})).cookies)
    clock.advance(599)
    assert await current(fob, jar) is not None
    clock.advance(2)
    assert (await fob.authenticate(jar)).session is None


async def test_impersonating_an_admin_needs_explicit_permission_and_never_nests(make_fob: MakeFob) -> None:
    fob = make_fob()
    _, admin = await signed_in(fob, "admin-1")
    with pytest.raises(ImpersonationRefused, match="admin"):
        await fob.impersonate(admin, "admin-2", data={"role": "admin"})
    allowed = await fob.impersonate(admin, "admin-2", data={"role": "admin"}, allow_admin=True)
    assert allowed.session.impersonated_by == "admin-1"
    with pytest.raises(ImpersonationRefused, match="already"):
        await fob.impersonate(allowed.session, "u3", data={"role": "user"})


# -- 6. binding ---------------------------------------------------------------------------------------------


async def test_soft_binding_makes_a_moved_session_not_fresh(make_fob: MakeFob) -> None:
    fob = make_fob(bind="soft")
    seen = events_of(fob)
    jar, _ = await signed_in(fob, amr=["pwd"])
    same = await current(fob, jar, meta=SAME_NET, max_staleness=0)  # same /24, browser updated: no change
    assert same is not None and fob.is_fresh(same, 600)
    moved = await current(fob, jar, meta=PHONE, max_staleness=0)
    assert moved is not None and not fob.is_fresh(moved, 600)
    assert [e.name for e in seen].count("binding_mismatch") == 1
    later = await current(fob, jar, meta=PHONE, max_staleness=0)
    assert later is not None and not fob.is_fresh(later, 600)  # stays stale, no second event
    assert [e.name for e in seen].count("binding_mismatch") == 1
    issued = await fob.elevate(later, "pwd", cookies=jar, meta=PHONE)  # re-authenticated: re-bound here
    jar.apply(issued.cookies)
    rebound = await current(fob, jar, meta=PHONE, max_staleness=0)
    assert rebound is not None and fob.is_fresh(rebound, 600)


async def test_strict_binding_revokes_a_moved_session_with_an_event(make_fob: MakeFob) -> None:
    fob = make_fob(bind="strict")
    seen = events_of(fob)
    jar, session = await signed_in(fob)
    assert await current(fob, jar, meta=SAME_NET, max_staleness=0) is not None
    moved = await fob.authenticate(jar, meta=PHONE, max_staleness=0)
    assert moved.session is None and moved.reason == "session_revoked"
    assert any(e.name == "binding_mismatch" and e.session_id == session.id for e in seen)
    assert (await fob.authenticate(Jar(jar))).session is None  # revoked, from the laptop too


# -- 1b. store outage: fail closed, unless the route opts in to the view for N seconds ---------------


class OutageStore:
    """A memory store that can be taken down: every call raises StoreUnavailable while ``down``."""

    def __init__(self, url: str) -> None:
        from keyfob.stores.memory import MemoryStore

        self.inner = MemoryStore(url)
        self.down = False

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if not callable(attr) or name.startswith("_"):
            return attr

        async def call(*args: Any, **kw: Any) -> Any:
            from keyfob import StoreUnavailable

            if self.down:
                raise StoreUnavailable("the test store is down")
            return await attr(*args, **kw)

        return call


@pytest.mark.parametrize("strategy", STRATEGIES)
async def test_outage_fails_closed_unless_the_route_accepts_the_view_for_n_seconds(
        strategy: str, clock: FakeClock, tmp_path: Any) -> None:
    from keyfob import StoreUnavailable
    from keyfob.stores.memory import MemoryFeed

    url = f"memory://outage-{tmp_path.name}"
    store, feed = OutageStore(url), MemoryFeed(url)
    fob = Keyfob(strategy=strategy, secret=SECRET, store=store, feed=feed, clock=clock)  # type: ignore[arg-type]
    try:
        seen = events_of(fob)
        jar, _ = await signed_in(fob)
        await feed.disconnect()  # the broker and the store go down together
        store.down = True
        clock.advance(1)
        with pytest.raises(StoreUnavailable):
            await fob.authenticate(jar, max_staleness=0)  # fail closed is the default
        if strategy == "database":  # an opaque token: nothing to answer from, whatever the route says
            with pytest.raises(StoreUnavailable):
                await fob.authenticate(jar, max_staleness=0, outage_grace=30)
            return
        with pytest.raises(StoreUnavailable):
            await fob.authenticate(jar)  # the view is not live: the default route checks the store
        served = await fob.authenticate(jar, outage_grace=30)
        assert served.session is not None and served.session.user_id == "u1"
        used = [e for e in seen if e.name == "served_from_view"]
        assert len(used) == 1 and used[0].detail["outage_seconds"] >= 0
        clock.advance(31)  # past the route's grace: closed again
        with pytest.raises(StoreUnavailable):
            await fob.authenticate(jar, outage_grace=30)
        store.down = False
        await feed.reconnect()
        assert (await fob.authenticate(jar)).session is not None
    finally:
        store.down = False
        await fob.close()


# -- 2b. live updates reach another node through the feed ---------------------------------------------------


async def _eventually(check: Any, *, tries: int = 200) -> None:
    import asyncio

    for _ in range(tries):
        if await check():
            return
        await asyncio.sleep(0.01)
    assert await check()


async def test_update_session_reaches_the_next_request_on_another_node(make_fob: MakeFob) -> None:
    node_a, node_b = make_fob(), make_fob()
    jar, session = await signed_in(node_a)
    await node_b.start()
    assert await current(node_b, jar) is not None
    await node_a.update_session(session.id, {"role": "viewer"})

    async def seen_on_b() -> bool:
        got = await node_b.authenticate(Jar(jar))
        return got.session is not None and got.session.data["role"] == "viewer"

    await _eventually(seen_on_b)


async def test_update_reaches_a_node_without_a_feed_at_its_next_roll(make_fob: MakeFob, strategy: str,
                                                                    clock: FakeClock) -> None:
    node_a, node_b = make_fob(feed=None), make_fob(feed=None)
    jar, session = await signed_in(node_a)
    await node_b.start()
    n = await node_a.update_user_sessions("u1", {"role": "viewer"})
    assert n in (1, -1)
    await node_a.update_session(session.id, {"name": "Grace"})
    before = await node_b.authenticate(Jar(jar))
    assert before.session is not None
    if strategy == "jwt":  # nothing reached node b: the cookie is the session until it rolls
        assert before.session.data["role"] == "admin"
    else:  # database reads the row; hybrid refreshes from it (the marker is in the store's list)
        pass
    clock.advance(node_b.settings.update_age)
    after = await current(node_b, jar)
    assert after is not None and after.data["role"] == "viewer" and after.data["name"] == "Grace"


async def test_route_parameters_pass_through_an_observed_engine(make_fob: MakeFob) -> None:
    fob = make_fob()
    seen: list[tuple[str, str]] = []
    fob.observe(lambda op, result, _seconds: seen.append((op, result)))  # keyfob.metrics wraps these
    jar, _ = await signed_in(fob)
    assert (await fob.authenticate(jar, max_staleness=0, meta=LAPTOP)).session is not None
    token = (await fob.create("u2", {})).access_token
    assert token is not None and (await fob.authenticate_token(token, max_staleness=0)).session is not None
    assert seen == [("authenticate", "ok"), ("authenticate", "ok")]

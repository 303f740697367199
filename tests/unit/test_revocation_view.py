"""The revocation view: what feed events it accepts, what it publishes, what it prunes, how it falls back."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest

from keyfob import FakeClock, SessionRevoked, StoreUnavailable
from keyfob.stores import ChangePage
from keyfob.stores.memory import MemoryStore
from keyfob.strategies import RevocationView
from keyfob.strategies._revocation import PAGE

pytestmark = pytest.mark.anyio


class RecordingFeed:
    """A feed that keeps what it was asked to publish (the in-process part of a real one)."""

    def __init__(self) -> None:
        self.published: list[Mapping[str, Any]] = []

    async def publish(self, event: Mapping[str, Any]) -> None:
        self.published.append(dict(event))

    async def start(self, handler: Any, on_state: Any) -> None:
        await on_state(True)

    async def close(self) -> None:
        pass


@pytest.fixture
def view(clock: FakeClock) -> RevocationView:
    return RevocationView(MemoryStore(), RecordingFeed(), clock)


@pytest.mark.parametrize("event", [
    {"t": "sid", "sid": 5, "until": 2e9},
    {"t": "sid", "sid": "s1", "until": "2e9"},
    {"t": "sid", "sid": "s1"},
    {"t": "sid", "until": 2e9},
    {"t": "ver", "user": "u1", "ver": "3"},
    {"t": "ver", "user": "u1", "ver": 2.0},
    {"t": "ver", "user": 1, "ver": 3},
    {"t": "ver", "user": "u1", "ver": True},
    {"t": "nope", "sid": "s1", "until": 2e9},
    {},
])
def test_malformed_feed_events_change_nothing(view: RevocationView, event: dict[str, Any]) -> None:
    view.apply(event)
    assert view.revoked == {} and view.min_version == {}


def test_feed_events_only_ever_raise_what_the_view_refuses(view: RevocationView) -> None:
    view.apply({"t": "sid", "sid": "s1", "until": 2e9})
    view.apply({"t": "sid", "sid": "s1", "until": 1e9})
    assert view.revoked == {"s1": 2e9}
    view.apply({"t": "ver", "user": "u1", "ver": 3})
    view.apply({"t": "ver", "user": "u1", "ver": 2})
    assert view.min_version == {"u1": 3}
    assert view.check_live("s1", "u9", 0) and view.check_live("s2", "u1", 2)
    assert not view.check_live("s2", "u1", 3)


async def test_bump_is_stored_applied_and_published_with_its_horizon(view: RevocationView,
                                                                     clock: FakeClock) -> None:
    until = clock() + 630
    assert await view.bump("u1", until=until) == 1
    assert await view.bump("u1", until=until + 5) == 2
    assert view.min_version == {"u1": 2} and view.version_until == {"u1": until + 5}
    assert await view.store.get_user_version("u1") == 2
    assert isinstance(view.feed, RecordingFeed)
    # published copies carry the horizon and the publisher's clock ("at": keyfob.metrics' propagation)
    assert view.feed.published == [{"t": "ver", "user": "u1", "ver": 1, "until": until, "at": clock()},
                                   {"t": "ver", "user": "u1", "ver": 2, "until": until + 5, "at": clock()}]
    assert [e["until"] for e in (await view.store.changes(None, now=clock())).events] == [until, until + 5]


async def test_revoke_is_stored_applied_and_published(view: RevocationView, clock: FakeClock) -> None:
    await view.revoke("s1", until=clock() + 60)
    assert view.revoked == {"s1": clock() + 60}
    assert dict(await view.store.revocations(clock())) == {"s1": clock() + 60}
    assert isinstance(view.feed, RecordingFeed)
    assert view.feed.published == [{"t": "sid", "sid": "s1", "until": clock() + 60, "at": clock()}]


async def test_prune_drops_every_kind_of_entry_at_its_horizon_and_not_before(
    view: RevocationView, clock: FakeClock
) -> None:
    now = clock()
    view.apply({"t": "sid", "sid": "s-old", "until": now + 10})
    view.apply({"t": "sid", "sid": "u:s-upd", "until": now + 10})  # an update marker
    view.apply({"t": "ver", "user": "u-old", "ver": 3, "until": now + 10})
    view.apply({"t": "sid", "sid": "s-new", "until": now + 20})
    view.apply({"t": "ver", "user": "u-new", "ver": 1, "until": now + 20})
    view.apply({"t": "ver", "user": "u-forever", "ver": 1, "until": None})  # no horizon: kept
    view.apply({"t": "ver", "user": "u-legacy", "ver": 2})  # an older node's event: kept
    clock.advance(9.999)
    assert await view.prune() == 0
    assert view.check_live("s-old", "x", 0) and view.check_live("s", "u-old", 2)
    clock.advance(0.001)  # until == now: no token an entry refuses is still valid
    assert await view.prune() == 3
    assert set(view.revoked) == {"s-new"} and view.updated == {}
    assert view.min_version == {"u-new": 1, "u-forever": 1, "u-legacy": 2}
    assert not view.check_live("s-old", "u-old", 0)
    clock.advance(1e9)
    assert await view.prune() == 2
    assert view.revoked == {} and view.min_version == {"u-forever": 1, "u-legacy": 2}


async def test_a_late_echo_of_an_event_at_its_horizon_does_not_bring_the_pruned_entry_back(
    view: RevocationView, clock: FakeClock
) -> None:
    bump = {"t": "ver", "user": "alice", "ver": 1, "until": clock() + 10}
    revoke = {"t": "sid", "sid": "s1", "until": clock() + 10}
    view.apply(bump)
    view.apply(revoke)
    clock.advance(10)
    assert await view.prune() == 2
    view.apply(bump)  # the feed's copies arrive after the sweep (a loaded server, a slow NOTIFY)
    view.apply(revoke)
    assert view.revoked == {} and view.min_version == {} and view.version_until == {}
    view.apply({**bump, "until": clock() + 0.001})  # not yet at its horizon: applied
    assert view.min_version == {"alice": 1}


async def test_a_later_bump_keeps_the_version_until_the_latest_horizon(view: RevocationView,
                                                                       clock: FakeClock) -> None:
    now = clock()
    view.apply({"t": "ver", "user": "u1", "ver": 2, "until": now + 50})
    view.apply({"t": "ver", "user": "u1", "ver": 1, "until": now + 10})  # arrived late: changes nothing
    assert view.min_version == {"u1": 2} and view.version_until == {"u1": now + 50}
    clock.advance(20)
    await view.prune()
    assert view.min_version == {"u1": 2}
    clock.advance(30)
    await view.prune()
    assert view.min_version == {} and view.version_until == {}


async def test_prune_of_a_big_view_lets_the_loop_run(view: RevocationView, clock: FakeClock) -> None:
    now = clock()
    for i in range(20_000):
        view.revoked[f"s{i}"] = now - 1
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    before = ticks
    assert await view.prune() == 20_000
    task.cancel()
    assert ticks - before >= 3, "the sweep never yielded to the loop"


async def test_without_the_feed_checks_go_to_the_store(view: RevocationView, clock: FakeClock) -> None:
    view.live = False
    await view.store.add_revocation("s1", until=clock() + 60)
    with pytest.raises(SessionRevoked):
        await view.check("s1", "u1", 0, session_must_exist=False)
    await view.check("s2", "u1", 0, session_must_exist=False)
    await view.store.bump_user_version("u1")
    with pytest.raises(SessionRevoked):
        await view.check("s2", "u1", 0, session_must_exist=False)
    await view.check("s2", "u1", 1, session_must_exist=False)
    with pytest.raises(SessionRevoked):
        await view.check("s2", "u1", 1, session_must_exist=True)  # no such stored session


async def test_feed_back_resyncs_before_going_live(view: RevocationView, clock: FakeClock) -> None:
    await view._on_state(False)
    assert not view.live
    await view.store.add_revocation("s1", until=clock() + 60)
    await view.store.bump_user_version("u1", until=clock() + 60)
    await view._on_state(True)
    assert view.live and view.revoked == {"s1": clock() + 60} and view.min_version == {"u1": 1}


def test_without_a_feed_the_view_is_the_whole_truth_from_the_start(clock: FakeClock) -> None:
    assert RevocationView(MemoryStore(), None, clock).live, "no feed: its own revocations are all there is"
    assert not RevocationView(MemoryStore(), RecordingFeed(), clock).live, "a feed: live only once it is up"


async def test_close_closes_the_feed(clock: FakeClock) -> None:
    feed = RecordingFeed()
    closed: list[bool] = []

    async def close() -> None:
        closed.append(True)

    feed.close = close  # type: ignore[method-assign]
    await RevocationView(MemoryStore(), feed, clock).close()
    assert closed == [True]
    await RevocationView(MemoryStore(), None, clock).close()  # nothing to close, no error


class CountingStore(MemoryStore):
    """The memory store, counting the calls the view makes (and refusing whole-list reads)."""

    def __init__(self, url: str = "memory://") -> None:
        super().__init__(url)
        self.pages: list[tuple[str | None, int]] = []

    async def changes(self, cursor: str | None, *, now: float, limit: int = 1000) -> ChangePage:
        page = await super().changes(cursor, now=now, limit=limit)
        self.pages.append((cursor, len(page.events)))
        return page

    async def revocations(self, now: float) -> Mapping[str, float]:
        raise AssertionError("the view read the whole revocation list")

    async def user_versions(self) -> Mapping[str, int]:
        raise AssertionError("the view read every user version")


async def test_resync_pages_through_the_change_log_and_then_reads_only_what_is_new(clock: FakeClock) -> None:
    store = CountingStore()
    await store.migrate()
    now = clock()
    for i in range(600):
        await store.add_revocation(f"s{i}", until=now + 60)
    view = RevocationView(store, RecordingFeed(), clock)
    await view.start()
    try:
        assert view.live and len(view.revoked) == 600
        assert [n for _, n in store.pages] == [PAGE, PAGE, 100]
        assert store.pages[0][0] is None  # the first load reads from the start
        await view._on_state(False)
        await store.add_revocation("late", until=now + 60)
        await store.bump_user_version("u1", until=now + 60)
        store.pages.clear()
        await view._on_state(True)
        assert view.live and "late" in view.revoked and view.min_version == {"u1": 1}
        assert len(store.pages) == 1 and store.pages[0][1] == 2 and store.pages[0][0] is not None
    finally:
        await view.close()


async def test_store_checks_are_point_lookups(clock: FakeClock) -> None:
    store = CountingStore()
    await store.migrate()
    view = RevocationView(store, RecordingFeed(), clock)
    await view.start()
    try:
        view.live = False
        await store.add_revocation("s1", until=clock() + 60)
        with pytest.raises(SessionRevoked):
            await view.check("s1", "u1", 0, session_must_exist=False)
        await view.check("s2", "u1", 0, session_must_exist=False)  # no whole-list read (it raises)
    finally:
        await view.close()


class StuckStore(MemoryStore):
    """A broken change log: always "more", never an event, never a new cursor."""

    async def changes(self, cursor: str | None, *, now: float, limit: int = 1000) -> ChangePage:
        return ChangePage([], cursor or "0", True)


async def test_a_change_log_that_says_more_but_gives_nothing_does_not_hang_the_resync(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    view = RevocationView(StuckStore(), RecordingFeed(), clock)
    await asyncio.wait_for(view.start(), 5)
    await view.close()
    assert "said more but gave nothing" in caplog.text


async def test_a_wipe_is_noticed_at_the_sweep_and_the_view_reloads_from_the_new_log(clock: FakeClock) -> None:
    url = f"memory://view-wipe-{id(clock)}"
    store = MemoryStore(url)
    await store.migrate()
    view = RevocationView(store, RecordingFeed(), clock, migrate=store.migrate)
    await view.start()
    try:
        before = view.epoch
        assert before is not None and before == await store.epoch()
        await view.revoke("s-old", until=clock() + 60)
        MemoryStore.wipe(url)
        other = MemoryStore(url)
        await other.migrate()  # a fresh process migrates the wiped store: a new epoch
        await other.add_revocation("s-new", until=clock() + 60)
        await view.maintain()
        assert view.epoch == await store.epoch() and view.epoch not in (None, before)
        assert view.revoked == {"s-new": clock() + 60}, "reset, then reloaded from the new log"
    finally:
        await view.close()


async def test_a_wiped_store_without_an_epoch_is_migrated_again_by_the_view(clock: FakeClock) -> None:
    url = f"memory://view-remigrate-{id(clock)}"
    store = MemoryStore(url)
    await store.migrate()
    view = RevocationView(store, None, clock, migrate=store.migrate)
    await view.start()
    try:
        before = view.epoch
        MemoryStore.wipe(url)
        assert await store.epoch() is None
        await view.maintain()
        assert view.epoch is not None and view.epoch != before and view.epoch == await store.epoch()
    finally:
        await view.close()


async def test_a_token_of_another_epoch_is_refused_unless_the_store_moved_to_it(clock: FakeClock) -> None:
    url = f"memory://view-epoch-{id(clock)}"
    store = MemoryStore(url)
    await store.migrate()
    view = RevocationView(store, RecordingFeed(), clock)
    await view.start()
    try:
        old = view.epoch
        await view.check_epoch(old)
        with pytest.raises(SessionRevoked):
            await view.check_epoch("not-an-epoch-000")
        MemoryStore.wipe(url)
        await store.migrate()
        new = await store.epoch()
        view._epoch_checked = float("-inf")  # the once-a-second limit on store reads has passed
        await view.check_epoch(new)  # news of the wipe: the view moves to the new epoch
        assert view.epoch == new
        with pytest.raises(SessionRevoked):
            await view.check_epoch(old)
    finally:
        await view.close()


async def test_close_cancels_the_sweep_task_and_returns(clock: FakeClock) -> None:
    view = RevocationView(MemoryStore(), RecordingFeed(), clock)
    await view.start()
    task = view._task
    assert task is not None and not task.done()
    await asyncio.wait_for(view.close(), 5)
    assert task.done() and view._task is None


def test_close_on_another_loop_cancels_the_sweep_where_it_runs(clock: FakeClock) -> None:
    # Flask and Django run the engine on a loop of their own; close() may come from a test's loop.
    home = asyncio.new_event_loop()
    try:
        view = RevocationView(MemoryStore(), None, clock)
        home.run_until_complete(view.start())
        task = view._task
        assert task is not None
        asyncio.run(asyncio.wait_for(view.close(), 5))
        home.run_until_complete(asyncio.sleep(0.01))
        assert task.cancelled()
    finally:
        home.close()


class FlakyStore(MemoryStore):
    """The memory store, whose change log is out of reach while ``down``."""

    down = False

    async def changes(self, cursor: str | None, *, now: float, limit: int = 1000) -> ChangePage:
        if self.down:
            raise StoreUnavailable("down for the test")
        return await super().changes(cursor, now=now, limit=limit)


async def test_a_resync_stopped_by_a_store_outage_is_retried_at_the_next_sweep(clock: FakeClock) -> None:
    store = FlakyStore()
    await store.migrate()
    view = RevocationView(store, RecordingFeed(), clock)
    await view.start()
    try:
        await view._on_state(False)
        store.down = True
        await store.add_revocation("s1", until=clock() + 60)
        await view._on_state(True)  # the feed is back, the store is not: store checks go on
        assert not view.live
        store.down = False
        await view.maintain()
        assert view.live and "s1" in view.revoked
    finally:
        await view.close()

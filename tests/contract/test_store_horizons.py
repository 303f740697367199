"""Store protocol additions of issue 11 (STORE_SPEC.md), on every store kind.

The epoch that ``migrate`` creates and a wipe loses; ``is_revoked``; the change log read by
``changes`` (pages, cursors, horizons); horizons pruned by ``delete_expired``; namespaces that
never see each other (rows and feeds); concurrent ``migrate`` of a fresh store. Time is the
``clock`` fixture: stores take ``now`` from the caller, so nothing here sleeps.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import pytest

from keyfob._clock import FakeClock
from keyfob.stores import ChangePage, RevocationFeed, SessionRecord, SessionStore, open_store
from tests.contract.conftest import MakeStore

pytestmark = pytest.mark.anyio

Namespace = Callable[[str], dict[str, Any]]
Wipe = Callable[[], Awaitable[None]]


@pytest.fixture(autouse=True)
def _the_store_implements_store_spec(store_url: str) -> None:
    """Until a store kind implements STORE_SPEC.md (Redis: the redis engineer's branch), say so
    instead of failing on AttributeError; the guard goes quiet once it does."""
    from keyfob import stores

    cls = stores._load(stores._STORES, store_url, "store")
    missing = [m for m in ("epoch", "changes", "is_revoked", "feed") if not hasattr(cls, m)]
    if missing:
        pytest.skip(f"{cls.__name__} does not implement STORE_SPEC.md yet ({', '.join(missing)})")


def sid_event(sid: str, until: float) -> dict[str, Any]:
    return {"t": "sid", "sid": sid, "until": until}


def ver_event(user: str, ver: int, until: float | None) -> dict[str, Any]:
    return {"t": "ver", "user": user, "ver": ver, "until": until}


async def read_all(store: SessionStore, cursor: str | None, now: float, limit: int = 1000) -> ChangePage:
    """Every event after ``cursor``, paging with ``limit``; the last page's cursor."""
    events: list[dict[str, Any]] = []
    for _ in range(100):
        page = await store.changes(cursor, now=now, limit=limit)
        assert len(page.events) <= limit
        events.extend(page.events)
        cursor = page.cursor
        if not page.more:
            return ChangePage(events, page.cursor, False)
    raise AssertionError("changes() kept saying more=True")


# -- epoch ---------------------------------------------------------------------------------------


async def test_migrate_creates_one_epoch_that_every_store_object_on_the_url_reads(
    make_store: MakeStore,
) -> None:
    a = await make_store()
    b = await make_store()
    epoch = await a.epoch()
    assert isinstance(epoch, str) and len(epoch) >= 16
    assert await b.epoch() == epoch
    await b.migrate()
    await a.migrate()
    assert await a.epoch() == await b.epoch() == epoch


async def test_epoch_is_absent_before_the_first_migrate(make_store: MakeStore) -> None:
    store = await make_store(migrate=False)
    assert await store.epoch() is None
    await store.migrate()
    assert await store.epoch() is not None


async def test_a_wipe_loses_the_epoch_and_the_next_migrate_creates_a_new_one(
    make_store: MakeStore, wipe_store: Wipe, clock: FakeClock
) -> None:
    a = await make_store()
    b = await make_store()
    before = await a.epoch()
    await a.add_revocation("s1", until=clock() + 60)
    await wipe_store()
    assert await a.epoch() is None
    assert await b.epoch() is None
    await b.migrate()
    after = await a.epoch()
    assert after is not None and after != before
    assert await b.epoch() == after
    assert not await a.is_revoked("s1", now=clock())  # the wipe did lose the data


async def test_concurrent_migrate_of_a_fresh_store_never_fails_and_agrees_on_one_epoch(
    store_url: str, store_options: dict[str, Any], make_store: MakeStore
) -> None:
    # make_store emptied this process's corner of the server; now 4 threads, each with its own
    # event loop and store object, migrate it at the same moment.
    await make_store(migrate=False)
    start = threading.Barrier(4)

    def migrate_in_a_thread() -> str | None:
        async def go() -> str | None:
            store = open_store(store_url, **store_options)
            try:
                start.wait(timeout=30)
                await store.migrate()
                return await store.epoch()
            finally:
                await store.close()

        return asyncio.run(go())

    epochs = await asyncio.gather(*(asyncio.to_thread(migrate_in_a_thread) for _ in range(4)))
    assert None not in epochs and len(set(epochs)) == 1
    assert await (await make_store()).epoch() == epochs[0]


# -- is_revoked ----------------------------------------------------------------------------------


async def test_is_revoked_answers_for_one_session_until_its_horizon(
    store: SessionStore, clock: FakeClock
) -> None:
    now = clock()
    await store.add_revocation("s1", until=now + 60)
    await store.add_revocation("s1", until=now + 30)  # idempotent: the later horizon stays
    assert await store.is_revoked("s1", now=now)
    assert not await store.is_revoked("s2", now=now)
    assert await store.is_revoked("s1", now=now + 59.5)
    assert not await store.is_revoked("s1", now=now + 60)  # ``until`` must be after ``now``


# -- the change log ------------------------------------------------------------------------------


async def test_changes_from_the_start_hold_revocations_and_bumps_oldest_first(
    store: SessionStore, clock: FakeClock
) -> None:
    now = clock()
    empty = await store.changes(None, now=now)
    assert empty.events == [] and not empty.more and isinstance(empty.cursor, str)
    assert await store.bump_user_version("u1", until=now + 100) == 1
    await store.add_revocation("s1", until=now + 50)
    assert await store.bump_user_version("u1") == 2  # until=None: kept forever
    page = await store.changes(None, now=now)
    assert page.events == [ver_event("u1", 1, now + 100), sid_event("s1", now + 50), ver_event("u1", 2, None)]
    assert not page.more
    assert await store.changes(empty.cursor, now=now) == page  # the empty log's cursor loses nothing


async def test_changes_page_through_with_limit_and_resume_after_a_cursor(
    store: SessionStore, clock: FakeClock
) -> None:
    now = clock()
    for i in range(5):
        await store.add_revocation(f"s{i}", until=now + 100 + i)
    first = await store.changes(None, now=now, limit=2)
    assert first.events == [sid_event("s0", now + 100), sid_event("s1", now + 101)] and first.more
    second = await store.changes(first.cursor, now=now, limit=2)
    assert second.events == [sid_event("s2", now + 102), sid_event("s3", now + 103)] and second.more
    third = await store.changes(second.cursor, now=now, limit=2)
    assert third.events == [sid_event("s4", now + 104)] and not third.more
    caught_up = await store.changes(third.cursor, now=now, limit=2)
    assert caught_up.events == [] and not caught_up.more

    await store.bump_user_version("u1", until=now + 10)
    await store.add_revocation("s5", until=now + 200)
    later = await read_all(store, caught_up.cursor, now)
    assert later.events == [ver_event("u1", 1, now + 10), sid_event("s5", now + 200)]
    assert (await store.changes(later.cursor, now=now)).events == []
    # from the start, in pages of one, the whole log again
    assert len((await read_all(store, None, now, limit=1)).events) == 7


async def test_changes_never_return_an_entry_past_its_horizon(store: SessionStore, clock: FakeClock) -> None:
    now = clock()
    start = await store.changes(None, now=now)
    await store.add_revocation("short", until=now + 10)
    await store.bump_user_version("u-short", until=now + 10)
    await store.add_revocation("long", until=now + 100)
    await store.bump_user_version("u-forever")
    clock.advance(11)
    keep = [sid_event("long", now + 100), ver_event("u-forever", 1, None)]
    assert (await read_all(store, None, clock())).events == keep
    assert (await read_all(store, start.cursor, clock())).events == keep
    assert (await read_all(store, None, clock(), limit=1)).events == keep
    await store.delete_expired(clock())
    assert (await read_all(store, start.cursor, clock())).events == keep
    clock.advance(100)
    assert (await read_all(store, None, clock())).events == [ver_event("u-forever", 1, None)]


# -- horizons pruned by delete_expired -----------------------------------------------------------


async def test_versions_leave_the_view_after_their_horizon_but_never_go_down(
    store: SessionStore, clock: FakeClock
) -> None:
    now = clock()
    assert await store.bump_user_version("u1", until=now + 10) == 1
    assert await store.bump_user_version("u2") == 1
    assert await store.bump_user_version("u3", until=now + 10) == 1
    assert await store.bump_user_version("u3", until=now + 50) == 2  # the later horizon replaces it
    assert dict(await store.user_versions()) == {"u1": 1, "u2": 1, "u3": 2}
    clock.advance(11)
    assert await store.delete_expired(clock()) == 0  # no session rows: versions are not counted
    assert dict(await store.user_versions()) == {"u2": 1, "u3": 2}
    clock.advance(40)
    await store.delete_expired(clock())
    assert dict(await store.user_versions()) == {"u2": 1}
    assert (await read_all(store, None, clock())).events == [ver_event("u2", 1, None)]
    # A token minted after a bump carries its number; the next bump must refuse that token.
    assert await store.get_user_version("u1") == 1
    assert await store.get_user_version("u3") == 2
    assert await store.bump_user_version("u1", until=clock() + 10) == 2


async def test_delete_expired_prunes_revocations_and_their_log_entries(
    store: SessionStore, clock: FakeClock
) -> None:
    now = clock()
    for i in range(30):
        await store.add_revocation(f"old{i}", until=now + 5)
    await store.add_revocation("new", until=now + 500)
    clock.advance(6)
    while await store.delete_expired(clock(), batch=7) >= 7:
        pass
    assert dict(await store.revocations(clock())) == {"new": now + 500}
    assert not await store.is_revoked("old3", now=clock())
    assert (await read_all(store, None, clock())).events == [sid_event("new", now + 500)]


async def test_delete_expired_still_deletes_only_expired_sessions(
    store: SessionStore, clock: FakeClock
) -> None:
    now = clock()
    await store.add(SessionRecord(b"k" * 32, "sid-k", "alice", now, now, now + 100))
    await store.add(SessionRecord(b"g" * 32, "sid-g", "alice", now, now, now + 5))
    await store.add_revocation("x", until=now + 5)
    clock.advance(6)
    assert await store.delete_expired(clock()) == 1
    assert await store.get(b"k" * 32) is not None and await store.get(b"g" * 32) is None


# -- namespaces ----------------------------------------------------------------------------------


async def test_two_namespaces_on_one_server_keep_their_own_rows(
    make_store: MakeStore, namespace_options: Namespace, clock: FakeClock
) -> None:
    now = clock()
    a = await make_store(**namespace_options("a"))
    b = await make_store(**namespace_options("b"))
    assert a.namespace != b.namespace and a.namespace and b.namespace  # type: ignore[attr-defined]
    await a.add(SessionRecord(b"a" * 32, "sid-a", "42", now, now, now + 100))
    await a.add_revocation("sid-x", until=now + 100)
    assert await a.bump_user_version("42", until=now + 100) == 1
    assert await b.get(b"a" * 32) is None and await b.get_by_id("sid-a") is None
    assert await b.list_user("42") == []
    assert not await b.is_revoked("sid-x", now=now) and dict(await b.revocations(now)) == {}
    assert await b.get_user_version("42") == 0 and dict(await b.user_versions()) == {}
    assert (await b.changes(None, now=now)).events == []
    assert await b.delete_user("42") == [] and await b.count() == 0
    assert await a.get(b"a" * 32) is not None and await a.count() == 1
    assert await a.epoch() != await b.epoch()


async def test_each_store_feed_reaches_its_namespace_and_no_other(
    make_store: MakeStore, namespace_options: Namespace, store_kind: str
) -> None:
    a = await make_store(**namespace_options("a"))
    a2 = await make_store(**namespace_options("a"))
    b = await make_store(**namespace_options("b"))
    feeds = [a.feed(), a2.feed(), b.feed()]
    if store_kind == "sqlite":  # no push channel: the engine polls the store instead
        assert feeds == [None, None, None]
        return
    got: list[list[Mapping[str, Any]]] = [[], [], []]
    up = [asyncio.Event(), asyncio.Event(), asyncio.Event()]
    started: list[RevocationFeed] = []
    try:
        for i, feed in enumerate(feeds):
            assert feed is not None

            def on_state(live: bool, i: int = i) -> None:
                if live:
                    up[i].set()

            await feed.start(got[i].append, on_state)
            started.append(feed)
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in up)), 10)
        await started[0].publish(ver_event("42", 1, None))
        await wait_for(lambda: bool(got[0]) and bool(got[1]))
        await started[2].publish(sid_event("marker", 1.0))
        await wait_for(lambda: bool(got[2]))
        assert got[0] == got[1] == [ver_event("42", 1, None)]
        assert got[2] == [sid_event("marker", 1.0)]
    finally:
        for feed in started:
            await feed.close()


async def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait for events delivered by a feed (a real server's round trip: no fake clock here)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "the feed did not deliver in time"
        await asyncio.sleep(0.005)

"""One contract, every store: memory, SQLite, PostgreSQL, Redis (see conftest.py for the factory).

Plus the failure modes that need a real server: unreachable store → StoreUnavailable, recovery
after the server drops our connections, feeds that notice a drop and resubscribe, the Auth.js
table read as Next.js writes it, and schema upgrades that keep rows.
"""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from keyfob.errors import ConfigError, StoreUnavailable
from keyfob.stores import SessionRecord, SessionStore, open_feed, open_store
from keyfob.stores import _schema as schema
from keyfob.stores.memory import MemoryFeed
from tests.conftest import PG_URL, require_postgres, require_redis
from tests.contract.conftest import (
    PRIVATE_PREFIX,
    REDIS_TEST_URL,
    MakeStore,
    delete_redis_keys,
    drop_postgres_tables,
)

pytestmark = pytest.mark.anyio

NOW = 1_800_000_000.0
DAY = 86400.0


def th(name: str) -> bytes:
    return hashlib.sha256(name.encode()).digest()


def rec(name: str, *, sid: str | None = None, user: str = "alice", created: float = NOW,
        expires: float = NOW + DAY, **kw: Any) -> SessionRecord:  # fmt: skip
    return SessionRecord(
        token_hash=th(name), id=sid or f"sid-{name}", user_id=user, created_at=created,
        last_seen_at=created, expires_at=expires, **kw,
    )  # fmt: skip


class TestStoreContract:
    async def test_get_returns_every_field_that_add_stored(self, store: SessionStore) -> None:
        r = rec(
            "t1", absolute_expires_at=NOW + 7 * DAY, authenticated_at=NOW - 5, ip="2001:db8::1",
            user_agent="Mozilla/5.0 (X11; Linux) — café", generation=3,
            data={"role": "admin", "nested": {"list": [1, 2.5, None, True], "ünï": "日本語 ✓"}},
        )  # fmt: skip
        await store.add(r)
        got = await store.get(r.token_hash)
        assert got == r
        assert got is not None and dict(got.data) == dict(r.data)

    async def test_unknown_token_hash_gets_none(self, store: SessionStore) -> None:
        assert await store.get(th("nope")) is None

    async def test_adding_the_same_token_hash_twice_raises_value_error(self, store: SessionStore) -> None:
        await store.add(rec("t1"))
        with pytest.raises(ValueError):
            await store.add(rec("t1", sid="other"))

    async def test_stores_hashes_not_raw_tokens(self, store: SessionStore) -> None:
        assert getattr(store, "stores_raw_tokens", None) is False

    async def test_touch_moves_last_seen_and_expiry_of_a_live_row(self, store: SessionStore) -> None:
        await store.add(rec("t1"))
        await store.touch(th("t1"), seen=NOW + 60, expires=NOW + 2 * DAY)
        got = await store.get(th("t1"))
        assert got is not None
        assert (got.last_seen_at, got.expires_at, got.created_at) == (NOW + 60, NOW + 2 * DAY, NOW)

    async def test_touch_of_a_missing_row_is_a_no_op(self, store: SessionStore) -> None:
        await store.touch(th("ghost"), seen=NOW, expires=NOW + DAY)
        assert await store.get(th("ghost")) is None

    async def test_live_read_is_get_without_retired_rows(self, store: SessionStore) -> None:
        # the database strategy's per-request read (the store's own get_live, or get made into one)
        from keyfob.stores._protocol import live_reader, live_row

        get_live = live_reader(store)
        r = rec("live", absolute_expires_at=NOW + 7 * DAY, authenticated_at=NOW - 5, ip="192.0.2.1",
                data={"role": "admin", "nested": {"n": [1, 2.5]}})
        await store.add(r)
        got = await get_live(r.token_hash)
        assert got is not None and got == live_row(r)
        assert dict(got.data) == dict(r.data)
        assert await get_live(th("nobody")) is None
        assert await store.replace(th("live"), rec("next", sid=r.id), now=NOW + 1, keep_old=True)
        assert await get_live(th("live")) is None  # retired: no longer a live row
        nxt = await get_live(th("next"))
        assert nxt is not None and nxt.id == r.id

    async def test_touch_leaves_a_retired_row_alone(self, store: SessionStore) -> None:
        await store.add(rec("old", sid="s"))
        assert await store.replace(th("old"), rec("new", sid="s"), now=NOW + 1, keep_old=True)
        await store.touch(th("old"), seen=NOW + 60, expires=NOW + 9 * DAY)
        got = await store.get(th("old"))
        assert got is not None and got.expires_at == NOW + DAY and got.last_seen_at == NOW

    async def test_replace_without_keep_deletes_the_old_row(self, store: SessionStore) -> None:
        await store.add(rec("old", sid="s"))
        assert await store.replace(th("old"), rec("new", sid="s", generation=1), now=NOW, keep_old=False)
        assert await store.get(th("old")) is None
        new = await store.get(th("new"))
        assert new is not None and new.id == "s" and new.generation == 1
        assert await store.count() == 1

    async def test_replace_with_keep_retires_the_old_row(self, store: SessionStore) -> None:
        await store.add(rec("old", sid="s"))
        assert await store.replace(th("old"), rec("new", sid="s"), now=NOW + 5, keep_old=True)
        old = await store.get(th("old"))
        assert old is not None and old.retired_at == NOW + 5
        live = await store.get_by_id("s")
        assert live is not None and live.token_hash == th("new")
        assert [r.token_hash for r in await store.list_user("alice")] == [th("new")]

    async def test_replace_of_a_missing_or_retired_row_returns_false(self, store: SessionStore) -> None:
        assert not await store.replace(th("ghost"), rec("x"), now=NOW, keep_old=True)
        assert await store.get(th("x")) is None
        await store.add(rec("old", sid="s"))
        assert await store.replace(th("old"), rec("new", sid="s"), now=NOW, keep_old=True)
        assert not await store.replace(th("old"), rec("new2", sid="s"), now=NOW, keep_old=True)
        assert await store.get(th("new2")) is None

    @pytest.mark.parametrize("keep_old", [True, False], ids=["keep-old", "drop-old"])
    async def test_fifty_concurrent_replaces_of_one_token_have_exactly_one_winner(
        self, store: SessionStore, keep_old: bool
    ) -> None:
        await store.add(rec("old", sid="s"))
        results = await asyncio.gather(
            *(
                store.replace(th("old"), rec(f"new{i}", sid="s"), now=NOW, keep_old=keep_old)
                for i in range(50)
            )
        )
        assert sum(results) == 1
        winner = results.index(True)
        assert await store.get(th(f"new{winner}")) is not None
        for i in range(50):
            if i != winner:
                assert await store.get(th(f"new{i}")) is None
        assert await store.count() == (2 if keep_old else 1)

    async def test_delete_removes_live_and_retired_rows_and_counts_the_live_ones(
        self, store: SessionStore
    ) -> None:
        await store.add(rec("a0", sid="s"))
        await store.replace(th("a0"), rec("a1", sid="s"), now=NOW, keep_old=True)
        await store.replace(th("a1"), rec("a2", sid="s"), now=NOW, keep_old=True)
        await store.add(rec("other", sid="s2"))
        assert await store.delete("s") == 1
        for name in ("a0", "a1", "a2"):
            assert await store.get(th(name)) is None
        assert await store.get(th("other")) is not None
        assert await store.delete("s") == 0

    async def test_get_by_id_returns_only_the_live_row(self, store: SessionStore) -> None:
        assert await store.get_by_id("s") is None
        await store.add(rec("a0", sid="s"))
        await store.replace(th("a0"), rec("a1", sid="s"), now=NOW, keep_old=True)
        got = await store.get_by_id("s")
        assert got is not None and got.token_hash == th("a1")

    async def test_list_user_returns_live_rows_oldest_first(self, store: SessionStore) -> None:
        await store.add(rec("late", created=NOW + 20))
        await store.add(rec("early", created=NOW))
        await store.add(rec("mid", created=NOW + 10, sid="m"))
        await store.replace(th("mid"), rec("mid2", sid="m", created=NOW + 10), now=NOW, keep_old=True)
        await store.add(rec("bob", user="bob"))
        got = await store.list_user("alice")
        assert [r.token_hash for r in got] == [th("early"), th("mid2"), th("late")]
        assert await store.list_user("nobody") == []

    async def test_delete_user_keeps_the_named_session(self, store: SessionStore) -> None:
        await store.add(rec("a", created=NOW))
        await store.add(rec("b", created=NOW + 1))
        await store.replace(th("b"), rec("b2", sid="sid-b", created=NOW + 1), now=NOW, keep_old=True)
        await store.add(rec("c", created=NOW + 2))
        await store.add(rec("bob", user="bob"))
        assert await store.delete_user("alice", keep="sid-c") == ["sid-a", "sid-b"]
        assert [r.id for r in await store.list_user("alice")] == ["sid-c"]
        assert await store.get(th("b")) is None
        assert await store.get(th("bob")) is not None

    async def test_delete_user_without_keep_deletes_every_session(self, store: SessionStore) -> None:
        await store.add(rec("a", created=NOW))
        await store.add(rec("b", created=NOW + 1))
        assert await store.delete_user("alice") == ["sid-a", "sid-b"]
        assert await store.list_user("alice") == []
        assert await store.delete_user("alice") == []

    async def test_delete_expired_works_in_batches(self, store: SessionStore) -> None:
        for i in range(25):
            await store.add(rec(f"dead{i}", expires=NOW + i))
        for i in range(5):
            await store.add(rec(f"live{i}", expires=NOW + DAY))
        counts = []
        while True:
            n = await store.delete_expired(NOW + 100, batch=10)
            counts.append(n)
            if n < 10:
                break
        assert counts == [10, 10, 5]
        assert await store.count() == 5
        assert await store.get(th("live0")) is not None and await store.get(th("dead0")) is None

    async def test_delete_expired_honours_absolute_expiry(self, store: SessionStore) -> None:
        await store.add(rec("abs", expires=NOW + DAY, absolute_expires_at=NOW + 10))
        await store.add(rec("ok", expires=NOW + DAY, absolute_expires_at=NOW + 2 * DAY))
        assert await store.delete_expired(NOW + 11) == 1
        assert await store.get(th("abs")) is None and await store.get(th("ok")) is not None

    async def test_delete_expired_keeps_rows_expiring_exactly_now(self, store: SessionStore) -> None:
        await store.add(rec("edge", expires=NOW + 10))
        assert await store.delete_expired(NOW + 10) == 0
        assert await store.get(th("edge")) is not None

    async def test_count_counts_live_and_retired_rows(self, store: SessionStore) -> None:
        assert await store.count() == 0
        await store.add(rec("a", sid="s"))
        await store.replace(th("a"), rec("b", sid="s"), now=NOW, keep_old=True)
        assert await store.count() == 2

    async def test_user_version_starts_at_zero_and_bumps_by_one(self, store: SessionStore) -> None:
        assert await store.get_user_version("alice") == 0
        assert await store.bump_user_version("alice") == 1
        assert await store.bump_user_version("alice") == 2
        assert await store.get_user_version("alice") == 2
        assert await store.user_versions() == {"alice": 2}

    async def test_fifty_concurrent_version_bumps_are_all_counted(self, store: SessionStore) -> None:
        got = await asyncio.gather(*(store.bump_user_version("bob") for _ in range(50)))
        assert sorted(got) == list(range(1, 51))
        assert await store.get_user_version("bob") == 50

    async def test_revocations_are_listed_until_they_expire(self, store: SessionStore) -> None:
        await store.add_revocation("s1", until=NOW + 60)
        await store.add_revocation("s2", until=NOW + 600)
        assert await store.revocations(NOW) == {"s1": NOW + 60, "s2": NOW + 600}
        assert await store.revocations(NOW + 60) == {"s2": NOW + 600}

    async def test_adding_a_revocation_again_keeps_the_later_until(self, store: SessionStore) -> None:
        await store.add_revocation("s1", until=NOW + 600)
        await store.add_revocation("s1", until=NOW + 60)
        assert await store.revocations(NOW) == {"s1": NOW + 600}
        await store.add_revocation("s1", until=NOW + 900)
        assert await store.revocations(NOW) == {"s1": NOW + 900}

    async def test_delete_expired_prunes_past_revocations(self, store: SessionStore) -> None:
        await store.add_revocation("s1", until=NOW + 60)
        await store.delete_expired(NOW + 61)
        assert await store.revocations(NOW) == {}

    async def test_migrate_twice_keeps_rows(self, store: SessionStore) -> None:
        await store.add(rec("keep", data={"k": "v"}))
        await store.bump_user_version("alice")
        await store.migrate()
        await store.migrate()
        got = await store.get(th("keep"))
        assert got is not None and got.data == {"k": "v"}
        assert await store.get_user_version("alice") == 1

    async def test_two_store_objects_see_the_same_rows(self, store: SessionStore, make_store: MakeStore,
                                                       store_url: str) -> None:  # fmt: skip
        if store_url == "memory://":
            pytest.skip("memory:// is private to its object; memory://name is shared")
        other = await make_store()
        await store.add(rec("shared"))
        assert await other.get(th("shared")) is not None

    # -- add_limited (max_sessions_per_user) ------------------------------------------------------

    async def test_add_limited_inserts_below_the_limit_and_refuses_at_it(self, store: SessionStore) -> None:
        add_limited = store.add_limited  # type: ignore[attr-defined]
        assert await add_limited(rec("a"), limit=2, evict=False, now=NOW, idle_timeout=None) == (True, [])
        assert await add_limited(rec("b"), limit=2, evict=False, now=NOW, idle_timeout=None) == (True, [])
        assert await add_limited(rec("c"), limit=2, evict=False, now=NOW, idle_timeout=None) == (False, [])
        assert await store.get(th("c")) is None
        assert await add_limited(rec("d", user="bob"), limit=2, evict=False, now=NOW,
                                 idle_timeout=None) == (True, []), "the limit is per user"
        assert [r.id for r in await store.list_user("alice")] == ["sid-a", "sid-b"]

    async def test_add_limited_counts_only_live_rows(self, store: SessionStore) -> None:
        await store.add(rec("expired", expires=NOW))  # expiring exactly at now is dead
        await store.add(rec("absolute", absolute_expires_at=NOW - 1))
        await store.add(rec("idle", created=NOW - 3600))
        await store.add(rec("old", sid="rotated"))
        assert await store.replace(th("old"), rec("new", sid="rotated"), now=NOW, keep_old=True)
        # live: "new" only (the retired "old" never counts; "idle" is dead under a 1 h idle timeout)
        add_limited = store.add_limited  # type: ignore[attr-defined]
        assert await add_limited(rec("x"), limit=2, evict=False, now=NOW, idle_timeout=3600.0) == (True, [])
        assert await add_limited(rec("y"), limit=2, evict=False, now=NOW, idle_timeout=3600.0) == (False, [])
        assert await store.get(th("idle")) is not None, "dead rows are left to delete_expired"

    async def test_add_limited_evicts_least_recently_active_sessions_with_their_retired_rows(
        self, store: SessionStore
    ) -> None:
        await store.add(rec("a", created=NOW - 30))
        await store.add(rec("b", created=NOW - 20, sid="fam"))
        assert await store.replace(th("b"), rec("b2", sid="fam", created=NOW - 20), now=NOW - 20,
                                   keep_old=True)  # fmt: skip
        await store.add(rec("c", created=NOW - 40))
        await store.touch(th("c"), seen=NOW - 10, expires=NOW + DAY)  # c: oldest, but active lately
        await store.add(rec("bob", user="bob", created=NOW - 99))
        add_limited = store.add_limited  # type: ignore[attr-defined]
        added, evicted = await add_limited(rec("d"), limit=2, evict=True, now=NOW, idle_timeout=None)
        assert (added, evicted) == (True, ["sid-a", "fam"])
        for gone in ("a", "b", "b2"):
            assert await store.get(th(gone)) is None, gone
        assert sorted(r.id for r in await store.list_user("alice")) == ["sid-c", "sid-d"]
        assert [r.id for r in await store.list_user("bob")] == ["sid-bob"]

    async def test_add_limited_of_an_existing_token_hash_raises_and_evicts_nothing(
        self, store: SessionStore
    ) -> None:
        await store.add(rec("a"))
        with pytest.raises(ValueError):
            await store.add_limited(rec("a", sid="other"), limit=1, evict=True,  # type: ignore[attr-defined]
                                    now=NOW, idle_timeout=None)  # fmt: skip
        assert [r.id for r in await store.list_user("alice")] == ["sid-a"]

    @pytest.mark.parametrize("evict", [False, True], ids=["refuse", "evict"])
    async def test_concurrent_add_limited_never_exceeds_the_limit(self, store: SessionStore,
                                                                  evict: bool) -> None:  # fmt: skip
        add_limited = store.add_limited  # type: ignore[attr-defined]
        results = await asyncio.gather(*(
            add_limited(rec(f"t{i}", created=NOW + i), limit=3, evict=evict, now=NOW + 30, idle_timeout=None)
            for i in range(20)
        ))  # fmt: skip
        assert sum(added for added, _ in results) == (20 if evict else 3)
        evicted = [sid for _, ids in results for sid in ids]
        assert len(evicted) == (17 if evict else 0) and len(set(evicted)) == len(evicted)
        assert len(await store.list_user("alice")) == 3

    async def test_a_closed_store_raises_store_unavailable(
        self, make_store: MakeStore, store_url: str
    ) -> None:
        if store_url.startswith("redis"):
            pytest.skip("redis-py reopens a closed client on the next command")
        s = await make_store()
        await s.close()
        with pytest.raises(StoreUnavailable):
            await s.get(th("x"))


# -- unreachable stores fail closed --------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("postgresql://postgres@127.0.0.1:1/test", id="postgresql"),
        pytest.param("redis://127.0.0.1:1/0", id="redis"),
        pytest.param("sqlite:////nonexistent-dir/keyfob/keyfob.db", id="sqlite"),
    ],
)
async def test_unreachable_store_raises_store_unavailable(url: str) -> None:
    store = open_store(url)
    try:
        for call in (store.get(th("x")), store.add(rec("x")), store.migrate(), store.bump_user_version("u")):
            with pytest.raises(StoreUnavailable) as info:
                await call
            assert info.value.__cause__ is not None
            assert info.value.status_code == 503
    finally:
        await store.close()


@pytest.mark.parametrize(
    "url",
    [pytest.param("postgresql://postgres@127.0.0.1:1/test", id="postgresql"),
     pytest.param("redis://127.0.0.1:1/0", id="redis")],
)  # fmt: skip
async def test_feed_on_unreachable_server_reports_down_and_publish_fails(url: str) -> None:
    feed = open_feed(url, connect_timeout=0.5)
    assert feed is not None
    states: list[bool] = []
    try:
        await feed.start(lambda e: None, states.append)
        for _ in range(500):  # up to 10 s: the refused connect is quick, a loaded machine is not
            if states:
                break
            await asyncio.sleep(0.02)
        assert states[:1] == [False]
        with pytest.raises(StoreUnavailable):
            await feed.publish({"t": "sid", "sid": "x", "until": 1.0})
    finally:
        await feed.close()


# -- recovery after the server drops our connections ---------------------------------------------


async def _kill_pg_backends(application_name: str) -> None:
    """Terminate this test's server connections (only them: other suites may share the server)."""
    import asyncpg

    conn = await asyncpg.connect(PG_URL)
    try:
        await conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() AND application_name = $1",
            application_name,
        )
    finally:
        await conn.close()


async def _pg_backends_gone(application_name: str, timeout: float = 10.0) -> None:
    """Wait until the server has ended the terminated backends (pg_terminate_backend only signals)."""
    import asyncpg

    conn = await asyncpg.connect(PG_URL)
    try:
        for _ in range(int(timeout / 0.02)):
            left = await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", application_name
            )
            if left == 0:
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"{left} backend(s) of {application_name} still running after {timeout} s")
    finally:
        await conn.close()


async def _kill_redis_clients(client_name: str) -> None:
    """CLIENT KILL every connection named ``client_name`` (normal and pub/sub alike)."""
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(REDIS_TEST_URL)
    try:
        for info in await client.client_list():
            if info.get("name") == client_name:
                await client.client_kill_filter(_id=info["id"])
    finally:
        await client.aclose()


@pytest.mark.postgres
async def test_postgres_store_recovers_after_its_connections_are_killed() -> None:
    require_postgres()
    prefix = f"{PRIVATE_PREFIX}_rec_"
    await drop_postgres_tables(prefix)
    store = open_store(f"{PG_URL}?application_name=kf_recovery_{PRIVATE_PREFIX}", table_prefix=prefix)
    try:
        await store.migrate()
        await asyncio.gather(*(store.add(rec(f"t{i}")) for i in range(8)))  # fill the pool
        await _kill_pg_backends(f"kf_recovery_{PRIVATE_PREFIX}")
        assert await store.get(th("t0")) is not None  # reads retry once on a fresh connection
        await _kill_pg_backends(f"kf_recovery_{PRIVATE_PREFIX}")
        await _pg_backends_gone(f"kf_recovery_{PRIVATE_PREFIX}")  # the kill is asynchronous
        await asyncio.sleep(0.05)  # and the pool sees the closed sockets on its next loop turns
        await store.add(rec("after"))
        assert await store.count() == 9
    finally:
        await store.close()
        await drop_postgres_tables(prefix)


@pytest.mark.redis
async def test_redis_store_recovers_after_client_kill() -> None:
    require_redis()
    prefix = f"{PRIVATE_PREFIX}:rec:"
    name = f"kf_recovery_{PRIVATE_PREFIX}"
    await delete_redis_keys(prefix)
    store = open_store(f"{REDIS_TEST_URL}?client_name={name}", prefix=prefix)
    try:
        await store.add(rec("t0"))
        await _kill_redis_clients(name)
        assert await store.get(th("t0")) is not None
        await _kill_redis_clients(name)
        await store.add(rec("t1"))
        assert await store.count() == 2
    finally:
        await store.close()
        await delete_redis_keys(prefix)


# -- revocation feeds ----------------------------------------------------------------------------


class _Recorder:
    def __init__(self) -> None:
        self.events: list[Mapping[str, Any]] = []
        self.states: list[bool] = []
        self.changed = asyncio.Event()

    def handler(self, event: Mapping[str, Any]) -> None:
        self.events.append(event)
        self.changed.set()

    async def on_state(self, up: bool) -> None:
        self.states.append(up)
        self.changed.set()

    async def wait_for(self, predicate: Any, timeout: float = 30.0) -> None:
        """Wait until ``predicate()`` holds; ``timeout`` is a hang guard, not a speed bound."""
        async def loop() -> None:
            while not predicate():
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(loop(), timeout)


async def test_memory_feeds_with_one_url_share_a_channel() -> None:
    a, b, c = MemoryFeed("memory://shared-x"), MemoryFeed("memory://shared-x"), MemoryFeed("memory://other")
    ra, rb, rc = _Recorder(), _Recorder(), _Recorder()
    for feed, r in ((a, ra), (b, rb), (c, rc)):
        await feed.start(r.handler, r.on_state)
    try:
        assert ra.states == rb.states == [True]
        await a.publish({"t": "sid", "sid": "s1", "until": 5.0})
        await rb.wait_for(lambda: rb.events)
        await ra.wait_for(lambda: ra.events)
        assert rb.events == [{"t": "sid", "sid": "s1", "until": 5.0}]
        assert rc.events == []
        await b.disconnect()
        assert rb.states == [True, False]
        with pytest.raises(StoreUnavailable):
            await b.publish({"t": "ver", "user": "u", "ver": 2})
        await a.publish({"t": "ver", "user": "u", "ver": 2})
        await b.reconnect()
        assert rb.states == [True, False, True]
        assert len(rb.events) == 1
    finally:
        for feed in (a, b, c):
            await feed.close()


@pytest.mark.parametrize(
    ("url", "kill"),
    [
        pytest.param(PG_URL, "postgres", id="postgresql", marks=pytest.mark.postgres),
        pytest.param(REDIS_TEST_URL, "redis", id="redis", marks=pytest.mark.redis),
    ],
)
async def test_server_feed_delivers_events_and_resubscribes_after_a_drop(url: str, kill: str) -> None:
    (require_postgres if kill == "postgres" else require_redis)()
    name = f"kf_feed_{PRIVATE_PREFIX}"
    channel = f"kf_test_{PRIVATE_PREFIX}"
    named = f"{url}?application_name={name}" if kill == "postgres" else f"{url}?client_name={name}"
    a, b = open_feed(url, channel=channel), open_feed(named, channel=channel)
    assert a is not None and b is not None
    ra, rb = _Recorder(), _Recorder()
    await a.start(ra.handler, ra.on_state)
    await b.start(rb.handler, rb.on_state)
    try:
        assert ra.states == [True] and rb.states == [True]
        await a.publish({"t": "sid", "sid": "s1", "until": 5.0})
        await rb.wait_for(lambda: len(rb.events) == 1)
        await ra.wait_for(lambda: len(ra.events) == 1)
        assert rb.events[0] == {"t": "sid", "sid": "s1", "until": 5.0}

        if kill == "postgres":
            await _kill_pg_backends(name)
        else:
            await _kill_redis_clients(name)
        # The drop is noticed (the feed reports down, then up again); how fast is not a unit-test matter.
        await rb.wait_for(lambda: rb.states[-1:] == [False] or len(rb.states) >= 3)
        await rb.wait_for(lambda: rb.states[-2:] == [False, True])
        await a.publish({"t": "ver", "user": "u", "ver": 2})  # publisher reconnects as well
        await rb.wait_for(lambda: len(rb.events) == 2)
        assert rb.events[1] == {"t": "ver", "user": "u", "ver": 2}
    finally:
        await a.close()
        await b.close()


# -- Auth.js compatibility -----------------------------------------------------------------------


async def _pg_exec(*statements: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_URL)
    try:
        for sql in statements:
            await conn.execute(sql)
    finally:
        await conn.close()


@pytest.mark.postgres
async def test_authjs_compat_reads_a_session_row_written_by_the_pg_adapter() -> None:
    require_postgres()
    # The @auth/pg-adapter schema, and the row Next.js writes at sign-in.
    table = f"kf_authjs_{PRIVATE_PREFIX}"
    await _pg_exec(
        f"DROP TABLE IF EXISTS {table}",
        f'CREATE TABLE {table} (id SERIAL, "userId" INTEGER NOT NULL, '
        'expires TIMESTAMPTZ NOT NULL, "sessionToken" VARCHAR(255) NOT NULL, PRIMARY KEY (id))',
        f'INSERT INTO {table} ("userId", expires, "sessionToken") '
        "VALUES (42, '2027-01-15T08:00:00.000Z', 'raw-token-from-nextjs')",
    )
    prefix = f"{PRIVATE_PREFIX}_aj_"
    store = open_store(
        PG_URL, authjs_compat=True, authjs_table=table, authjs_max_age=DAY, table_prefix=prefix
    )
    try:
        await store.migrate()
        assert store.stores_raw_tokens is True  # type: ignore[attr-defined]
        got = await store.get(b"raw-token-from-nextjs")
        assert got is not None
        assert (got.user_id, got.token_hash) == ("42", b"raw-token-from-nextjs")
        assert got.expires_at == _iso_epoch("2027-01-15T08:00:00+00:00")
        assert got.created_at == got.expires_at - DAY and got.ip is None and got.data == {}
        assert await store.get(b"some-other-token") is None

        # keyfob writes rows Auth.js can read: the database assigns the serial id
        await store.add(SessionRecord(b"kf-token", "not-a-number", "42", NOW, NOW, NOW + DAY))
        mine = [r for r in await store.list_user("42") if r.token_hash == b"kf-token"]
        assert len(mine) == 1 and mine[0].id.isdigit()
        await store.touch(b"kf-token", seen=NOW + 5, expires=NOW + 2 * DAY)
        touched = await store.get(b"kf-token")
        assert touched is not None and touched.expires_at == NOW + 2 * DAY
        assert await store.replace(b"kf-token", SessionRecord(b"kf-token-2", "x", "42", NOW, NOW, NOW + DAY),
                                   now=NOW, keep_old=False)  # fmt: skip
        with pytest.raises(ConfigError):
            await store.replace(
                b"kf-token-2", SessionRecord(b"t3", "x", "42", NOW, NOW, NOW), now=NOW, keep_old=True
            )
        assert await store.list_user("not-an-int") == []
        assert len(await store.delete_user("42", keep=got.id)) == 1
        assert await store.count() == 1
        assert await store.delete(got.id) == 1
    finally:
        await store.close()
        await _pg_exec(f"DROP TABLE IF EXISTS {table}")
        await drop_postgres_tables(f"{PRIVATE_PREFIX}_aj_")


def _iso_epoch(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text).timestamp()


async def test_authjs_compat_on_sqlite_reads_iso_and_epoch_ms_expiry(tmp_path: Path) -> None:
    path = tmp_path / "authjs.db"
    db = sqlite3.connect(path)
    db.execute(
        'CREATE TABLE sessions (id TEXT PRIMARY KEY, "sessionToken" TEXT UNIQUE NOT NULL, '
        '"userId" TEXT NOT NULL, expires DATETIME NOT NULL)'
    )
    db.execute("INSERT INTO sessions VALUES ('c1', 'tok-iso', 'user-1', '2027-01-15T08:00:00.000Z')")
    db.execute("INSERT INTO sessions VALUES ('c2', 'tok-ms', 'user-1', ?)", (1_800_000_000_000,))
    db.commit()
    db.close()
    store = open_store(f"sqlite:///{path}", authjs_compat=True)
    try:
        await store.migrate()
        iso = await store.get(b"tok-iso")
        ms = await store.get(b"tok-ms")
        assert iso is not None and iso.expires_at == _iso_epoch("2027-01-15T08:00:00+00:00")
        assert ms is not None and (ms.expires_at, ms.id, ms.user_id) == (NOW, "c2", "user-1")
        await store.add(SessionRecord(b"tok-new", "c3", "user-1", NOW, NOW, NOW + DAY))
        assert await store.get_by_id("c3") is not None
        assert await store.delete_expired(NOW + 1) == 2  # both old rows, whatever their format
        assert [r.id for r in await store.list_user("user-1")] == ["c3"]
    finally:
        await store.close()


# -- schema upgrades -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kind",
    [
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
    ],
)
async def test_migrate_upgrades_an_older_schema_without_losing_rows(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if kind == "postgresql":
        require_postgres()
        url = PG_URL
        await drop_postgres_tables(f"{PRIVATE_PREFIX}_mig_")
    else:
        url = f"sqlite:///{tmp_path / 'mig.db'}"
    old = open_store(url, table_prefix=f"{PRIVATE_PREFIX}_mig_")
    try:
        await old.migrate()
        await old.add(rec("survivor", data={"x": 1}))
    finally:
        await old.close()

    added: list[str] = []

    def v2(tables: schema.Tables, dialect: Any) -> list[str]:
        added.append("v2")
        return [f"ALTER TABLE {tables.sessions.name} ADD COLUMN note TEXT"]

    future = schema.SCHEMA_VERSION + 1
    monkeypatch.setattr(schema, "SCHEMA_VERSION", future)
    monkeypatch.setitem(schema.MIGRATIONS, future, v2)
    new = open_store(url, table_prefix=f"{PRIVATE_PREFIX}_mig_")
    try:
        await new.migrate()
        await new.migrate()  # already at v2: no second ALTER
        assert added == ["v2"]
        assert await new.schema_version() == future  # type: ignore[attr-defined]
        got = await new.get(th("survivor"))
        assert got is not None and got.data == {"x": 1}
        assert await _raw_note_column(url, f"{PRIVATE_PREFIX}_mig_sessions") == [None], "v2 really ran"
    finally:
        await new.close()
        if kind == "postgresql":
            await drop_postgres_tables(f"{PRIVATE_PREFIX}_mig_")


async def _raw_note_column(url: str, table: str) -> list[Any]:
    """The ``note`` column the test's v2 migration adds, read past keyfob (fails if it is missing)."""
    if url.startswith("sqlite"):
        db = sqlite3.connect(url.split("://", 1)[1][1:])
        try:
            return [r[0] for r in db.execute(f"SELECT note FROM {table}")]
        finally:
            db.close()
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        return [r[0] for r in await conn.fetch(f"SELECT note FROM {table}")]
    finally:
        await conn.close()


@pytest.mark.parametrize(
    "kind",
    [
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
    ],
)
async def test_migrate_upgrades_a_version_1_schema_keeping_every_user_version(
    kind: str, tmp_path: Path
) -> None:
    """Schema 1 (before the change log and version horizons) → 2: versions stay, forever-live."""
    prefix = f"{PRIVATE_PREFIX}_v1_"
    if kind == "postgresql":
        require_postgres()
        url = PG_URL
        await drop_postgres_tables(prefix)
    else:
        url = f"sqlite:///{tmp_path / 'v1.db'}"
    v1 = [  # what schema 1 lacks, taken away from a fresh schema 2
        f"DROP TABLE {prefix}changes",
        f"DROP INDEX ix_{prefix}user_versions_until",
        f"ALTER TABLE {prefix}user_versions DROP COLUMN until",
        f"ALTER TABLE {prefix}user_versions DROP COLUMN live",
        f"UPDATE {prefix}meta SET value = '1' WHERE key = 'schema_version'",
        f"DELETE FROM {prefix}meta WHERE key = 'epoch'",
        f"INSERT INTO {prefix}user_versions (user_id, version) VALUES ('alice', 3)",
    ]
    store = open_store(url, table_prefix=prefix)
    try:
        await store.migrate()
        if kind == "postgresql":
            await _pg_exec(*v1)
        else:
            db = sqlite3.connect(url.split("://", 1)[1][1:])
            for sql in v1:
                db.execute(sql)
            db.commit()
            db.close()
        await store.close()
        store = open_store(url, table_prefix=prefix)
        assert await store.schema_version() == 1  # type: ignore[attr-defined]
        await store.migrate()
        assert await store.schema_version() == schema.SCHEMA_VERSION  # type: ignore[attr-defined]
        assert await store.epoch() is not None
        assert dict(await store.user_versions()) == {"alice": 3}
        await store.delete_expired(NOW + 10 * DAY)
        assert dict(await store.user_versions()) == {"alice": 3}  # no horizon: kept
        assert await store.bump_user_version("alice", until=NOW + 60) == 4
        assert (await store.changes(None, now=NOW)).events == [
            {"t": "ver", "user": "alice", "ver": 4, "until": NOW + 60}
        ]
    finally:
        await store.close()
        if kind == "postgresql":
            await drop_postgres_tables(prefix)

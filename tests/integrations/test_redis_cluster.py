"""keyfob on a real Redis Cluster under faults: reshard under traffic, a master killed and its replica
promoted, garbled feed messages, and the URLs that are misconfigurations (ConfigError) versus an
unreachable cluster (StoreUnavailable).

All of it runs on the session's own cluster (``tests/conftest.py``: 3 masters + 3 replicas on
loopback ports). Tests that kill or reshard nodes leave it healthy (``wait_ok``) for the next one.
Timing here is real (servers, elections), so there are waits, but no timed assertion: bounds are
deadlines for something to happen at all.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio.cluster import RedisCluster

from keyfob import ConfigError, Keyfob, StoreUnavailable
from keyfob.stores import open_store
from keyfob.stores.redis import RedisFeed, RedisStore
from keyfob.stores.redis._client import translate_errors
from tests._redis_cluster import RedisClusterProcesses, _cli, flush_cluster, free_ports
from tests.conftest import REDIS_URL, SECRET, require_redis

pytestmark = [pytest.mark.anyio, pytest.mark.redis_cluster]

Jar = dict[str, str]


@pytest.fixture
async def cluster(redis_cluster: RedisClusterProcesses) -> RedisClusterProcesses:
    await flush_cluster(redis_cluster.url)
    return redis_cluster


@pytest.fixture
async def fob(cluster: RedisClusterProcesses) -> AsyncIterator[Keyfob]:
    f = Keyfob(strategy="database", secret=SECRET, store=cluster.url)
    await f.start()
    try:
        yield f
    finally:
        await f.close()


async def sign_in_many(fob: Keyfob, n: int) -> dict[str, Jar]:
    """``n`` sessions of ``n`` users (so they spread over the cluster's slots) → session id → cookies."""
    out: dict[str, Jar] = {}
    for i in range(n):
        issued = await fob.create(f"user-{i}", {"role": "user"}, secure=False)
        out[issued.session.id] = {c.name: c.value for c in issued.cookies}
    return out


async def alive(fob: Keyfob, jar: Jar) -> bool:
    return (await fob.authenticate(jar, secure=False)).session is not None


# -- reshard -------------------------------------------------------------------------------------


async def test_reshard_under_traffic_gives_no_error_and_loses_nothing(
    cluster: RedisClusterProcesses, fob: Keyfob
) -> None:
    sessions = await sign_in_many(fob, 60)
    revoked = set(list(sessions)[:15])
    for sid in revoked:
        await fob.revoke(sid)
    # what the revokes logged (the database strategy records a hashed tombstone per revoked token)
    before = {e["sid"] for e in await read_log(fob.store)}
    errors: list[BaseException] = []
    checks = 0
    stop = asyncio.Event()
    items = list(sessions.items())

    async def traffic() -> None:
        nonlocal checks
        while not stop.is_set():
            i = checks
            checks += 1
            sid, jar = items[i % len(items)]
            try:
                ok = await alive(fob, jar)
                assert ok is (sid not in revoked), f"session {sid}: alive={ok} during the reshard"
                await fob.store.add_revocation(f"extra-{i}", until=time.time() + 600)
            except Exception as exc:  # every failure is collected and reported
                errors.append(exc)

    masters = cluster.master_ports()
    workers = [asyncio.create_task(traffic()) for _ in range(4)]
    try:
        # move 1000 of the first master's slots (and the keys in them) to the second, under traffic
        await asyncio.to_thread(cluster.reshard, 1000, masters[0], masters[1])
    finally:
        stop.set()
        await asyncio.gather(*workers)
    await asyncio.to_thread(cluster.wait_ok)
    assert checks > 0 and errors == [], errors[:3]
    for sid, jar in sessions.items():
        assert await alive(fob, jar) is (sid not in revoked)
    assert await fob.store.count() == len(sessions) - len(revoked)
    logged = {e["sid"] for e in await read_log(fob.store)}  # the change log lost nothing either
    assert logged == before | {f"extra-{i}" for i in range(checks)}


async def read_log(store: Any) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = await store.changes(cursor, now=time.time(), limit=500)
        events.extend(page.events)
        cursor = page.cursor
        if not page.more:
            return events


# -- failover ------------------------------------------------------------------------------------


async def replicated(port: int) -> None:
    """Wait until the master's replica has everything the master has (replication is asynchronous)."""
    for _ in range(100):
        info = _cli(port, "info", "replication")
        lines = info.splitlines()
        offset = next(int(line.split(":")[1]) for line in lines if line.startswith("master_repl_offset"))
        replicas = [line for line in lines if line.startswith("slave0:")]
        if replicas and f"offset={offset}," in replicas[0]:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the replica of {port} did not catch up")


async def test_a_killed_master_gives_503s_then_recovers_without_a_restart(
    cluster: RedisClusterProcesses, fob: Keyfob
) -> None:
    # the database strategy reads the store on every request; two hybrid nodes share the feed
    hybrid = [Keyfob(strategy="hybrid", secret=SECRET, store=cluster.url) for _ in range(2)]
    for node in hybrid:
        await node.start()
    try:
        sessions = await sign_in_many(fob, 40)
        hybrid_sid = (await hybrid[0].create("victim-user", {}, secure=False)).session.id
        feed = hybrid[0].feed
        assert isinstance(feed, RedisFeed) and feed.sharded
        # kill the master that owns the feed's channel, so the feed has to fail over too
        owner = await channel_owner(cluster, feed.channel)
        await replicated(owner)
        cluster.kill(owner)
        outcomes: list[str] = []
        deadline = time.monotonic() + 30
        recovered = False
        while time.monotonic() < deadline and not recovered:
            results = []
            for jar in sessions.values():
                try:
                    results.append("ok" if await alive(fob, jar) else "refused")
                except StoreUnavailable:
                    results.append("503")
            outcomes.extend(results)
            recovered = all(r == "ok" for r in results)
            if not recovered:
                await asyncio.sleep(0.2)
        assert "refused" not in outcomes, "a live session was refused: fail closed means 503, not 401"
        assert "503" in outcomes, "the dead master's slots must fail closed while the replica takes over"
        assert recovered, "the same engine never recovered after the replica was promoted"
        # the feed came back on the promoted replica: a revocation on one node reaches the other
        await wait_until(lambda: all(node.view.live for node in hybrid), 20)
        await hybrid[0].revoke(hybrid_sid)
        await wait_until(lambda: hybrid_sid in hybrid[1].view.revoked, 10)
    finally:
        for node in hybrid:
            await node.close()
        cluster.restart(owner)  # it rejoins as a replica of its old replica
        await asyncio.to_thread(cluster.wait_ok)


async def channel_owner(cluster: RedisClusterProcesses, channel: str) -> int:
    client = RedisCluster(host="127.0.0.1", port=cluster.master_ports()[0])
    try:
        await client.initialize()
        node = client.get_node_from_key(channel)
        assert node is not None
        return int(node.port)
    finally:
        await client.aclose()


async def refresh_alive(fob: Keyfob, jar: Jar) -> bool:
    """The refresh-token path (a store read and write): does the session still work?"""
    result = await fob.authenticate(jar, secure=False)
    if result.session is None:
        return False
    for c in result.cookies:
        jar[c.name] = c.value
    return True


async def wait_until(condition: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


# -- the feed ------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["cluster", pytest.param("standalone", marks=pytest.mark.redis)])
async def test_a_garbled_feed_message_is_logged_and_ignored(
    kind: str, request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture
) -> None:
    prefix = f"kfg{uuid.uuid4().hex[:8]}:"
    if kind == "cluster":
        url = request.getfixturevalue("redis_cluster").url
    else:
        require_redis()
        url = REDIS_URL
    feed = RedisFeed(url, prefix=prefix)
    got: list[Any] = []
    up = asyncio.Event()
    garbage: list[Any] = [b"\xff\xfe not json", "[1, 2, 3]", '"a string"', "{", "",
                          {"t": "sid", "sid": 5, "until": "later"}, {"t": "ver", "user": None, "ver": "x"}]

    def handler(event: Any) -> None:
        if event.get("boom"):
            raise ValueError("a handler that cannot apply an event")
        got.append(event)

    await feed.start(handler, lambda live: up.set() if live else None)
    try:
        await asyncio.wait_for(up.wait(), 10)
        caplog.set_level(logging.WARNING, logger="keyfob.feed")
        for g in garbage:
            if isinstance(g, dict):
                await feed.publish(g)
            else:
                await raw_publish(feed, g)
        await feed.publish({"boom": True})
        await feed.publish({"t": "sid", "sid": "after-the-garbage", "until": 1.0})
        await wait_until(lambda: any(e.get("sid") == "after-the-garbage" for e in got), 10)
    finally:
        await feed.close()
    assert [e.get("sid") for e in got][-1] == "after-the-garbage"
    ignored = [r for r in caplog.records if "ignored a revocation feed" in r.getMessage()]
    assert len(ignored) >= 5  # the five non-objects, and the event the handler refused
    assert not any("not json" in r.getMessage() for r in caplog.records), "the payload is not logged"


async def raw_publish(feed: RedisFeed, payload: str | bytes) -> None:
    client: Any = feed._pub
    if feed.sharded:
        await client.spublish(feed.channel, payload)
    else:
        await client.publish(feed.channel, payload)


async def test_the_store_feed_on_a_cluster_is_sharded_and_reaches_every_listener(
    cluster: RedisClusterProcesses,
) -> None:
    store = open_store(cluster.url + "?prefix=app1")
    assert isinstance(store, RedisStore)
    feeds = [store.feed() for _ in range(3)]
    got: list[list[Any]] = [[] for _ in feeds]
    try:
        for i, feed in enumerate(feeds):
            assert feed.sharded and feed.channel == "app1:feed:db0"
            await feed.start(got[i].append, lambda live: None)
        await feeds[0].publish({"t": "ver", "user": "42", "ver": 3})
        await wait_until(lambda: all(got), 10)
        assert all(g == [{"t": "ver", "user": "42", "ver": 3}] for g in got)
    finally:
        for feed in feeds:
            await feed.close()
        await store.close()


# -- misconfiguration vs outage ------------------------------------------------------------------


async def test_a_plain_redis_url_on_a_cluster_node_is_a_config_error_naming_the_url(
    cluster: RedisClusterProcesses,
) -> None:
    port = cluster.master_ports()[0]
    store = open_store(f"redis://127.0.0.1:{port}/0")
    try:
        with pytest.raises(ConfigError) as err:
            for i in range(20):  # some keys hash to this node's slots; one that does not → MOVED
                await store.bump_user_version(f"user-{i}")
        assert "redis+cluster://" in err.value.hint
    finally:
        await store.close()


@pytest.mark.redis
async def test_a_cluster_url_on_a_single_server_is_a_config_error() -> None:
    require_redis()
    host_port = REDIS_URL.split("://", 1)[1].rsplit("/", 1)[0]
    store = open_store(f"redis+cluster://{host_port}")
    try:
        with pytest.raises(ConfigError) as err:
            await store.migrate()
        assert "redis://" in err.value.hint
    finally:
        await store.close()


async def test_an_unreachable_cluster_is_store_unavailable_not_a_config_error() -> None:
    ports = free_ports(2)
    store = open_store(f"redis+cluster://127.0.0.1:{ports[0]},127.0.0.1:{ports[1]}", connect_timeout=0.5)
    try:
        with pytest.raises(StoreUnavailable):
            await store.get(b"x" * 32)
    finally:
        await store.close()


@pytest.mark.parametrize(
    ("url", "setting"),
    [
        ("redis+cluster://127.0.0.1:7000/2", "/db"),
        ("redis://127.0.0.1:6379/0?prefix=a{b}", "prefix"),
        ("redis+cluster://127.0.0.1:7000?prefix=x}", "prefix"),
        ("redis://127.0.0.1:6379/zero", "redis://127.0.0.1:6379/0"),
        ("redis://127.0.0.1:6379,127.0.0.1:6380/0", "redis+cluster://"),
        ("redis+cluster://127.0.0.1:notaport", "host:port"),
        ("redis+cluster://127.0.0.1:7000?socket_timeout=3", "open_store()"),
        # found in review: these were a ValueError / TypeError (a 500 at the first request), not a ConfigError
        ("redis://127.0.0.1:notaport/0", "port"),
        ("redis://127.0.0.1:6379/0?prefx=app1", "prefx"),
        ("redis://127.0.0.1:6379/0?socket_timeout=abc", "socket_timeout"),
    ],
)
def test_a_malformed_redis_url_is_a_config_error_naming_the_setting(url: str, setting: str) -> None:
    with pytest.raises(ConfigError) as err:
        open_store(url)
    assert setting in f"{err.value} {err.value.hint}"


async def test_a_redis_db_the_server_does_not_have_is_a_config_error_not_a_503() -> None:
    require_redis()
    store = open_store(REDIS_URL.rsplit("/", 1)[0] + "/99999")
    try:
        with pytest.raises(ConfigError) as err:
            await store.get(b"x" * 32)
        assert "/99999" in str(err.value) and "databases" in err.value.hint
    finally:
        await store.close()


async def test_crossslot_from_the_server_is_a_config_error(cluster: RedisClusterProcesses) -> None:
    store = open_store(cluster.url)
    assert isinstance(store, RedisStore)
    port = cluster.master_ports()[0]
    try:
        with pytest.raises(ConfigError):
            with translate_errors(store.target):
                from redis.asyncio import Redis

                node = Redis(port=port)
                try:
                    await node.mset({"{a}x": 1, "{b}y": 2})  # a real CROSSSLOT reply
                finally:
                    await node.aclose()
    finally:
        await store.close()


async def test_a_store_without_persistence_warns_once_at_migrate(
    cluster: RedisClusterProcesses, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from keyfob.stores.redis import _client

    monkeypatch.setattr(_client, "_WARNED", set())
    caplog.set_level(logging.WARNING, logger="keyfob.stores.redis")
    for _ in range(2):
        store = open_store(cluster.url)
        try:
            await store.migrate()
        finally:
            await store.close()
    warned = [r.getMessage() for r in caplog.records if "keeps nothing on disk" in r.getMessage()]
    assert len(warned) == 1 and "appendonly yes" in warned[0] and "sign in again" in warned[0]


async def test_the_cluster_layout_spreads_users_and_shards_over_every_master(
    cluster: RedisClusterProcesses,
) -> None:
    store = open_store(cluster.url)
    assert isinstance(store, RedisStore)
    host, port = cluster.url.split("://", 1)[1].split(",")[0].split(":")
    client = RedisCluster(host=host, port=int(port))
    try:
        await client.initialize()
        owners = {client.get_node_from_key(tag).name for tag in store.keys.shard_tags}  # type: ignore[union-attr]
        users = {client.get_node_from_key(store.keys.user(f"user-{i}")).name for i in range(50)}  # type: ignore[union-attr]
        assert len(owners) == len(users) == 3
    finally:
        await client.aclose()
        await store.close()

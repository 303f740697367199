"""Store and feed outages mid-traffic, against the real PostgreSQL and Redis.

The outages are made with a TCP proxy run in-process (:class:`TCPProxy`) between keyfob and the
real server: ``cut()`` aborts every proxied connection and stops listening (connections are
refused: a true outage), ``restore()`` listens again on the same port. The shared servers are
never stopped. The PostgreSQL "killed backends" test terminates only the backends of its own
``application_name``.

What must hold, for every request: 503 (never 500, never a pass) while the store is unreachable;
a live session is never refused with 401 and its cookies are never cleared (not *lost*); a
revoked session never gets a 200 (not *resurrected*); once the server is reachable again the same
Keyfob serves again, without a restart. For hybrid: when the pub/sub feed drops the node falls
back to store checks (``view.live`` is False), revocations still apply, and it resyncs.

These tests wait on real servers and sockets, so they use real time (bounded polling), not a FakeClock.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import httpx
import pytest

from keyfob import Issued, Keyfob
from keyfob.stores import RevocationFeed, SessionStore, open_store
from keyfob.stores.redis import RedisFeed
from tests.conftest import PG_URL, REDIS_URL, require_postgres, require_redis

from ._support import SECRET, make_app

pytestmark = pytest.mark.anyio

APP_NAME = "keyfob-security-faults"
REDIS_DB = REDIS_URL.rsplit("/", 1)[0] + "/12"


# -- the proxy --------------------------------------------------------------------------------------------


class TCPProxy:
    """Forwards 127.0.0.1:<port> to a target; can be cut (refuse + abort) and restored."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._transports: set[asyncio.Transport] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.frozen = False  # freeze(): connections stay open, nothing gets through (a silent line)

    async def start(self) -> TCPProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        pair = (writer.transport, up_writer.transport)
        for t in pair:
            assert isinstance(t, asyncio.Transport)
            self._transports.add(t)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    if self.frozen:
                        continue
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.transport.abort()

        tasks = [asyncio.create_task(pipe(reader, up_writer)), asyncio.create_task(pipe(up_reader, writer))]
        self._tasks.update(tasks)
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.difference_update(tasks)
        for t in pair:
            self._transports.discard(t)  # type: ignore[arg-type]

    def drop_connections(self) -> None:
        """Abort every proxied connection (as a server-side kill would); keep accepting new ones."""
        for t in list(self._transports):
            t.abort()
        self._transports.clear()

    def freeze(self) -> None:
        """A silent line: the connections stay open (no FIN, no RST) and every byte is swallowed."""
        self.frozen = True

    async def cut(self) -> None:
        """Outage: stop listening (new connections are refused) and abort the open ones."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        self.drop_connections()

    async def restore(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def close(self) -> None:
        await self.cut()
        for task in list(self._tasks):
            task.cancel()


@contextlib.asynccontextmanager
async def proxy_to(host: str, port: int) -> AsyncIterator[TCPProxy]:
    proxy = await TCPProxy(host, port).start()
    try:
        yield proxy
    finally:
        await proxy.close()


# -- stores behind the proxy -------------------------------------------------------------------------------


async def _clean_postgres(prefix: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_URL)
    try:
        rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE tablename LIKE $1", prefix + "%")
        for row in rows:
            await conn.execute(f'DROP TABLE IF EXISTS "{row["tablename"]}" CASCADE')
    finally:
        await conn.close()


async def _clean_redis(prefix: str) -> None:
    import redis.asyncio as aioredis

    r = aioredis.Redis.from_url(REDIS_DB)
    try:
        keys = [k async for k in r.scan_iter(match=prefix + "*")]
        if keys:
            await r.delete(*keys)
    finally:
        await r.aclose()


@dataclass
class Backend:
    name: str
    store: Callable[[int], SessionStore]  # proxied port → store
    feed: Callable[[int], RevocationFeed] | None
    port: int
    cleanup: Callable[[], Awaitable[None]]


def backend(name: str) -> Backend:
    tag = uuid.uuid4().hex[:8]
    if name == "postgresql":
        require_postgres()
        prefix = f"kfsec_{tag}_"
        return Backend(
            name,
            lambda p: open_store(
                f"postgresql://postgres@127.0.0.1:{p}/test?application_name={APP_NAME}",
                table_prefix=prefix,
                connect_timeout=1.0,
            ),
            None,
            5432,
            lambda: _clean_postgres(prefix),
        )
    require_redis()
    prefix = f"kfsec:{tag}:"
    return Backend(
        name,
        lambda p: open_store(
            f"redis://127.0.0.1:{p}/12", prefix=prefix, connect_timeout=1.0, socket_timeout=2.0
        ),
        lambda p: RedisFeed(f"redis://127.0.0.1:{p}/12", channel=f"{prefix}revocations", connect_timeout=1.0),
        6379,
        lambda: _clean_redis(prefix),
    )


# -- traffic -------------------------------------------------------------------------------------------


@dataclass
class Hit:
    started: float
    key: str
    status: int
    set_cookie: list[str]


def cookie_line(cookies: dict[str, str]) -> str:
    return "; ".join(f"{k}={v}" for k, v in cookies.items())


async def hit(client: httpx.AsyncClient, key: str, cookies: dict[str, str]) -> Hit:
    started = time.monotonic()
    r = await client.get("/me", headers={"cookie": cookie_line(cookies)})
    return Hit(started, key, r.status_code, r.headers.get_list("set-cookie"))


async def burst(
    client: httpx.AsyncClient, sessions: dict[str, dict[str, str]], seconds: float, concurrency: int = 8
) -> list[Hit]:
    """Every session's cookies sent at least once, then again for ``seconds``, by ``concurrency`` workers.

    At least once whatever the clock says: a burst bounded by the deadline alone could end before a
    worker reached its first live key (once, in a full CI run, the "before" check saw no live
    session at all, ``set() == {200}``: the process must have stalled past the 0.3 s before any worker
    got past the four revoked keys, which answer without suspending; a stall forced into the first
    request reproduces it).
    """
    hits: list[Hit] = []
    deadline = time.monotonic() + seconds
    keys = list(sessions)

    async def worker(offset: int) -> None:
        i = offset
        while i < len(keys) or time.monotonic() < deadline:
            key = keys[i % len(keys)]
            hits.append(await hit(client, key, sessions[key]))
            i += concurrency

    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    return hits


async def wait_until(pred: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await pred():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def assert_no_loss_no_resurrection(hits: list[Hit], live: set[str], revoked: set[str]) -> None:
    for h in hits:
        assert h.status in (200, 401, 503), h
        if h.key in live:
            assert h.status != 401, f"live session {h.key} refused: lost"
            if h.status == 503:
                assert not h.set_cookie, "a 503 must not touch the cookies"
        if h.key in revoked:
            assert h.status != 200, f"revoked session {h.key} accepted: resurrected"


async def make_sessions(
    fob: Keyfob, n: int, n_revoked: int
) -> tuple[dict[str, dict[str, str]], set[str], set[str]]:
    sessions: dict[str, dict[str, str]] = {}
    for i in range(n):
        issued = await fob.create(f"user-{i}", {"role": "user"}, secure=False)
        sessions[issued.session.id] = {c.name: c.value for c in issued.cookies}
    revoked = set(list(sessions)[:n_revoked])
    for sid in revoked:
        await fob.revoke(sid)
    return sessions, set(sessions) - revoked, revoked


@contextlib.asynccontextmanager
async def app_client(fob: Keyfob) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=make_app(fob))
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost", timeout=10) as c:
        yield c


# -- tests --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kind",
    [pytest.param("postgresql", marks=pytest.mark.postgres), pytest.param("redis", marks=pytest.mark.redis)],
)
async def test_store_outage_mid_burst_is_503_then_recovers_without_restart(kind: str) -> None:
    be = backend(kind)
    async with proxy_to("127.0.0.1", be.port) as proxy:
        fob = Keyfob(strategy="database", secret=SECRET, store=be.store(proxy.port), feed=None)
        try:
            sessions, live, revoked = await make_sessions(fob, 16, 4)
            async with app_client(fob) as client:
                before = await burst(client, sessions, 0.3)
                assert {h.status for h in before if h.key in live} == {200}
                assert {h.status for h in before if h.key in revoked} == {401}

                cut_done: list[float] = []

                async def outage() -> None:
                    await asyncio.sleep(0.3)
                    await proxy.cut()
                    cut_done.append(time.monotonic())

                hits, _ = await asyncio.gather(burst(client, sessions, 1.2), outage())
                assert_no_loss_no_resurrection(hits, live, revoked)
                after_cut = [h for h in hits if h.started > cut_done[0]]
                assert after_cut and {h.status for h in after_cut} == {503}, "fail closed: 503 while down"
                r = await client.get("/me", headers={"cookie": cookie_line(sessions[next(iter(live))])})
                assert r.status_code == 503 and r.json()["error"] == "store_unavailable"
                assert r.headers.get("retry-after")

                # a revocation attempted during the outage is refused, not silently dropped
                victim = next(iter(live))
                with pytest.raises(Exception) as info:
                    await fob.revoke(victim)
                assert type(info.value).__name__ == "StoreUnavailable"

                await proxy.restore()
                key = next(iter(live))

                async def back() -> bool:
                    return (await hit(client, key, sessions[key])).status == 200

                await wait_until(back, 10, "the store to serve again")
                final = await burst(client, sessions, 0.3)
                assert {h.status for h in final if h.key in live} == {200}, "sessions lost in the outage"
                assert {h.status for h in final if h.key in revoked} == {401}, (
                    "revocations lost in the outage"
                )
        finally:
            await fob.close()
            await be.cleanup()


@pytest.mark.postgres
async def test_postgres_backends_killed_mid_burst_never_500_never_lost() -> None:
    """``pg_terminate_backend`` on this test's own connections, three times during a burst."""
    require_postgres()
    import asyncpg

    be = backend("postgresql")
    fob = Keyfob(strategy="database", secret=SECRET, store=be.store(5432), feed=None)
    admin = await asyncpg.connect(PG_URL)
    try:
        sessions, live, revoked = await make_sessions(fob, 12, 3)
        async with app_client(fob) as client:
            killed: list[int] = []

            async def killer() -> None:
                for _ in range(3):
                    await asyncio.sleep(0.25)
                    n = await admin.fetchval(
                        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                        "WHERE application_name = $1 AND pid <> pg_backend_pid()",
                        APP_NAME,
                    )
                    killed.append(int(n))

            hits, _ = await asyncio.gather(burst(client, sessions, 1.2), killer())
            assert sum(killed) > 0, "no backend was killed: the test did not test anything"
            assert_no_loss_no_resurrection(hits, live, revoked)
            final = await burst(client, sessions, 0.3)
            assert {h.status for h in final if h.key in live} == {200}
            assert {h.status for h in final if h.key in revoked} == {401}
    finally:
        await admin.close()
        await fob.close()
        await be.cleanup()


@pytest.mark.redis
async def test_redis_connections_killed_mid_burst_never_500_never_lost() -> None:
    """The proxy aborts every connection (what ``CLIENT KILL TYPE normal`` does) three times."""
    be = backend("redis")
    async with proxy_to("127.0.0.1", be.port) as proxy:
        fob = Keyfob(strategy="database", secret=SECRET, store=be.store(proxy.port), feed=None)
        try:
            sessions, live, revoked = await make_sessions(fob, 12, 3)
            async with app_client(fob) as client:

                async def killer() -> None:
                    for _ in range(3):
                        await asyncio.sleep(0.25)
                        proxy.drop_connections()

                hits, _ = await asyncio.gather(burst(client, sessions, 1.2), killer())
                assert_no_loss_no_resurrection(hits, live, revoked)
                final = await burst(client, sessions, 0.3)
                assert {h.status for h in final if h.key in live} == {200}
                assert {h.status for h in final if h.key in revoked} == {401}
        finally:
            await fob.close()
            await be.cleanup()


@pytest.mark.redis
async def test_hybrid_feed_cut_falls_back_to_the_store_and_resyncs() -> None:
    """Node A loses its pub/sub feed; node B revokes. A must refuse at once (store check), then resync."""
    be = backend("redis")
    assert be.feed is not None
    async with proxy_to("127.0.0.1", be.port) as store_proxy, proxy_to("127.0.0.1", be.port) as feed_proxy:
        node_a = Keyfob(
            strategy="hybrid", secret=SECRET, store=be.store(store_proxy.port), feed=be.feed(feed_proxy.port)
        )
        node_b = Keyfob(strategy="hybrid", secret=SECRET, store=be.store(be.port), feed=be.feed(be.port))
        try:
            await node_a.start()
            await node_b.start()

            async def a_live() -> bool:
                return node_a.view.live

            await wait_until(a_live, 5, "node A's feed")
            keep, gone, later = [await node_a.create(f"user-{i}", {}, secure=False) for i in range(3)]

            def access(issued: Issued) -> dict[str, str]:  # the access token only: no transparent refresh
                cookies = {c.name: c.value for c in issued.cookies}
                return {k: v for k, v in cookies.items() if "session" in k}

            async with app_client(node_a) as client:
                assert (await hit(client, "keep", access(keep))).status == 200

                await feed_proxy.cut()

                async def a_not_live() -> bool:
                    return not node_a.view.live

                await wait_until(a_not_live, 5, "node A to notice the feed is gone")
                await node_b.revoke(gone.session.id)  # the event cannot reach A
                assert (await hit(client, "gone", access(gone))).status == 401, (
                    "revocation missed while off-feed"
                )
                assert (await hit(client, "keep", access(keep))).status == 200, (
                    "fallback refused a live session"
                )

                # store down as well while off-feed: fail closed
                await store_proxy.cut()
                r = await hit(client, "keep", access(keep))
                assert r.status == 503 and not r.set_cookie
                await store_proxy.restore()

                await feed_proxy.restore()
                await wait_until(a_live, 10, "node A to resync and go live again")
                assert gone.session.id in node_a.view.revoked, "resync did not load the revocation"
                assert (await hit(client, "gone", access(gone))).status == 401
                assert (await hit(client, "keep", access(keep))).status == 200

                # back on the feed: B's next revocation reaches A through pub/sub, no store read needed
                await node_b.revoke(later.session.id)

                async def propagated() -> bool:
                    return later.session.id in node_a.view.revoked

                await wait_until(propagated, 5, "B's revocation to reach A over the feed")
                assert (await hit(client, "later", access(later))).status == 401
        finally:
            await node_a.close()
            await node_b.close()
            await be.cleanup()


@pytest.mark.redis
async def test_hybrid_store_outage_with_live_feed_keeps_access_tokens_and_refuses_refresh() -> None:
    """By design the access-token check needs no store while the feed is live; a refresh does (→ 503)."""
    be = backend("redis")
    assert be.feed is not None
    async with proxy_to("127.0.0.1", be.port) as store_proxy:
        fob = Keyfob(
            strategy="hybrid", secret=SECRET, store=be.store(store_proxy.port), feed=be.feed(be.port)
        )
        try:
            await fob.start()

            async def live() -> bool:
                return fob.view.live

            await wait_until(live, 5, "the feed")
            issued = await fob.create("u1", {}, secure=False)
            cookies = {c.name: c.value for c in issued.cookies}
            async with app_client(fob) as client:
                await store_proxy.cut()
                access_only = {k: v for k, v in cookies.items() if "session" in k}
                assert (await hit(client, "u1", access_only)).status == 200
                r = await client.post("/auth/refresh", json={"refresh_token": issued.refresh_token})
                assert r.status_code == 503, r.text
                await store_proxy.restore()
                r = await client.post("/auth/refresh", json={"refresh_token": issued.refresh_token})
                assert r.status_code == 200, r.text
        finally:
            await fob.close()
            await be.cleanup()


async def test_a_silent_redis_feed_line_is_dropped_and_an_answering_one_is_kept() -> None:
    """The feed's health check: with the loop running, a line that answers its PINGs stays up; one
    that goes silent (open, but nothing gets through) is dropped within a few health intervals."""
    require_redis()
    async with proxy_to("127.0.0.1", 6379) as proxy:
        url = f"redis://127.0.0.1:{proxy.port}/12?prefix=faults-silent-{uuid.uuid4().hex[:8]}"
        feed = RedisFeed(url, health_interval=0.1)
        states: list[bool] = []
        await feed.start(lambda event: None, states.append)
        try:
            assert states == [True]
            await asyncio.sleep(1.0)  # ten quiet health intervals, each answered by a PONG
            assert states == [True], "an answering line was dropped"
            proxy.freeze()

            async def dropped() -> bool:
                return states[-1] is False

            await wait_until(dropped, 10, "the feed to drop the silent line")
        finally:
            await feed.close()

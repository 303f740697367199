"""The ``database`` strategy on every real store (SQLite, PostgreSQL, Redis; memory as a fourth).

What issue 3 promises beyond the strategy contract: session limits (evict / refuse), cleanup in
bounded batches, Redis TTLs, revoke one / user / others, rotate, concurrent rotate + revoke +
roll, the device list, lifecycle events in the hook *and* the logs, only SHA-256(token) at rest
(read from the raw rows), no store write for a bad token, and Auth.js compatibility end to end.

Each test gets its own corner of the shared servers (the ``make_store`` fixture's private
table / key prefix); time is a :class:`FakeClock`, never a sleep.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import random
import sqlite3
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request

from keyfob import (
    Event,
    FakeClock,
    InvalidToken,
    Keyfob,
    RequestMeta,
    SessionLimitReached,
    SessionRevoked,
    TokenReuseDetected,
)
from keyfob.fastapi import install, sign_in
from keyfob.stores import SessionStore, open_store
from keyfob.web import SetCookie
from tests.conftest import PG_URL, require_postgres
from tests.contract.conftest import PRIVATE_PREFIX, REDIS_TEST_URL, MakeStore, drop_postgres_tables

pytestmark = pytest.mark.anyio

SECRET = "kf-database-secret-0123456789abcdef0123456789abcdef0123456"
DAY = 86400.0
HOUR = 3600.0

UA_CHROME_WINDOWS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
UA_SAFARI_IOS = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.5 Mobile/15E148 Safari/604.1"
)
UA_FIREFOX_MACOS = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14.5; rv:128.0) Gecko/20100101 Firefox/128.0"
UA_CURL = "curl/8.5.0"


class Jar(dict[str, str]):
    """A browser's cookie jar, just enough of one."""

    def apply(self, cookies: Iterable[SetCookie]) -> Jar:
        for c in cookies:
            if c.max_age is not None and c.max_age <= 0:
                self.pop(c.name, None)
            else:
                self[c.name] = c.value
        return self


MakeFob = Callable[..., Awaitable[Keyfob]]


@pytest.fixture
async def make_fob(make_store: MakeStore, clock: FakeClock) -> AsyncIterator[MakeFob]:
    """``await make_fob(**settings)``: a database-strategy Keyfob on this test's store.

    Pass ``store=`` to put several engines (with different settings) on one store object.
    """
    made: list[Keyfob] = []

    async def factory(*, store: SessionStore | None = None, **kw: Any) -> Keyfob:
        kw.setdefault("secret", SECRET)
        fob = Keyfob(strategy="database", store=store or await make_store(), feed=None, clock=clock, **kw)
        await fob.start()
        made.append(fob)
        return fob

    yield factory
    for fob in made:
        await fob.close()


async def login(fob: Keyfob, user: str = "u1", *, ua: str | None = UA_FIREFOX_MACOS,
                ip: str | None = "203.0.113.7", **data: Any) -> Jar:  # fmt: skip
    issued = await fob.create(user, data or {"role": "user"}, RequestMeta(ip=ip, user_agent=ua))
    return Jar().apply(issued.cookies)


def token_of(fob: Keyfob, jar: Jar) -> str:
    return jar[fob.profile(True).session.name]


async def alive(fob: Keyfob, jar: dict[str, str]) -> bool:
    return (await fob.authenticate(jar)).session is not None


# -- raw access to what each store keeps -----------------------------------------------------------


class RawStore:
    """Reads a store's rows behind keyfob's back: everything it holds, and a write detector."""

    def __init__(self, kind: str, url: str, options: dict[str, Any], store: SessionStore) -> None:
        self.kind, self.url, self.options, self.store = kind, url, options, store
        self._sqlite: sqlite3.Connection | None = None

    @property
    def sqlite_path(self) -> str:
        return self.url.split("://", 1)[1][1:]

    def _sqlite_conn(self) -> sqlite3.Connection:
        if self._sqlite is None:
            self._sqlite = sqlite3.connect(self.sqlite_path)
        return self._sqlite

    async def dump(self) -> bytes:
        """Every byte the store holds for keyfob (SQLite: the database and WAL files themselves)."""
        if self.kind == "memory":
            return repr(self.store._s.__dict__).encode()  # type: ignore[attr-defined]
        if self.kind == "sqlite":
            out = b""
            for suffix in ("", "-wal"):
                p = Path(self.sqlite_path + suffix)
                if p.exists():
                    out += p.read_bytes()
            return out
        if self.kind == "postgresql":
            import asyncpg

            prefix = self.options["table_prefix"]
            conn = await asyncpg.connect(PG_URL)
            try:
                out = b""
                for t in ("sessions", "user_versions", "revocations", "meta"):
                    rows = await conn.fetch(f"SELECT row_to_json(t)::text FROM {prefix}{t} AS t")
                    out += "\n".join(r[0] for r in rows).encode()
                return out
            finally:
                await conn.close()
        return repr(await self._redis_state()).encode()

    async def _redis_state(self) -> list[tuple[bytes, Any]]:
        import redis.asyncio as aioredis
        from redis.asyncio.cluster import RedisCluster

        client: Any
        if self.kind == "redis_cluster":  # every master's keys (scan_iter walks them all)
            host, port = self.url.split("://", 1)[1].split(",", 1)[0].split(":")
            client = RedisCluster(host=host, port=int(port))
        else:
            client = aioredis.Redis.from_url(REDIS_TEST_URL)
        try:
            state: list[tuple[bytes, Any]] = []
            async for key in client.scan_iter(match=f"{self.options['prefix']}*", count=1000):
                raw_kind = await client.type(key)
                kind = raw_kind.decode() if isinstance(raw_kind, bytes) else raw_kind
                value: Any
                if kind == "hash":
                    value = sorted((await client.hgetall(key)).items())
                elif kind == "set":
                    value = sorted(await client.smembers(key))
                elif kind == "zset":
                    value = await client.zrange(key, 0, -1, withscores=True)
                else:
                    value = await client.get(key)
                state.append((key, value))
            return sorted(state)
        finally:
            await client.aclose()

    async def snapshot(self) -> Any:
        """Changes on any write: SQLite ``data_version``, PostgreSQL row versions (``xmin``), Redis values."""
        if self.kind == "memory":
            s = self.store._s  # type: ignore[attr-defined]
            return dict(s.rows), dict(s.versions), dict(s.revoked)
        if self.kind == "sqlite":
            db = self._sqlite_conn()
            version = db.execute("PRAGMA data_version").fetchone()[0]
            rows = db.execute("SELECT * FROM keyfob_sessions ORDER BY token_hash").fetchall()
            return version, rows
        if self.kind == "postgresql":
            import asyncpg

            conn = await asyncpg.connect(PG_URL)
            try:
                t = f"{self.options['table_prefix']}sessions"
                rows = await conn.fetch(f"SELECT xmin::text, ctid::text, * FROM {t} ORDER BY token_hash")
                return [tuple(r) for r in rows]
            finally:
                await conn.close()
        return await self._redis_state()

    async def redis_pttl(self, token: str) -> int:
        import redis.asyncio as aioredis

        # the row lives in its user's hash tag; the token's routing pointer (same TTL) names it
        hex_hash = hashlib.sha256(token.encode()).hexdigest()
        client = aioredis.Redis.from_url(REDIS_TEST_URL)
        try:
            base = await client.get(f"{self.options['prefix']}t:{hex_hash}")
            if base is None:
                return -2
            return int(await client.pttl(base + b":s:" + hex_hash.encode()))
        finally:
            await client.aclose()

    def close(self) -> None:
        if self._sqlite is not None:
            self._sqlite.close()


@pytest.fixture
async def raw(store_kind: str, store_url: str, store_options: dict[str, Any],
              make_store: MakeStore) -> AsyncIterator[RawStore]:  # fmt: skip
    r = RawStore(store_kind, store_url, store_options, await make_store())
    yield r
    r.close()


# -- tokens at rest ----------------------------------------------------------------------------------


async def test_tokens_are_256_bit_base64url_and_only_their_sha256_is_stored(
    make_fob: MakeFob, raw: RawStore
) -> None:
    fob = await make_fob(store=raw.store)
    tokens = []
    for i in range(5):
        issued = await fob.create(f"user-{i}", {"role": "user"}, RequestMeta("198.51.100.1", UA_CURL))
        assert issued.access_token is not None
        tokens.append(issued.access_token)
    assert len(set(tokens)) == 5
    for token in tokens:
        assert len(token) == 43 and set(token) <= set(
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        )
        assert len(base64.urlsafe_b64decode(token + "=")) == 32
    # roll and rotate write rows too: still no raw token anywhere
    clock: FakeClock = fob.clock  # type: ignore[assignment]
    clock.advance(DAY + 1)
    jar = Jar({fob.profile(True).session.name: tokens[0]})
    assert (await fob.authenticate(jar)).cookies
    rotated = await fob.rotate(Jar({fob.profile(True).session.name: tokens[1]}))
    assert rotated.access_token is not None
    tokens.append(rotated.access_token)

    held = await raw.dump()
    assert held, "the raw dump must see the rows"
    for token in tokens:
        assert token.encode() not in held, "a raw session token is stored"
    for token in tokens[:1] + tokens[2:]:  # tokens[1] was rotated away: its row is gone
        digest = hashlib.sha256(token.encode()).digest()
        if raw.kind == "sqlite":
            assert digest in held
        else:  # PostgreSQL's row_to_json shows bytea as \x<hex>; Redis keys are s:<hex>
            assert digest.hex().encode() in held or repr(digest).encode() in held
    for token in tokens[:1] + tokens[2:]:
        rec = await fob.store.get(hashlib.sha256(token.encode()).digest())
        assert rec is not None


# -- bad input: 401 and no store write ------------------------------------------------------------


def make_app(fob: Keyfob) -> FastAPI:
    app = FastAPI()
    install(app, fob, csrf=False)

    @app.post("/login")
    async def do_login(request: Request) -> dict[str, Any]:
        body = await request.json()
        issued = await sign_in(request, body["user"], {"role": "user"})
        return {"id": issued.session.id}

    @app.get("/me")
    async def me(request: Request) -> dict[str, Any]:
        from keyfob.fastapi import require_session

        session = await require_session(request)
        return {"user": session.user_id}

    return app


async def client_for(fob: Keyfob) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=make_app(fob)), base_url="https://app.example")


async def test_unknown_or_garbled_token_is_401_with_no_store_write(make_fob: MakeFob, raw: RawStore) -> None:
    fob = await make_fob(store=raw.store)
    jar = await login(fob)
    real = token_of(fob, jar)
    tampered = real[:-1] + ("A" if real[-1] != "A" else "B")
    name = fob.profile(True).session.name
    before = await raw.snapshot()
    async with await client_for(fob) as client:
        for value in ("x", "A" * 43, "_" * 43, tampered, "a.b.c", "%00%01", "é" * 43, "A" * 5000, ""):
            client.cookies.clear()
            r = await client.get("/me", headers={b"cookie": f"{name}={value}".encode()})
            assert r.status_code == 401, (value[:20], r.text)
        r = await client.get("/me", headers={"authorization": f"Bearer {'B' * 43}"})
        assert r.status_code == 401
    assert await raw.snapshot() == before, "a refused token must not cause a store write"
    assert await alive(fob, jar)


async def test_expired_session_is_refused_without_a_store_write(
    make_fob: MakeFob, raw: RawStore, clock: FakeClock
) -> None:
    fob = await make_fob(store=raw.store, max_age=HOUR, update_age=600)
    jar = await login(fob)
    clock.advance(HOUR + 1)
    before = await raw.snapshot()
    result = await fob.authenticate(jar)
    assert result.session is None and result.reason == "session_expired"
    assert await raw.snapshot() == before


# -- max_sessions_per_user -------------------------------------------------------------------------


async def test_session_limit_evicts_the_least_recently_active_session(
    make_fob: MakeFob, clock: FakeClock
) -> None:
    events: list[Event] = []
    fob = await make_fob(max_sessions_per_user=2, session_limit_policy="evict", on_event=events.append)
    first = await login(fob)
    clock.advance(60)
    second = await login(fob)
    other_user = await login(fob, "u2")
    clock.advance(DAY + 1)
    assert (await fob.authenticate(first)).cookies  # first rolls: now the more recently active one
    clock.advance(60)
    third = await login(fob)
    assert await alive(fob, first) and await alive(fob, third)
    assert not await alive(fob, second), "the least recently active session is evicted"
    assert await alive(fob, other_user), "another user's sessions never count"
    assert len(await fob.list_sessions("u1")) == 2
    evicted = [e for e in events if e.name == "revoked"]
    assert len(evicted) == 1 and evicted[0].detail == {"reason": "session_limit"}
    assert evicted[0].user_id == "u1"


async def test_session_limit_evicts_as_many_sessions_as_needed_least_recent_first(
    make_fob: MakeFob, clock: FakeClock
) -> None:
    fob = await make_fob()
    jars = []
    for _ in range(4):
        jars.append(await login(fob))
        clock.advance(60)
    strict = await make_fob(store=fob.store, max_sessions_per_user=2)
    newest = await login(strict)
    assert [await alive(fob, j) for j in jars] == [False, False, False, True]
    assert await alive(fob, newest)


async def test_session_limit_refuse_raises_and_keeps_the_existing_sessions(make_fob: MakeFob) -> None:
    fob = await make_fob(max_sessions_per_user=2, session_limit_policy="refuse")
    a, b = await login(fob), await login(fob)
    with pytest.raises(SessionLimitReached) as info:
        await login(fob)
    assert info.value.status_code == 403 and info.value.code == "session_limit_reached"
    assert await alive(fob, a) and await alive(fob, b)
    assert len(await fob.list_sessions("u1")) == 2
    assert await alive(fob, await login(fob, "u2")), "the limit is per user"
    session = (await fob.authenticate(a)).session
    assert session is not None
    await fob.revoke(session.id)
    assert await alive(fob, await login(fob)), "a freed slot can be used again"


async def test_dead_sessions_do_not_count_towards_the_limit(make_fob: MakeFob, clock: FakeClock) -> None:
    fob = await make_fob(max_sessions_per_user=2, session_limit_policy="refuse", idle_timeout=HOUR,
                         update_age=600)  # fmt: skip
    await login(fob)
    await login(fob)
    clock.advance(HOUR + 1)  # both idle now: dead, though max_age is far away
    assert await alive(fob, await login(fob))
    assert await alive(fob, await login(fob))
    with pytest.raises(SessionLimitReached):
        await login(fob)


async def test_session_limit_refusal_is_403_over_http(make_fob: MakeFob) -> None:
    fob = await make_fob(max_sessions_per_user=1, session_limit_policy="refuse")
    await login(fob, "u1")
    async with await client_for(fob) as client:
        r = await client.post("/login", json={"user": "u1"})
        assert r.status_code == 403
        assert r.json()["error"] == "session_limit_reached"
        session_cookie = fob.profile(True).session.name
        assert not any(c.startswith(session_cookie) for c in r.headers.get_list("set-cookie"))
        assert (await client.post("/login", json={"user": "u2"})).status_code == 200



async def test_session_limit_refuse_holds_under_concurrent_sign_ins(make_fob: MakeFob) -> None:
    events: list[Event] = []
    fob = await make_fob(max_sessions_per_user=3, session_limit_policy="refuse", on_event=events.append)
    results = await asyncio.gather(*(login(fob) for _ in range(20)), return_exceptions=True)
    jars = [r for r in results if isinstance(r, Jar)]
    refused = [r for r in results if isinstance(r, SessionLimitReached)]
    assert len(jars) == 3 and len(refused) == 17, [r for r in results if not isinstance(r, Jar)]
    assert len(await fob.list_sessions("u1")) == 3
    assert all([await alive(fob, j) for j in jars])
    assert len([e for e in events if e.name == "created"]) == 3
    assert not [e for e in events if e.name == "revoked"]


async def test_session_limit_evict_holds_under_concurrent_sign_ins(make_fob: MakeFob) -> None:
    events: list[Event] = []
    fob = await make_fob(max_sessions_per_user=3, session_limit_policy="evict", on_event=events.append)
    results = await asyncio.gather(*(login(fob) for _ in range(20)), return_exceptions=True)
    assert all(isinstance(r, Jar) for r in results), [r for r in results if not isinstance(r, Jar)]
    assert len(await fob.list_sessions("u1")) == 3
    living = [j for j in results if isinstance(j, Jar) and await alive(fob, j)]
    assert len(living) == 3, "every sign-in beyond the limit evicted one older session"
    evicted = [e for e in events if e.name == "revoked"]
    assert len(evicted) == 17 and len({e.session_id for e in evicted}) == 17
    assert all(e.detail == {"reason": "session_limit"} and e.user_id == "u1" for e in evicted)
    assert [await fob.get_session(str(e.session_id)) for e in evicted] == [None] * 17


async def test_session_limit_holds_across_sqlite_connections_to_one_file(tmp_path: Path) -> None:
    """Several workers (here threads, each with its own loop, engine and connection) on one file."""
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    workers = 12
    start = threading.Barrier(workers)
    outcomes: list[str] = []

    async def worker() -> None:
        fob = Keyfob(strategy="database", secret=SECRET, store=url, feed=None,
                     max_sessions_per_user=3, session_limit_policy="refuse")  # fmt: skip
        try:
            await fob.start()
            start.wait(timeout=30)  # a worker that failed to start breaks the barrier: no hang
            await login(fob)
            outcomes.append("created")
        except SessionLimitReached:
            outcomes.append("refused")
        except BaseException as exc:
            start.abort()
            outcomes.append(repr(exc))
        finally:
            await fob.close()

    setup = Keyfob(strategy="database", secret=SECRET, store=url, feed=None)
    await setup.start()  # create the file, WAL mode and the tables once, before the workers race
    await setup.close()

    def run_all() -> None:
        threads = [threading.Thread(target=asyncio.run, args=(worker(),)) for _ in range(workers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    await asyncio.to_thread(run_all)
    assert sorted(outcomes) == ["created"] * 3 + ["refused"] * 9


class _PlainStore:
    """A third-party store: the SessionStore protocol only, without ``add_limited``."""

    def __init__(self, inner: SessionStore) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        if name == "add_limited":
            raise AttributeError(name)
        return getattr(self._inner, name)


@pytest.mark.parametrize("store_kind", ["memory"], indirect=True)
async def test_session_limit_falls_back_to_check_then_add_on_a_store_without_add_limited(
    make_fob: MakeFob, make_store: MakeStore, clock: FakeClock
) -> None:
    events: list[Event] = []
    plain = _PlainStore(await make_store())
    assert isinstance(plain, SessionStore) and not hasattr(plain, "add_limited")
    fob = await make_fob(store=plain, max_sessions_per_user=2, on_event=events.append)
    jars = []
    for _ in range(3):
        jars.append(await login(fob))
        clock.advance(60)
    assert [await alive(fob, j) for j in jars] == [False, True, True]
    assert [e.detail for e in events if e.name == "revoked"] == [{"reason": "session_limit"}]
    refuse = await make_fob(store=plain, max_sessions_per_user=2, session_limit_policy="refuse")
    with pytest.raises(SessionLimitReached):
        await login(refuse)

# -- cleanup -----------------------------------------------------------------------------------------


async def test_cleanup_deletes_only_expired_sessions_in_bounded_batches(
    make_fob: MakeFob, raw: RawStore, clock: FakeClock
) -> None:
    store = raw.store
    short = await make_fob(store=store, max_age=HOUR, update_age=600)
    absolute = await make_fob(store=store, absolute_timeout=2 * HOUR)
    idle = await make_fob(store=store, idle_timeout=HOUR / 2, update_age=600)
    plain = await make_fob(store=store)
    doomed = [await login(short, f"s{i}") for i in range(3)]
    doomed += [await login(absolute, f"a{i}") for i in range(2)]
    doomed += [await login(idle, f"i{i}") for i in range(2)]
    kept = [await login(plain, f"p{i}") for i in range(3)]
    active_idle = await login(idle, "busy")
    for _ in range(6):  # used every 30 minutes: the idle timeout never hits
        clock.advance(HOUR / 2 - 1)
        assert (await idle.authenticate(active_idle)).session is not None
    assert await store.count() == 11

    batches: list[int] = []
    deleted = await plain.cleanup(batch=2, progress=batches.append)
    assert deleted == 7
    assert all(n <= 2 for n in batches) and sum(batches) == 7 and batches[-1] < 2
    assert await store.count() == 4
    for jar in kept:
        assert await alive(plain, jar)
    assert await alive(idle, active_idle)
    for jar in doomed:
        assert await store.get(hashlib.sha256(token_of(plain, jar).encode()).digest()) is None
    assert await plain.cleanup() == 0


async def test_cleanup_lets_authentication_run_between_batches(
    make_fob: MakeFob, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    fob = await make_fob(max_age=HOUR, update_age=600)
    for i in range(30):
        await login(fob, f"old{i}")
    clock.advance(HOUR + 1)
    keeper = await make_fob(store=fob.store)
    live = await login(keeper, "live")
    order: list[str] = []
    reading, authenticated = asyncio.Event(), asyncio.Event()
    real_delete_expired = fob.store.delete_expired

    # Once the reader has started an authentication, which of the two finishes its round trips first is
    # up to the server's load (the reader's fresh pool connection can take longer than all eleven
    # batches on the warm one). So a batch waits for an authentication already under way: a cleanup
    # that held the store across batches never lets it complete, and the wait fails. A cleanup that
    # never yields between batches never lets the reader start, and the order assertion fails.
    async def next_batch_after_the_pending_authentication(now: float, *, batch: int = 1000) -> int:
        if reading.is_set() and not authenticated.is_set():
            try:
                await asyncio.wait_for(authenticated.wait(), 30)
            except TimeoutError:
                pytest.fail("an authentication started during cleanup could not complete between batches")
        return await real_delete_expired(now, batch=batch)

    monkeypatch.setattr(fob.store, "delete_expired", next_batch_after_the_pending_authentication)

    async def reader() -> None:
        for _ in range(10):
            reading.set()
            assert await alive(keeper, live)
            order.append("auth")
            authenticated.set()
            await asyncio.sleep(0)

    await asyncio.gather(fob.cleanup(batch=3, progress=lambda n: order.append("batch")), reader())
    first_auth, last_batch = order.index("auth"), len(order) - 1 - order[::-1].index("batch")
    assert first_auth < last_batch, "authentication waited for the whole cleanup"
    assert await fob.store.count() == 1


@pytest.mark.parametrize("store_kind", [pytest.param("redis", marks=pytest.mark.redis)], indirect=True)
async def test_redis_session_ttl_is_its_remaining_lifetime_and_rolls_with_it(
    make_fob: MakeFob, raw: RawStore, clock: FakeClock
) -> None:
    fob = await make_fob(store=raw.store, max_age=7 * DAY, absolute_timeout=10 * DAY, update_age=DAY)
    jar = await login(fob)
    token = token_of(fob, jar)
    ms = await raw.redis_pttl(token)
    assert 7 * DAY * 1000 - 5000 < ms <= 7 * DAY * 1000
    clock.advance(4 * DAY)
    assert (await fob.authenticate(jar)).cookies  # rolled: now capped by the absolute deadline
    ms = await raw.redis_pttl(token)
    assert 6 * DAY * 1000 - 5000 < ms <= 6 * DAY * 1000
    rotated = await fob.rotate(jar)
    assert rotated.access_token is not None
    assert await raw.redis_pttl(token) == -2, "the rotated-away token's key is gone"
    assert 6 * DAY * 1000 - 5000 < await raw.redis_pttl(rotated.access_token) <= 6 * DAY * 1000


@pytest.mark.parametrize("store_kind", [pytest.param("redis", marks=pytest.mark.redis)], indirect=True)
async def test_redis_ttl_includes_the_idle_timeout(
    make_fob: MakeFob, raw: RawStore, clock: FakeClock
) -> None:
    fob = await make_fob(store=raw.store, idle_timeout=HOUR, update_age=600)
    jar = await login(fob)
    assert HOUR * 1000 - 5000 < await raw.redis_pttl(token_of(fob, jar)) <= HOUR * 1000
    clock.advance(HOUR / 2)
    assert (await fob.authenticate(jar)).cookies
    assert HOUR * 1000 - 5000 < await raw.redis_pttl(token_of(fob, jar)) <= HOUR * 1000


# -- revoke, revoke_user, revoke-others, rotate ----------------------------------------------------


async def test_revoke_one_session_leaves_the_users_others(make_fob: MakeFob) -> None:
    fob = await make_fob()
    phone, laptop = await login(fob), await login(fob)
    sid = (await fob.authenticate(phone)).session.id  # type: ignore[union-attr]
    assert await fob.revoke(sid) is True
    assert not await alive(fob, phone) and await alive(fob, laptop)
    assert await fob.revoke(sid) is False
    assert sid not in [i.id for i in await fob.list_sessions("u1")]


async def test_revoke_user_keeps_only_the_named_session(make_fob: MakeFob) -> None:
    fob = await make_fob()
    phone, laptop, tablet = await login(fob), await login(fob), await login(fob)
    other = await login(fob, "u2")
    keep = (await fob.authenticate(laptop)).session.id  # type: ignore[union-attr]
    assert await fob.revoke_user("u1", keep=keep) == 2
    assert await alive(fob, laptop) and await alive(fob, other)
    assert not await alive(fob, phone) and not await alive(fob, tablet)
    assert [i.id for i in await fob.list_sessions("u1")] == [keep]


async def test_revoke_user_without_keep_signs_out_everywhere(make_fob: MakeFob) -> None:
    fob = await make_fob()
    jars = [await login(fob) for _ in range(3)]
    other = await login(fob, "u2")
    assert await fob.revoke_user("u1") == 3
    assert not any([await alive(fob, j) for j in jars])
    assert await alive(fob, other)
    assert await fob.revoke_user("u1") == 0


async def test_revoke_others_keeps_the_current_session(make_fob: MakeFob) -> None:
    fob = await make_fob()
    phone, laptop = await login(fob), await login(fob)
    n, reissued = await fob.revoke_others(laptop)
    assert (n, reissued) == (1, None)
    assert await alive(fob, laptop) and not await alive(fob, phone)


async def test_rotate_keeps_the_public_id_and_kills_the_old_token(
    make_fob: MakeFob, clock: FakeClock
) -> None:
    fob = await make_fob()
    jar = await login(fob, role="user")
    old = Jar(jar)
    before = (await fob.authenticate(jar)).session
    assert before is not None
    clock.advance(120)
    issued = await fob.rotate(jar, data={"role": "admin"})
    new = Jar(jar).apply(issued.cookies)
    assert token_of(fob, new) != token_of(fob, old)
    after = (await fob.authenticate(new)).session
    assert after is not None and after.id == before.id and after.data == {"role": "admin"}
    assert not await alive(fob, old)
    assert [i.id for i in await fob.list_sessions("u1")] == [before.id]
    with pytest.raises(InvalidToken):
        await fob.rotate(old)


async def test_a_revoked_session_cannot_be_rotated(make_fob: MakeFob) -> None:
    fob = await make_fob()
    jar = await login(fob)
    session = (await fob.authenticate(jar)).session
    assert session is not None
    await fob.revoke(session.id)
    with pytest.raises(SessionRevoked):  # and it says why
        await fob.rotate(jar)
    assert await fob.list_sessions("u1") == []


# -- concurrency -----------------------------------------------------------------------------------


async def test_concurrent_rotates_of_one_session_leave_exactly_one_live_token(make_fob: MakeFob) -> None:
    fob = await make_fob()
    jar = await login(fob)
    results = await asyncio.gather(*(fob.rotate(jar) for _ in range(20)), return_exceptions=True)
    winners = [r for r in results if not isinstance(r, BaseException)]
    assert len(winners) == 1
    assert all(isinstance(r, InvalidToken) for r in results if isinstance(r, BaseException))
    assert not await alive(fob, jar)
    assert await alive(fob, Jar(jar).apply(winners[0].cookies))
    assert len(await fob.list_sessions("u1")) == 1
    assert await fob.store.count() == 1


async def test_concurrent_rotate_and_revoke_never_leave_a_live_token(make_fob: MakeFob) -> None:
    fob = await make_fob()
    rng = random.Random(3)

    async def later(aw: Awaitable[Any], delay: float) -> Any:
        await asyncio.sleep(delay)
        return await aw

    for round_ in range(15):
        jar = await login(fob, f"user{round_}")
        session = (await fob.authenticate(jar)).session
        assert session is not None
        calls: list[Awaitable[Any]] = [later(fob.rotate(jar), rng.random() * 0.004) for _ in range(8)]
        calls.insert(rng.randrange(len(calls) + 1), later(fob.revoke(session.id), rng.random() * 0.004))
        results = await asyncio.gather(*calls, return_exceptions=True)
        issued = [r for r in results if hasattr(r, "cookies")]
        assert len(issued) <= 1, "two rotations of one token both succeeded"
        for r in results:
            assert not isinstance(r, BaseException) or isinstance(r, InvalidToken | SessionRevoked), r
        # whatever the interleaving, the session is dead once revoke() has returned
        assert not await alive(fob, jar)
        for i in issued:
            assert not await alive(fob, Jar(jar).apply(i.cookies)), "a revoked session came back"
        assert await fob.store.get_by_id(session.id) is None
        assert await fob.list_sessions(f"user{round_}") == []


async def test_concurrent_rolls_leave_one_live_session(make_fob: MakeFob, clock: FakeClock) -> None:
    events: list[Event] = []
    fob = await make_fob(on_event=events.append)
    jar = await login(fob)
    clock.advance(DAY + 1)
    results = await asyncio.gather(*(fob.authenticate(Jar(jar)) for _ in range(25)))
    assert all(r.session is not None for r in results)
    ids = {r.session.id for r in results if r.session is not None}
    assert len(ids) == 1
    assert len(await fob.list_sessions("u1")) == 1 and await fob.store.count() == 1
    for r in results:  # a roll re-sends the same token with a later expiry, never a new one
        assert all(c.value == token_of(fob, jar) for c in r.cookies)
    assert await alive(fob, jar)
    assert len([e for e in events if e.name == "rolled"]) >= 1


# -- the device list -------------------------------------------------------------------------------


async def test_list_sessions_reports_ip_device_times_and_the_current_flag(
    make_fob: MakeFob, clock: FakeClock
) -> None:
    fob = await make_fob()
    t0 = clock()
    windows = await login(fob, ua=UA_CHROME_WINDOWS, ip="198.51.100.4")
    clock.advance(10)
    iphone = await login(fob, ua=UA_SAFARI_IOS, ip="2001:db8::7")
    clock.advance(10)
    mac = await login(fob, ua=UA_FIREFOX_MACOS, ip="203.0.113.9")
    clock.advance(10)
    script = await login(fob, ua=UA_CURL, ip=None)
    clock.advance(10)
    bare = await login(fob, ua="", ip=None)
    await login(fob, "someone-else")
    clock.advance(DAY + 1)
    assert (await fob.authenticate(mac)).cookies  # mac rolls: its last-seen moves
    current = (await fob.authenticate(iphone)).session
    assert current is not None

    infos = {i.ip or i.device: i for i in await fob.list_sessions("u1", current=current.id)}
    assert len(infos) == 5
    win, ios, ff = infos["198.51.100.4"], infos["2001:db8::7"], infos["203.0.113.9"]
    assert win.device == "Chrome on Windows" and win.user_agent == UA_CHROME_WINDOWS
    assert ios.device in ("Safari on iOS", "Mobile Safari on iOS")
    assert ff.device == "Firefox on macOS"
    assert infos["curl"].device == "curl" and infos["curl"].ip is None
    assert infos["Unknown device"].user_agent in ("", None)
    assert (win.created_at, ios.created_at, ff.created_at) == (t0, t0 + 10, t0 + 20)
    assert win.last_seen_at == t0 and ff.last_seen_at == clock()
    assert [i.current for i in infos.values()].count(True) == 1 and ios.current
    assert all(i.user_id == "u1" for i in infos.values())
    body = ios.to_json()
    assert set(body) == {"id", "created", "last_seen", "expires", "ip", "user_agent", "device", "current",
                         "impersonated_by"}
    assert body["created"].endswith("Z") and body["current"] is True
    for jar in (windows, script, bare):
        assert await alive(fob, jar)


async def test_device_management_routes_over_http(make_fob: MakeFob) -> None:
    fob = await make_fob()
    foreign = await fob.create("u2", {})
    phone = await fob.create("u1", {}, RequestMeta("198.51.100.4", UA_SAFARI_IOS))
    async with await client_for(fob) as client:
        r = await client.post("/login", json={"user": "u1"}, headers={"user-agent": UA_FIREFOX_MACOS})
        assert r.status_code == 200
        listed = (await client.get("/auth/sessions")).json()
        assert len(listed) == 2 and [s["current"] for s in listed].count(True) == 1
        mine = next(s for s in listed if s["current"])
        assert mine["device"] == "Firefox on macOS" and mine["user_agent"] == UA_FIREFOX_MACOS
        assert set(mine) == {"id", "created", "last_seen", "expires", "ip", "user_agent", "device", "current",
                             "impersonated_by"}
        assert (await client.delete(f"/auth/sessions/{foreign.session.id}")).status_code == 404
        assert (await client.delete("/auth/sessions/no-such-id")).status_code == 404
        assert (await client.delete(f"/auth/sessions/{phone.session.id}")).status_code == 200
        assert [s["id"] for s in (await client.get("/auth/sessions")).json()] == [mine["id"]]
        laptop = await fob.create("u1", {})
        r = await client.post("/auth/sessions/revoke-others")
        assert r.status_code == 200 and r.json() == {"revoked": 1}
        assert (await client.get("/me")).status_code == 200
    assert not await alive(fob, Jar().apply(laptop.cookies))
    assert await alive(fob, Jar().apply(foreign.cookies)), "another user's session is untouchable"


# -- events: the hook and the logs -----------------------------------------------------------------


async def test_lifecycle_events_reach_the_hook_and_the_logs_with_public_ids_only(
    make_fob: MakeFob, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="keyfob")
    events: list[Event] = []
    fob = await make_fob(on_event=events.append, idle_timeout=HOUR, update_age=600)
    tokens: set[str] = set()

    jar = await login(fob)  # created
    tokens.add(token_of(fob, jar))
    sid = (await fob.authenticate(jar)).session.id  # type: ignore[union-attr]
    clock.advance(700)
    jar.apply((await fob.authenticate(jar)).cookies)  # rolled
    issued = await fob.rotate(jar)  # rotated
    jar.apply(issued.cookies)
    tokens.add(token_of(fob, jar))
    await fob.revoke(sid)  # revoked
    idle = await login(fob, "u2")
    tokens.add(token_of(fob, idle))
    idle_sid = (await fob.authenticate(idle)).session.id  # type: ignore[union-attr]
    clock.advance(HOUR + 1)
    assert (await fob.authenticate(idle)).reason == "session_expired"  # expired
    for _ in range(2):
        tokens.add(token_of(fob, await login(fob, "u3")))
    await fob.revoke_user("u3")  # revoked x2

    names = [(e.name, e.session_id) for e in events]
    assert names[:5] == [("created", sid), ("rolled", sid), ("rotated", sid), ("revoked", sid),
                         ("created", idle_sid)]  # fmt: skip
    assert ("expired", idle_sid) in names
    assert [n for n, _ in names].count("revoked") == 3
    assert all(e.session_id for e in events)

    logged = [r for r in caplog.records if r.name == "keyfob" and hasattr(r, "keyfob_event")]
    assert [(r.keyfob_event, r.session_id) for r in logged] == names  # type: ignore[attr-defined]
    for record in logged:
        text = record.getMessage() + repr(record.__dict__)
        assert not any(t in text for t in tokens), "a token reached the logs"
    for e in events:
        assert not any(t in repr(e) for t in tokens)


async def test_hybrid_reuse_detection_is_logged_with_the_family_id_only(
    make_store: MakeStore, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="keyfob")
    fob = Keyfob(strategy="hybrid", secret=SECRET, store=await make_store(), feed=None, clock=clock)
    try:
        issued = await fob.create("u1", {})
        stolen = issued.refresh_token
        assert stolen is not None
        legit = await fob.refresh(stolen)
        clock.advance(fob.settings.refresh_grace + 1)
        with pytest.raises(TokenReuseDetected):
            await fob.refresh(stolen)
    finally:
        await fob.close()
    tokens = {stolen, legit.refresh_token, legit.access_token, issued.access_token} - {None}
    logged = [r for r in caplog.records if getattr(r, "keyfob_event", None) == "reuse_detected"]
    assert [r.session_id for r in logged] == [legit.session.id]  # type: ignore[attr-defined]
    for record in caplog.records:
        text = record.getMessage() + repr(record.__dict__)
        assert not any(t in text for t in tokens if t)


async def test_a_revoke_that_finds_nothing_emits_no_event(make_fob: MakeFob) -> None:
    events: list[Event] = []
    fob = await make_fob(on_event=events.append)
    assert await fob.revoke("no-such-session") is False
    assert events == []


# -- Auth.js compatibility, end to end --------------------------------------------------------------


@pytest.mark.postgres
async def test_authjs_compat_authenticates_a_session_the_pg_adapter_wrote(clock: FakeClock) -> None:
    require_postgres()
    import asyncpg

    table = f"kf_authjs_e2e_{PRIVATE_PREFIX}"
    prefix = f"{PRIVATE_PREFIX}_aje2e_"
    token = "0f8fad5b-d9cb-469f-a165-70867728950e"  # Auth.js's sessionToken is a random UUID
    conn = await asyncpg.connect(PG_URL)
    try:
        # exactly the table @auth/pg-adapter's migration creates, and the row Next.js writes at sign-in
        await conn.execute(f"DROP TABLE IF EXISTS {table}")
        await conn.execute(
            f'CREATE TABLE {table} (id SERIAL, "userId" INTEGER NOT NULL, expires TIMESTAMPTZ NOT NULL, '
            '"sessionToken" VARCHAR(255) NOT NULL, PRIMARY KEY (id))'
        )
        await conn.execute(
            f'INSERT INTO {table} ("userId", expires, "sessionToken") VALUES (42, to_timestamp($1), $2)',
            clock() + 30 * DAY, token,
        )  # fmt: skip
        store = open_store(PG_URL, authjs_compat=True, authjs_table=table, table_prefix=prefix)
        fob = Keyfob(strategy="database", secret=SECRET, store=store, feed=None, clock=clock,
                     cookie_name="authjs.session-token")  # fmt: skip
        try:
            await _check_authjs_row(fob, token, "42")
            clock.advance(DAY + 1)
            rolled = await fob.authenticate({fob.profile(True).session.name: token})
            assert rolled.session is not None and rolled.cookies
            expires = await conn.fetchval(
                f'SELECT extract(epoch from expires) FROM {table} WHERE "sessionToken" = $1', token
            )
            assert float(expires) == pytest.approx(clock() + 30 * DAY, abs=1), "Next.js sees the new expiry"
            new_token = await _rotate_authjs(fob, token, rolled.session.id)
            assert await conn.fetchval(f'SELECT "sessionToken" FROM {table}') == new_token
            await fob.revoke(rolled.session.id)
            assert await conn.fetchval(f"SELECT count(*) FROM {table}") == 0
        finally:
            await fob.close()
    finally:
        await conn.execute(f"DROP TABLE IF EXISTS {table}")
        await conn.close()
        await drop_postgres_tables(prefix)


async def test_authjs_compat_authenticates_a_session_row_on_sqlite(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "next.db"
    token = "7c9e6679-7425-40de-944b-e07fc1f90ae7"
    db = sqlite3.connect(path)
    db.execute('CREATE TABLE sessions (id TEXT PRIMARY KEY, "sessionToken" TEXT UNIQUE NOT NULL, '
               '"userId" TEXT NOT NULL, expires DATETIME NOT NULL)')  # fmt: skip
    expires_ms = int((clock() + 30 * DAY) * 1000)  # Prisma's adapter keeps epoch milliseconds
    db.execute("INSERT INTO sessions VALUES ('cuid-1', ?, 'user-1', ?)", (token, expires_ms))
    db.commit()
    fob = Keyfob(strategy="database", secret=SECRET, store=f"sqlite:///{path}", authjs_compat=True,
                 clock=clock)  # fmt: skip
    try:
        await _check_authjs_row(fob, token, "user-1")
        session = (await fob.authenticate({fob.profile(True).session.name: token})).session
        assert session is not None and session.id == "cuid-1"
        new_token = await _rotate_authjs(fob, token, "cuid-1")
        assert db.execute('SELECT "sessionToken" FROM sessions').fetchall() == [(new_token,)]
        await fob.revoke("cuid-1")
        assert db.execute("SELECT count(*) FROM sessions").fetchone()[0] == 0
    finally:
        await fob.close()
        db.close()


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def test_authjs_compat_holds_the_session_limit_under_concurrent_sign_ins(
    kind: str, tmp_path: Path, clock: FakeClock
) -> None:
    table = f"kf_authjs_limit_{PRIVATE_PREFIX}"
    prefix = f"{PRIVATE_PREFIX}_ajlim_"
    if kind == "postgresql":
        require_postgres()
        url = PG_URL
    else:
        url = f"sqlite:///{tmp_path / 'next.db'}"

    async def drop_table() -> None:
        if kind == "postgresql":
            import asyncpg

            conn = await asyncpg.connect(PG_URL)
            try:
                await conn.execute(f"DROP TABLE IF EXISTS {table}")
            finally:
                await conn.close()
            await drop_postgres_tables(prefix)

    await drop_table()
    try:
        for policy, issued in (("refuse", 2), ("evict", 6)):
            store = open_store(url, authjs_compat=True, authjs_table=table, table_prefix=prefix)
            fob = Keyfob(strategy="database", secret=SECRET, store=store, feed=None, clock=clock,
                         max_sessions_per_user=2, session_limit_policy=policy)  # fmt: skip
            try:
                await fob.start()
                await fob.store.delete_user("42")
                results = await asyncio.gather(*(login(fob, "42") for _ in range(6)), return_exceptions=True)
                jars = [r for r in results if isinstance(r, Jar)]
                assert len(jars) == issued, results
                assert all(isinstance(r, (Jar, SessionLimitReached)) for r in results), results
                assert len(await fob.list_sessions("42")) == 2
                assert sum([await alive(fob, j) for j in jars]) == 2
            finally:
                await fob.close()
    finally:
        await drop_table()

async def _check_authjs_row(fob: Keyfob, token: str, user_id: str) -> None:
    name = fob.profile(True).session.name
    result = await fob.authenticate({name: token})
    assert result.session is not None, result.reason
    assert result.session.user_id == user_id and result.session.strategy == "database"
    assert result.cookies == []  # nothing to roll yet
    for bad in (token[:-1] + "0", "not-a-session", "x" * 300):
        refused = await fob.authenticate({name: bad})
        assert refused.session is None and refused.reason == "invalid_token"


async def _rotate_authjs(fob: Keyfob, token: str, session_id: str) -> str:
    """Rotate an Auth.js session: same row and id, a new raw token; the old one is dead."""
    name = fob.profile(True).session.name
    issued = await fob.rotate({name: token})
    assert issued.access_token is not None and issued.access_token != token
    assert issued.session.id == session_id
    now = await fob.authenticate({name: issued.access_token})
    assert now.session is not None and now.session.id == session_id
    assert (await fob.authenticate({name: token})).session is None
    return issued.access_token


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def test_authjs_compat_create_returns_the_rows_id_so_revoke_and_events_use_it(
    kind: str, tmp_path: Path, clock: FakeClock
) -> None:
    """The pg-adapter's ``id SERIAL`` (and SQLite's INTEGER PRIMARY KEY) cannot hold keyfob's random
    ids: the database assigns one, and that is the id create() must hand back."""
    table = f"kf_authjs_ids_{PRIVATE_PREFIX}"
    prefix = f"{PRIVATE_PREFIX}_ajid_"
    ddl = {
        "postgresql": f'CREATE TABLE {table} (id SERIAL, "userId" INTEGER NOT NULL, expires TIMESTAMPTZ '
                      'NOT NULL, "sessionToken" VARCHAR(255) NOT NULL, PRIMARY KEY (id))',
        "sqlite": f'CREATE TABLE {table} (id INTEGER PRIMARY KEY AUTOINCREMENT, "userId" INTEGER NOT NULL, '
                  'expires TEXT NOT NULL, "sessionToken" TEXT NOT NULL UNIQUE)',
    }[kind]  # fmt: skip
    if kind == "postgresql":
        require_postgres()
        import asyncpg

        url = PG_URL
        conn = await asyncpg.connect(PG_URL)
        await conn.execute(f"DROP TABLE IF EXISTS {table}")
        await conn.execute(ddl)

        async def row_ids() -> list[str]:
            return [str(r[0]) for r in await conn.fetch(f'SELECT id::text FROM {table} WHERE "userId" = 42')]
    else:
        url = f"sqlite:///{tmp_path / 'next.db'}"
        db = sqlite3.connect(tmp_path / "next.db")
        db.execute(ddl)
        db.commit()

        async def row_ids() -> list[str]:
            rows = db.execute(f'SELECT CAST(id AS TEXT) FROM {table} WHERE "userId" = 42')
            return [str(r[0]) for r in rows]

    events: list[Any] = []
    store = open_store(url, authjs_compat=True, authjs_table=table, table_prefix=prefix)
    fob = Keyfob(strategy="database", secret=SECRET, store=store, feed=None, clock=clock,
                 cookie_name="authjs.session-token", on_event=events.append)  # fmt: skip
    try:
        await fob.start()
        issued = await fob.create("42")
        [stored] = await row_ids()
        assert stored.isdigit()  # the database's own id, as Next.js would see it
        assert issued.session.id == stored
        assert [(e.name, e.session_id) for e in events] == [("created", stored)]
        assert await fob.revoke(issued.session.id) is True
        assert await row_ids() == []
    finally:
        await fob.close()
        if kind == "postgresql":
            await conn.execute(f"DROP TABLE IF EXISTS {table}")
            await conn.close()
            await drop_postgres_tables(prefix)
        else:
            db.close()

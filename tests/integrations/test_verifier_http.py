"""keyfob.Verifier against the real thing: a JWKS served over HTTP by uvicorn, real Redis/PostgreSQL feeds.

The JWKS is served by keyfob's own routes (``auth_routes``) under uvicorn, in a thread, on a free
loopback port. The verifier fetches it with the standard library, as another service would. These
tests wait on real sockets and servers, so they use real time with bounded polling.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from keyfob import InvalidToken, Keyfob, StoreUnavailable, Verifier
from keyfob._bench.http import _free_port as free_port
from keyfob.starlette import KeyfobMiddleware, auth_routes
from keyfob.stores import RevocationFeed, SessionStore
from tests.conftest import (
    OLD_SECRET,
    PG_URL,
    REDIS_URL,
    SECRET,
    require_postgres,
    require_redis,
    require_service,
)

pytestmark = pytest.mark.anyio

NEW_SECRET = "kf-test-new-secret-00112233445566778899aabbccddeeff00112233"
JWKS_PATH = "/.well-known/jwks.json"
REDIS_DB = REDIS_URL.rsplit("/", 1)[0] + "/14"


@contextlib.contextmanager
def serve(app: Starlette) -> Iterator[str]:
    """Run ``app`` under uvicorn in a thread on a free loopback port; yield its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           access_log=False, lifespan="off"))
    thread = threading.Thread(target=server.run, name="uvicorn-jwks", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def jwks_app(fob: Keyfob) -> Starlette:
    """An app serving keyfob's routes, ``GET /.well-known/jwks.json`` among them."""
    return Starlette(routes=auth_routes(fob), middleware=[Middleware(KeyfobMiddleware, fob=fob)])


async def access_token(fob: Keyfob, user: str = "u1") -> tuple[str, str]:
    issued = await fob.create(user, {"role": "user"})
    assert issued.access_token is not None
    return issued.access_token, issued.session.id


async def eventually(check: Callable[[], Awaitable[bool] | bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s")
        await asyncio.sleep(0.02)


def outcome(verifier: Verifier, token: str) -> str:
    try:
        verifier.verify(token)
    except Exception as exc:
        return type(exc).__name__
    return "ok"


# -- JWKS over HTTP ---------------------------------------------------------------------------------------


@pytest.fixture
async def issuer() -> AsyncIterator[Keyfob]:
    async with Keyfob(strategy="hybrid", secret=SECRET, jwks=True, store="memory://") as fob:
        yield fob


async def test_eddsa_tokens_verify_with_the_jwks_fetched_over_http(issuer: Keyfob) -> None:
    token, sid = await access_token(issuer)
    with serve(jwks_app(issuer)) as base:
        async with Verifier(jwks_url=base + JWKS_PATH) as verifier:
            claims = verifier.verify(token)
            assert (claims["sub"], claims["sid"]) == ("u1", sid)
            key_ring = verifier.key_ring
            assert key_ring is not None and [k.kid for k in key_ring] == [issuer.access_ring.current.kid]
            assert all(k.private_key is None for k in key_ring)  # public keys only


async def test_jwks_only_verifier_refuses_hs256_wrong_audience_and_refresh_tokens(issuer: Keyfob) -> None:
    issued = await issuer.create("u1")
    async with Keyfob(strategy="hybrid", secret=SECRET, store="memory://") as hs:  # same secret, HS256
        hs_token, _ = await access_token(hs)
    async with Keyfob(strategy="hybrid", secret=SECRET, jwks=True, store="memory://",
                      extra={"audience": "billing"}) as other_audience:
        billing_token, _ = await access_token(other_audience)
    with serve(jwks_app(issuer)) as base:
        async with Verifier(jwks_url=base + JWKS_PATH) as verifier:
            for bad in (hs_token, billing_token, issued.refresh_token or ""):
                with pytest.raises(InvalidToken):
                    verifier.verify(bad)
            assert verifier.verify(issued.access_token or "")["sub"] == "u1"


async def test_unreachable_or_broken_jwks_fails_start_with_store_unavailable(issuer: Keyfob,
                                                                          refused_port: int) -> None:
    with pytest.raises(StoreUnavailable):
        await Verifier(jwks_url=f"http://127.0.0.1:{refused_port}{JWKS_PATH}", timeout=2).start()
    with serve(jwks_app(issuer)) as base:
        with pytest.raises(StoreUnavailable):
            await Verifier(jwks_url=base + "/nowhere.json").start()  # 404
        async with Keyfob(strategy="hybrid", secret=SECRET, store="memory://") as hs:
            with serve(jwks_app(hs)) as hs_base, pytest.raises(StoreUnavailable):
                await Verifier(jwks_url=hs_base + JWKS_PATH).start()  # HS256 issuer: empty JWKS


@dataclass
class Published:
    """What the issuer's JWKS endpoint serves, and how often it was asked."""

    fob: Keyfob
    fetches: int = 0


async def test_rotation_unknown_kid_triggers_one_rate_limited_refetch_and_old_keys_keep_verifying() -> None:
    """New key signs, old key verifies until its tokens expire: the verifier follows the issuer's JWKS."""
    before = Keyfob(strategy="hybrid", secret=OLD_SECRET, jwks=True, store="memory://")
    rotated = Keyfob(strategy="hybrid", secret=[NEW_SECRET, OLD_SECRET], jwks=True, store="memory://")
    published = Published(before)

    async def jwks(request: Request) -> Response:
        published.fetches += 1
        return JSONResponse(published.fob.jwks())

    try:
        old_token, _ = await access_token(before)
        new_token, _ = await access_token(rotated)
        with serve(Starlette(routes=[Route(JWKS_PATH, jwks)])) as base:
            async with Verifier(jwks_url=base + JWKS_PATH, refetch_interval=30) as verifier:
                assert published.fetches == 1
                assert verifier.verify(old_token)["sub"] == "u1"
                published.fob = rotated  # the issuer rotates: new key first, old key still published
                with pytest.raises(InvalidToken):
                    verifier.verify(new_token)  # sync, no I/O: refused now, refetch scheduled
                await eventually(lambda: outcome(verifier, new_token) == "ok")
                assert verifier.verify(old_token)["sub"] == "u1"  # overlap: the old key still verifies
                assert published.fetches == 2
                # an attacker minting unknown kids cannot make the verifier hammer the issuer
                async with Keyfob(strategy="hybrid", secret="kf-attacker-" + "x" * 40, jwks=True,
                                  store="memory://") as attacker:
                    forged, _ = await access_token(attacker)
                for _ in range(20):
                    with pytest.raises(InvalidToken):
                        verifier.verify(forged)
                await asyncio.sleep(0.2)
                assert published.fetches == 2
    finally:
        await before.close()
        await rotated.close()


# -- revocation over real feeds ----------------------------------------------------------------------------


Parts = tuple[Callable[[], SessionStore], Callable[[], RevocationFeed]]


@pytest.fixture(params=[pytest.param("redis", marks=pytest.mark.redis),
                        pytest.param("postgresql", marks=pytest.mark.postgres)])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Parts]:
    """Factories for a store + feed pair private to this test (own key/table prefix and channel)."""
    tag = f"kfv{uuid.uuid4().hex[:8]}"
    if request.param == "redis":
        require_redis()
        from keyfob.stores.redis import RedisFeed, RedisStore

        yield (lambda: RedisStore(REDIS_DB, prefix=f"{tag}:"),
               lambda: RedisFeed(REDIS_DB, channel=f"{tag}:rev"))
        from tests.contract.conftest import delete_redis_keys

        await delete_redis_keys(f"{tag}:", REDIS_DB)
    else:
        require_postgres()
        from keyfob.stores.sql import PostgresFeed, SQLStore

        yield (lambda: SQLStore(PG_URL, table_prefix=f"{tag}_"),
               lambda: PostgresFeed(PG_URL, channel=f"{tag}_rev"))
        from tests.contract.conftest import drop_postgres_tables

        await drop_postgres_tables(f"{tag}_", PG_URL)


async def test_revoked_session_is_refused_through_a_real_feed(issuer: Keyfob, backend: Parts) -> None:
    make_store, make_feed = backend
    fob = Keyfob(strategy="hybrid", secret=SECRET, jwks=True, store=make_store(), feed=make_feed())
    async with fob:
        token, sid = await access_token(fob)
        other, _ = await access_token(fob, "u2")
        with serve(jwks_app(issuer)) as base:  # any node serves the same JWKS (keys derive from the secret)
            async with Verifier(jwks_url=base + JWKS_PATH, feed=make_feed(), store=make_store()) as verifier:
                await eventually(lambda: verifier.view is not None and verifier.view.live)
                assert verifier.verify(token)["sid"] == sid
                await fob.revoke(sid)
                await eventually(lambda: outcome(verifier, token) == "SessionRevoked")
                await fob.bump_user_version("u2")
                await eventually(lambda: outcome(verifier, other) == "SessionRevoked")
                fresh, _ = await access_token(fob, "u2")
                assert verifier.verify(fresh)["sub"] == "u2"


# -- feed outage: a Redis server of our own, stopped and restarted ----------------------------------------


class OwnRedis:
    """A throwaway ``redis-server`` on a free port (no persistence): ours to stop and start."""

    def __init__(self) -> None:
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port),
             "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 0.2):
                return
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(5)
            self.proc = None


@pytest.fixture
def own_redis() -> Iterator[OwnRedis]:
    require_service("redis-server", shutil.which("redis-server") is not None, "install redis-server")
    server = OwnRedis()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.redis
async def test_feed_down_fails_closed_with_store_unavailable_and_recovers(issuer: Keyfob,
                                                                          own_redis: OwnRedis) -> None:
    async with Keyfob(strategy="hybrid", secret=SECRET, jwks=True, store=own_redis.url) as fob:
        token, sid = await access_token(fob)
        async with Verifier(keys=issuer.jwks(), feed=own_redis.url) as verifier:
            await eventually(lambda: outcome(verifier, token) == "ok")
            own_redis.stop()
            await eventually(lambda: outcome(verifier, token) == "StoreUnavailable")
            with pytest.raises(StoreUnavailable):
                verifier.verify(token)
            with pytest.raises(InvalidToken):  # a bad token is still a 401, not a 503
                verifier.verify("garbage")
            old_epoch = fob.view.epoch
            own_redis.start()  # an empty server: the store lost its data (a new epoch)...
            # ...so the token minted before the loss is refused from now on (issue 11: wipes)
            await eventually(lambda: outcome(verifier, token) == "SessionRevoked", timeout=10)
            await eventually(lambda: fob.view.live and fob.view.epoch not in (None, old_epoch), timeout=10)
            token, sid = await access_token(fob)  # minted under the new epoch
            await eventually(lambda: outcome(verifier, token) == "ok", timeout=10)
            await fob.revoke(sid)
            await eventually(lambda: outcome(verifier, token) == "SessionRevoked")

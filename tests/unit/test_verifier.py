"""keyfob.Verifier with explicit keys and the in-process memory feed (no servers, a fake clock).

The issuer is a real ``Keyfob(strategy="hybrid", jwks=True)``; the verifier gets its public keys
(or, for HS256, its key ring) and the in-process feed a second node on the same store would get.
JWKS over HTTP and the Redis/PostgreSQL feeds: tests/integrations/test_verifier_http.py.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from keyfob import (
    ConfigError,
    FakeClock,
    InvalidToken,
    Issued,
    Keyfob,
    SessionExpired,
    SessionRevoked,
    StoreUnavailable,
    Verifier,
)
from keyfob.stores.memory import MemoryFeed
from keyfob.tokens import KeyRing
from tests.conftest import OLD_SECRET, SECRET

pytestmark = pytest.mark.anyio

NEW_SECRET = "kf-test-new-secret-00112233445566778899aabbccddeeff00112233"


@pytest.fixture
def store_url() -> str:
    return f"memory://verifier-{uuid.uuid4().hex}"  # shared by every store/feed opened with it


@pytest.fixture
async def issuer(clock: FakeClock, store_url: str) -> AsyncIterator[Keyfob]:
    fob = Keyfob(strategy="hybrid", secret=SECRET, jwks=True, store=store_url, clock=clock)
    await fob.start()
    yield fob
    await fob.close()


async def sign_in(fob: Keyfob, user: str = "u1") -> tuple[str, Issued]:
    issued = await fob.create(user, {"role": "admin"})
    assert issued.access_token is not None
    return issued.access_token, issued


async def settle() -> None:
    """Let the memory feed deliver (it hands events over with loop.call_soon)."""
    for _ in range(3):
        await asyncio.sleep(0)


# -- keys and claims ------------------------------------------------------------------------------------


async def test_eddsa_access_token_verifies_with_the_issuers_public_jwks(issuer: Keyfob,
                                                                        clock: FakeClock) -> None:
    token, issued = await sign_in(issuer)
    claims = Verifier(keys=issuer.jwks(), clock=clock).verify(token)
    assert claims["sub"] == "u1"
    assert claims["sid"] == issued.session.id
    assert claims["role"] == "admin"
    assert claims["aud"] == "keyfob"


async def test_shared_hs256_key_ring_verifies_hs256_access_tokens(clock: FakeClock) -> None:
    async with Keyfob(strategy="hybrid", secret=SECRET, store="memory://", clock=clock) as fob:
        token, _ = await sign_in(fob)
        assert Verifier(keys=fob.access_ring, clock=clock).verify(token)["sub"] == "u1"


async def test_public_jwks_verifier_refuses_hs256_tokens_of_the_same_secret(issuer: Keyfob,
                                                                             clock: FakeClock) -> None:
    async with Keyfob(strategy="hybrid", secret=SECRET, store="memory://", clock=clock) as hs:
        token, _ = await sign_in(hs)
    with pytest.raises(InvalidToken):
        Verifier(keys=issuer.jwks(), clock=clock).verify(token)


async def test_wrong_audience_is_refused(issuer: Keyfob, clock: FakeClock) -> None:
    token, _ = await sign_in(issuer)
    with pytest.raises(InvalidToken):
        Verifier(keys=issuer.jwks(), audience="billing", clock=clock).verify(token)


async def test_refresh_token_is_refused_where_an_access_token_is_expected(issuer: Keyfob,
                                                                          clock: FakeClock) -> None:
    _, issued = await sign_in(issuer)
    assert issued.refresh_token is not None
    with pytest.raises(InvalidToken):
        Verifier(keys=issuer.jwks(), clock=clock).verify(issued.refresh_token)


async def test_token_of_another_issuer_is_refused(issuer: Keyfob, clock: FakeClock) -> None:
    other = Keyfob(strategy="hybrid", secret=OLD_SECRET, jwks=True, store="memory://", clock=clock)
    async with other:
        token, _ = await sign_in(other)
    with pytest.raises(InvalidToken):
        Verifier(keys=issuer.jwks(), clock=clock).verify(token)


@pytest.mark.parametrize("garbage", ["", "x", "a.b.c", "e30.e30.", "." * 5, "A" * 20_000])
async def test_garbage_is_an_invalid_token(issuer: Keyfob, clock: FakeClock, garbage: str) -> None:
    with pytest.raises(InvalidToken):
        Verifier(keys=issuer.jwks(), clock=clock).verify(garbage)


async def test_expired_access_token_raises_session_expired_unless_within_leeway(issuer: Keyfob,
                                                                                 clock: FakeClock) -> None:
    token, _ = await sign_in(issuer)
    clock.advance(issuer.settings.access_ttl + 1)
    with pytest.raises(SessionExpired):
        Verifier(keys=issuer.jwks(), clock=clock).verify(token)
    assert Verifier(keys=issuer.jwks(), leeway=5, clock=clock).verify(token)["sub"] == "u1"


# -- key rotation with overlap --------------------------------------------------------------------------


async def test_key_rotation_new_key_signs_old_key_verifies_until_its_tokens_expire(
        clock: FakeClock, store_url: str) -> None:
    before = Keyfob(strategy="hybrid", secret=OLD_SECRET, jwks=True, store=store_url, clock=clock)
    rotated = Keyfob(strategy="hybrid", secret=[NEW_SECRET, OLD_SECRET], jwks=True, store=store_url,
                     clock=clock)
    retired = Keyfob(strategy="hybrid", secret=NEW_SECRET, jwks=True, store=store_url, clock=clock)
    try:
        old_token, _ = await sign_in(before)
        new_token, _ = await sign_in(rotated)
        new_kid, old_kid = (k.kid for k in rotated.access_ring)
        assert [k["kid"] for k in rotated.jwks()["keys"]] == [new_kid, old_kid]  # both published
        assert rotated.access_ring.current.kid == new_kid  # the new key signs
        # the rotated node and a verifier holding its JWKS accept both generations
        assert (await rotated.authenticate_token(old_token)).session is not None
        verifier = Verifier(keys=rotated.jwks(), clock=clock)
        assert verifier.verify(old_token)["sub"] == verifier.verify(new_token)["sub"] == "u1"
        # a verifier that only knows the old JWKS does not accept the new key's tokens
        with pytest.raises(InvalidToken):
            Verifier(keys=before.jwks(), clock=clock).verify(new_token)
        # once the old key's tokens have expired, the old secret can go
        clock.advance(rotated.settings.access_ttl + 1)
        with pytest.raises(SessionExpired):
            verifier.verify(old_token)
        fresh, _ = await sign_in(rotated)
        assert Verifier(keys=retired.jwks(), clock=clock).verify(fresh)["sub"] == "u1"
        assert (await retired.authenticate_token(fresh)).session is not None
    finally:
        for fob in (before, rotated, retired):
            await fob.close()


# -- revocation through the feed ------------------------------------------------------------------------


@pytest.fixture
async def verifier(issuer: Keyfob, clock: FakeClock, store_url: str) -> AsyncIterator[Verifier]:
    async with Verifier(keys=issuer.jwks(), feed=store_url, clock=clock) as v:
        yield v


async def test_revoked_session_is_refused_through_the_feed(issuer: Keyfob, verifier: Verifier) -> None:
    token, issued = await sign_in(issuer)
    other, _ = await sign_in(issuer, "u2")
    assert verifier.verify(token)["sid"] == issued.session.id
    await issuer.revoke(issued.session.id)
    await settle()
    with pytest.raises(SessionRevoked):
        verifier.verify(token)
    assert verifier.verify(other)["sub"] == "u2"


async def test_user_version_bump_refuses_every_token_of_that_user(issuer: Keyfob, verifier: Verifier) -> None:
    first, _ = await sign_in(issuer)
    second, _ = await sign_in(issuer)
    await issuer.bump_user_version("u1")
    await settle()
    for token in (first, second):
        with pytest.raises(SessionRevoked):
            verifier.verify(token)
    after, _ = await sign_in(issuer)
    assert verifier.verify(after)["ver"] == 1


async def test_revocations_made_before_the_verifier_started_are_loaded_from_the_store(
        issuer: Keyfob, clock: FakeClock, store_url: str) -> None:
    token, issued = await sign_in(issuer)
    await issuer.revoke(issued.session.id)
    async with Verifier(keys=issuer.jwks(), feed=store_url, clock=clock) as late:
        with pytest.raises(SessionRevoked):
            late.verify(token)


async def test_feed_down_fails_closed_then_resyncs_what_it_missed(issuer: Keyfob, verifier: Verifier) -> None:
    token, issued = await sign_in(issuer)
    assert isinstance(verifier.feed, MemoryFeed)
    await verifier.feed.disconnect()
    with pytest.raises(StoreUnavailable):
        verifier.verify(token)  # never from a view that may be stale
    await issuer.revoke(issued.session.id)  # published while this verifier cannot hear it
    await settle()
    await verifier.feed.reconnect()
    with pytest.raises(SessionRevoked):
        verifier.verify(token)


async def test_verify_before_start_fails_closed_when_a_feed_is_configured(issuer: Keyfob, clock: FakeClock,
                                                                          store_url: str) -> None:
    token, _ = await sign_in(issuer)
    v = Verifier(keys=issuer.jwks(), feed=store_url, clock=clock)
    with pytest.raises(StoreUnavailable):
        v.verify(token)
    await v.close()


async def test_without_a_feed_revocation_is_bounded_by_access_ttl(issuer: Keyfob, clock: FakeClock) -> None:
    token, issued = await sign_in(issuer)
    await issuer.revoke(issued.session.id)
    v = Verifier(keys=issuer.jwks(), clock=clock)
    assert v.verify(token)["sid"] == issued.session.id  # documented: no feed, no revocation check
    clock.advance(issuer.settings.access_ttl)
    with pytest.raises(SessionExpired):
        v.verify(token)


# -- configuration --------------------------------------------------------------------------------------


def test_exactly_one_key_source_is_required(secret: str) -> None:
    ring = KeyRing.from_secrets_ed25519(secret, info="x")
    with pytest.raises(ConfigError):
        Verifier()
    with pytest.raises(ConfigError):
        Verifier(keys=ring, jwks_url="https://auth.example/.well-known/jwks.json")


@pytest.mark.parametrize("url", ["http://auth.example/.well-known/jwks.json", "file:///etc/passwd",
                                 "ftp://auth.example/jwks.json", "jwks.json"])
def test_jwks_url_must_be_https_unless_loopback(url: str) -> None:
    with pytest.raises(ConfigError):
        Verifier(jwks_url=url)


def test_plain_http_is_allowed_for_loopback_or_when_spelled_out() -> None:
    Verifier(jwks_url="http://127.0.0.1:8000/.well-known/jwks.json")
    Verifier(jwks_url="http://localhost/.well-known/jwks.json")
    Verifier(jwks_url="http://auth.internal/.well-known/jwks.json", insecure_http=True)


def test_jwks_without_usable_keys_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        Verifier(keys={"keys": []})
    with pytest.raises(ConfigError):
        Verifier(keys={"not": "a jwks"})


def test_feed_must_be_a_url_with_a_feed_and_a_feed_object_needs_its_store() -> None:
    ring = KeyRing.from_secrets_ed25519(SECRET, info="x")
    with pytest.raises(ConfigError):
        Verifier(keys=ring, feed="sqlite:///keyfob.db")
    with pytest.raises(ConfigError):
        Verifier(keys=ring, feed=MemoryFeed("memory://x"))
    with pytest.raises(ConfigError):
        Verifier(keys=ring, store="memory://x")
    with pytest.raises(ConfigError):
        Verifier(keys=ring, leeway=-1)

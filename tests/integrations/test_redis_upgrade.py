"""A Redis written by keyfob's first key layout (one ``P v`` hash, one ``P r`` sorted set) keeps its
revocations and versions after ``migrate()`` moves to the sharded layout: an upgrade never lets a
revoked session or an old token version back in."""

from __future__ import annotations

import os

import pytest
import redis.asyncio as aioredis

from keyfob.stores import open_store
from tests.conftest import REDIS_URL, require_redis
from tests.contract.conftest import delete_redis_keys

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

URL = REDIS_URL.rsplit("/", 1)[0] + "/10"
PREFIX = f"kfup{os.getpid()}:"


async def test_migrate_from_the_first_layout_keeps_revocations_and_versions() -> None:
    require_redis()
    await delete_redis_keys(PREFIX, URL)
    raw = aioredis.Redis.from_url(URL)
    try:
        await raw.hset(f"{PREFIX}meta", "schema_version", "1")
        await raw.hset(f"{PREFIX}v", mapping={"alice": 3, "bob": 1})
        await raw.zadd(f"{PREFIX}r", {"sid-old": 2_000_000_000.0})
        for alice in (3, 4):  # again (another process): idempotent, and never lowers a version
            store = open_store(URL, prefix=PREFIX)
            try:
                await store.migrate()
                assert await store.get_user_version("alice") == alice
                assert await store.get_user_version("bob") == 1
                assert await store.is_revoked("sid-old", now=1_900_000_000.0)
                assert dict(await store.user_versions()) == {"alice": alice, "bob": 1}
                events = (await store.changes(None, now=1_900_000_000.0)).events
                assert {e.get("user") or e.get("sid") for e in events} == {"alice", "bob", "sid-old"}
                assert await store.bump_user_version("alice") == alice + 1
            finally:
                await store.close()
            await raw.hset(f"{PREFIX}meta", "schema_version", "1")  # the second round migrates again
    finally:
        await raw.aclose()
        await delete_redis_keys(PREFIX, URL)

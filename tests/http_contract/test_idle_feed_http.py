"""The adapters whose loop runs only inside requests (Flask; Django under WSGI, and under ASGI without
keyfob's ASGI wrapper): what the feed delivered while the process idled is applied before the next
check. A real Redis server (the shared one, a private prefix) and its feed with a short health window.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
import redis

from keyfob import Keyfob
from keyfob.stores.redis import RedisFeed
from tests.conftest import REDIS_URL, SECRET, require_redis
from tests.contract.conftest import delete_redis_keys

from .frameworks import FRAMEWORKS

pytestmark = pytest.mark.redis


@pytest.mark.parametrize("strategy", ["jwt", "hybrid"])
@pytest.mark.parametrize("framework", ["flask", "django-wsgi", "django-asgi"])
def test_a_revocation_published_while_the_process_idles_is_applied_before_its_next_request(
    framework: str, strategy: str,
) -> None:
    """Found in review (Flask, then Django): after an idle gap longer than the feed's health window,
    the listener's pending work (the message, or its "line silent" drop) took more than the few loop
    iterations each request ran first, so the first request after the revocation was still served
    from the old view (200). The store-outage tests cover the dropped line."""
    require_redis()
    server = REDIS_URL.rsplit("/", 1)[0] + "/15"
    prefix = f"idle-{framework}-{uuid.uuid4().hex[:8]}:"
    url = f"{server}?prefix={prefix}"
    feed = RedisFeed(url, health_interval=0.05)
    fob = Keyfob(strategy=strategy, secret=SECRET, store=url, feed=feed)
    other = Keyfob(strategy=strategy, secret=SECRET, store=url)
    probe = redis.Redis.from_url(server).pubsub()
    probe.subscribe(feed.channel)  # another subscriber: it gets the revocation when the process's socket does
    try:
        with FRAMEWORKS[framework](fob) as client:
            token = client.request("GET", "/auth/csrf").body["csrfToken"]
            login = client.request("POST", "/login", json={"user": "u1"}, headers=[("x-csrf-token", token)])
            sid = login.body["id"]
            assert client.request("GET", "/me").status == 200
            time.sleep(0.3)  # the process idles: longer than 3 health intervals, so its loop falls behind

            async def revoke_elsewhere() -> None:
                await other.start()
                try:
                    await other.revoke(sid)
                finally:
                    await other.close()

            asyncio.run(revoke_elsewhere())
            # Redis wrote the message to every subscriber at once: once the probe has it, it is on the
            # process's socket too (waited for, not slept on; 10 s is a hang guard)
            deadline = time.monotonic() + 10.0
            while (got := probe.get_message(timeout=0.5)) is None or got["type"] != "message":
                assert time.monotonic() < deadline, "the revocation was not published"
            assert client.request("GET", "/me").status == 401
    finally:
        probe.close()
        asyncio.run(delete_redis_keys(prefix, server))

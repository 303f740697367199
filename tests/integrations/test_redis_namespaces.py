"""Two apps on one Redis never see each other's revocations: different ``?prefix=`` on one db, or the
same prefix on different db numbers (pub/sub ignores db numbers, so the feed channel carries both).

Each app runs two hybrid nodes; app A revokes a session id and bumps user "42", its second node
gets both (the positive control), and app B — whose user "42" has a live session with that very
id space — gets neither and keeps its session.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator

import pytest

from keyfob import Keyfob
from keyfob.stores.redis import RedisFeed
from tests.conftest import REDIS_URL, SECRET, require_redis
from tests.contract.conftest import delete_redis_keys

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

BASE = REDIS_URL.rsplit("/", 1)[0]
TAG = f"kfns{os.getpid()}"


@pytest.fixture(params=["different-prefixes", "different-db-numbers"])
async def app_urls(request: pytest.FixtureRequest) -> AsyncIterator[tuple[str, str]]:
    require_redis()
    if request.param == "different-prefixes":
        urls = (f"{BASE}/10?prefix={TAG}a", f"{BASE}/10?prefix={TAG}b")
    else:
        urls = (f"{BASE}/10?prefix={TAG}", f"{BASE}/11?prefix={TAG}")
    yield urls
    for db in (10, 11):
        await delete_redis_keys(TAG, f"{BASE}/{db}")


async def wait_until(condition: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_two_apps_on_one_redis_never_see_each_others_revocations(app_urls: tuple[str, str]) -> None:
    url_a, url_b = app_urls
    a1, a2, b = (Keyfob(strategy="hybrid", secret=SECRET, store=u) for u in (url_a, url_a, url_b))
    try:
        for fob in (a1, a2, b):
            await fob.start()
        feeds = [fob.feed for fob in (a1, a2, b)]
        assert all(isinstance(f, RedisFeed) for f in feeds)
        assert feeds[0].channel == feeds[1].channel != feeds[2].channel  # type: ignore[union-attr]
        await wait_until(lambda: a1.view.live and a2.view.live and b.view.live)

        issued = await b.create("42", {}, secure=False)
        jar = {c.name: c.value for c in issued.cookies}
        await a1.bump_user_version("42")
        await a1.revoke(issued.session.id)
        await wait_until(lambda: a2.view.min_version.get("42") == 1 and issued.session.id in a2.view.revoked)

        assert "42" not in b.view.min_version and issued.session.id not in b.view.revoked
        assert (await b.authenticate(jar, secure=False)).session is not None
        assert await b.store.get_user_version("42") == 0
    finally:
        for fob in (a1, a2, b):
            await fob.close()


@pytest.mark.parametrize(
    ("url", "channel"),
    [
        ("redis://h:6379/0", "kf:feed:db0"),
        ("redis://h:6379/3?prefix=shop", "shop:feed:db3"),
        ("redis://h:6379/3?prefix=shop:", "shop:feed:db3"),
        ("rediss://u:p@h:6380/7?prefix=a.b-c", "a.b-c:feed:db7"),
        ("redis+cluster://h:7000,h:7001?prefix=shop", "shop:feed:db0"),
    ],
)
def test_the_feed_channel_derives_from_the_namespace_and_the_db_number(url: str, channel: str) -> None:
    from keyfob.stores.redis._url import parse_redis_url

    assert parse_redis_url(url).channel == channel

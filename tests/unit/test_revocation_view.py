"""The revocation view: what feed events it accepts, what it publishes, what it prunes, how it falls back."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from keyfob import FakeClock, SessionRevoked
from keyfob.stores.memory import MemoryStore
from keyfob.strategies import RevocationView

pytestmark = pytest.mark.anyio


class RecordingFeed:
    """A feed that keeps what it was asked to publish (the in-process part of a real one)."""

    def __init__(self) -> None:
        self.published: list[Mapping[str, Any]] = []

    async def publish(self, event: Mapping[str, Any]) -> None:
        self.published.append(dict(event))

    async def start(self, handler: Any, on_state: Any) -> None:
        await on_state(True)

    async def close(self) -> None:
        pass


@pytest.fixture
def view(clock: FakeClock) -> RevocationView:
    return RevocationView(MemoryStore(), RecordingFeed(), clock)


@pytest.mark.parametrize("event", [
    {"t": "sid", "sid": 5, "until": 2e9},
    {"t": "sid", "sid": "s1", "until": "2e9"},
    {"t": "sid", "sid": "s1"},
    {"t": "sid", "until": 2e9},
    {"t": "ver", "user": "u1", "ver": "3"},
    {"t": "ver", "user": "u1", "ver": 2.0},
    {"t": "ver", "user": 1, "ver": 3},
    {"t": "ver", "user": "u1", "ver": True},
    {"t": "nope", "sid": "s1", "until": 2e9},
    {},
])
def test_malformed_feed_events_change_nothing(view: RevocationView, event: dict[str, Any]) -> None:
    view.apply(event)
    assert view.revoked == {} and view.min_version == {}


def test_feed_events_only_ever_raise_what_the_view_refuses(view: RevocationView) -> None:
    view.apply({"t": "sid", "sid": "s1", "until": 2e9})
    view.apply({"t": "sid", "sid": "s1", "until": 1e9})
    assert view.revoked == {"s1": 2e9}
    view.apply({"t": "ver", "user": "u1", "ver": 3})
    view.apply({"t": "ver", "user": "u1", "ver": 2})
    assert view.min_version == {"u1": 3}
    assert view.check_live("s1", "u9", 0) and view.check_live("s2", "u1", 2)
    assert not view.check_live("s2", "u1", 3)


async def test_bump_is_stored_applied_and_published(view: RevocationView, clock: FakeClock) -> None:
    assert await view.bump("u1") == 1
    assert await view.bump("u1") == 2
    assert view.min_version == {"u1": 2}
    assert await view.store.get_user_version("u1") == 2
    assert isinstance(view.feed, RecordingFeed)
    # published copies carry the publisher's clock ("at": keyfob.metrics' propagation time)
    assert view.feed.published == [{"t": "ver", "user": "u1", "ver": 1, "at": clock()},
                                   {"t": "ver", "user": "u1", "ver": 2, "at": clock()}]


async def test_revoke_is_stored_applied_and_published(view: RevocationView, clock: FakeClock) -> None:
    await view.revoke("s1", until=clock() + 60)
    assert view.revoked == {"s1": clock() + 60}
    assert dict(await view.store.revocations(clock())) == {"s1": clock() + 60}
    assert isinstance(view.feed, RecordingFeed)
    assert view.feed.published == [{"t": "sid", "sid": "s1", "until": clock() + 60, "at": clock()}]


def test_prune_drops_only_entries_past_their_until(view: RevocationView, clock: FakeClock) -> None:
    now = clock()
    view._last_prune = now - 61
    for i in range(1100):
        view.revoked[f"old{i}"] = now - 1
    view.revoked["edge"] = now  # until == now: no token of it can still be valid
    view.revoked["young"] = now + 1
    view.apply({"t": "sid", "sid": "new", "until": now + 100})
    assert set(view.revoked) == {"young", "new"}


def test_prune_waits_a_minute_between_sweeps(view: RevocationView, clock: FakeClock) -> None:
    now = clock()
    view._last_prune = now - 59
    for i in range(1100):
        view.revoked[f"old{i}"] = now - 1
    view.apply({"t": "sid", "sid": "new", "until": now + 100})
    assert len(view.revoked) == 1101
    clock.advance(1)
    view.apply({"t": "sid", "sid": "new2", "until": now + 100})
    assert set(view.revoked) == {"new", "new2"}


async def test_without_the_feed_checks_go_to_the_store(view: RevocationView, clock: FakeClock) -> None:
    view.live = False
    await view.store.add_revocation("s1", until=clock() + 60)
    with pytest.raises(SessionRevoked):
        await view.check("s1", "u1", 0, session_must_exist=False)
    await view.check("s2", "u1", 0, session_must_exist=False)
    await view.store.bump_user_version("u1")
    with pytest.raises(SessionRevoked):
        await view.check("s2", "u1", 0, session_must_exist=False)
    await view.check("s2", "u1", 1, session_must_exist=False)
    with pytest.raises(SessionRevoked):
        await view.check("s2", "u1", 1, session_must_exist=True)  # no such stored session


async def test_feed_back_resyncs_before_going_live(view: RevocationView, clock: FakeClock) -> None:
    await view._on_state(False)
    assert not view.live
    await view.store.add_revocation("s1", until=clock() + 60)
    await view.store.bump_user_version("u1")
    await view._on_state(True)
    assert view.live and view.revoked == {"s1": clock() + 60} and view.min_version == {"u1": 1}


def test_without_a_feed_the_view_is_the_whole_truth_from_the_start(clock: FakeClock) -> None:
    assert RevocationView(MemoryStore(), None, clock).live, "no feed: its own revocations are all there is"
    assert not RevocationView(MemoryStore(), RecordingFeed(), clock).live, "a feed: live only once it is up"


async def test_close_closes_the_feed(clock: FakeClock) -> None:
    feed = RecordingFeed()
    closed: list[bool] = []

    async def close() -> None:
        closed.append(True)

    feed.close = close  # type: ignore[method-assign]
    await RevocationView(MemoryStore(), feed, clock).close()
    assert closed == [True]
    await RevocationView(MemoryStore(), None, clock).close()  # nothing to close, no error

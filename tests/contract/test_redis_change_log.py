"""Redis ``changes()`` when a shard's commit order is not the global order (real Redis, Cluster).

Two writers take their global sequence numbers (``INCR``) and then run their scripts the other way
round: the shard's log then holds a higher number before a lower one. A page must still move the
cursor (never an empty page with ``more=True`` forever) and the log must still read whole, once.
The interleaving is made deterministic by running the store's own revoke script with the numbers
swapped, as the race would.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from keyfob._clock import FakeClock
from keyfob.stores import SessionStore
from keyfob.stores.redis._keys import Keys
from tests.contract.conftest import MakeStore
from tests.contract.test_store_horizons import read_all

pytestmark = pytest.mark.anyio


@pytest.fixture(params=[
    pytest.param("redis", id="redis", marks=pytest.mark.redis),
    pytest.param("redis_cluster", id="redis_cluster", marks=pytest.mark.redis_cluster),
])
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def same_shard(n: int) -> list[str]:
    """``n`` session ids whose revocations land in one shard."""
    out, i = [], 0
    while len(out) < n:
        sid = f"sid-{i}"
        if Keys.shard_of(sid) == 3:
            out.append(sid)
        i += 1
    return out


async def revoke_with_seq(store: SessionStore, sid: str, until: float, gseq: int) -> None:
    """The store's revoke script with a given global sequence number (what a writer took earlier)."""
    tag = store.keys.shard(sid)  # type: ignore[attr-defined]
    event = json.dumps({"t": "sid", "sid": sid, "until": until}, separators=(",", ":"))
    await store._revoke(keys=[f"{tag}:r", f"{tag}:c", f"{tag}:ch", f"{tag}:cs"],  # type: ignore[attr-defined]
                        args=[sid, repr(until), gseq, event])


@pytest.mark.parametrize("limit", [1, 2, 3, 250])
async def test_a_shard_whose_commit_order_is_not_the_global_order_still_pages_to_the_end(
    make_store: MakeStore, clock: FakeClock, limit: int
) -> None:
    store = await make_store()
    until = clock() + 600
    sids = same_shard(40)
    # the first entry of the shard's log took the highest number: it committed last of its batch
    numbers = [1000, *range(1, len(sids))]
    for sid, gseq in zip(sids, numbers, strict=True):
        await revoke_with_seq(store, sid, until, gseq)
    everything = await read_all(store, None, clock(), limit=limit)
    got: list[Any] = [e["sid"] for e in everything.events]
    assert sorted(got) == sorted(sids) and len(got) == len(set(got))
    assert (await store.changes(everything.cursor, now=clock(), limit=limit)).events == []

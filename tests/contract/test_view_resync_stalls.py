"""A resync of 100 000 change-log entries never stalls the event loop (memory store and SQLite).

The view reads ``store.changes`` in pages of ``PAGE`` (250) events and yields to the loop between
pages, so requests keep being served while a process catches up after a feed drop. Measured as the
longest gap between two wake-ups of a 1 ms ticker task running next to the resync.

The threshold is the issue's budget, 50 ms. It is generous: on an idle machine a page costs
1-5 ms (docs/SCALING.md), so a paged resync stays far below it even on this shared 2-core box. And
it is meaningful: reading the same log in one piece stalls the loop for the whole resync (well over
100 ms for 100 000 entries on either store: the decode and the apply of every event in one go).
A preemption of the test process by the OS can also make one gap long; that is noise, not a stall
the code made, so the measurement is taken up to three times and the best of them must be under
the budget (a stall from missing pagination shows in every run). The resync's own duration is
not asserted.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import pytest

from keyfob._clock import FakeClock
from keyfob.stores import SessionStore
from keyfob.strategies import RevocationView
from tests.contract.conftest import MakeStore

pytestmark = pytest.mark.anyio

ENTRIES = 100_000
STALL_BUDGET = 0.050  # seconds: the "never stalls the event loop over 50 ms"
ATTEMPTS = 3


@pytest.fixture(params=["memory", "sqlite"])
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def fill(store: SessionStore, store_url: str, clock: FakeClock) -> None:
    """50 000 revocations and 50 000 version bumps in the change log, all within their horizon."""
    until = clock() + 600
    half = ENTRIES // 2
    if store_url.startswith("sqlite"):  # one executemany: 100 000 store calls would take minutes here
        db = sqlite3.connect(str(Path(store_url.split(":///", 1)[1])), timeout=30)
        try:
            rows = [("sid", f"s{i:021d}", None, until) for i in range(half)]
            rows += [("ver", f"user-{i:08d}", 1, until) for i in range(half)]
            db.executemany("INSERT INTO keyfob_changes (kind, key, ver, until) VALUES (?, ?, ?, ?)", rows)
            db.commit()
        finally:
            db.close()
        return
    for i in range(half):
        await store.add_revocation(f"s{i:021d}", until=until)
        await store.bump_user_version(f"user-{i:08d}", until=until)


async def longest_gap_during(work: asyncio.Task[None]) -> float:
    """The longest time a 1 ms ticker waited to run while ``work`` ran (seconds)."""
    longest = 0.0
    last = time.perf_counter()
    while not work.done():
        await asyncio.sleep(0.001)
        now = time.perf_counter()
        longest = max(longest, now - last)
        last = now
    await work
    return longest


async def test_a_resync_of_100k_entries_never_stalls_the_loop_over_50_ms(
    make_store: MakeStore, store_url: str, clock: FakeClock
) -> None:
    store = await make_store()
    await fill(store, store_url, clock)
    stalls = []
    for _ in range(ATTEMPTS):
        view = RevocationView(store, None, clock)
        stalls.append(await longest_gap_during(asyncio.create_task(view.resync())))
        assert len(view.revoked) == ENTRIES // 2 and len(view.min_version) == ENTRIES // 2
        if stalls[-1] < STALL_BUDGET:
            break
    assert min(stalls) < STALL_BUDGET, f"the loop stalled {[round(s * 1000, 1) for s in stalls]} ms"

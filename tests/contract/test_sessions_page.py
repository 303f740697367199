"""``store.sessions_page``: every row, page by page (what ``keyfob sessions list --all`` reads).

Offered by the memory, SQL and Redis (and Redis Cluster) stores, outside the structural protocol
like ``add_limited``; the CLI says so clearly on a store without it. SQL and memory page in
token-hash order (keyset); Redis walks its shards' expiry indexes with ZSCAN, so its promise is
SCAN's: a row present during the whole listing is listed (at least once: callers dedupe).
"""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from keyfob.stores import SessionRecord, SessionStore
from tests.contract.conftest import MakeStore

pytestmark = pytest.mark.anyio

KINDS = [
    "memory",
    "sqlite",
    pytest.param("postgresql", marks=pytest.mark.postgres),
    pytest.param("redis", marks=pytest.mark.redis),
    pytest.param("redis_cluster", marks=pytest.mark.redis_cluster),
]


async def every_page(store: SessionStore, page_size: int, *, max_pages: int,
                     between: list[Any] | None = None) -> list[SessionRecord]:  # fmt: skip
    """Read every page; ``between``: coroutines to run one after each page (writes meanwhile)."""
    seen: list[SessionRecord] = []
    cursor: str | None = None
    pages = 0
    while True:
        page, cursor = await store.sessions_page(cursor, limit=page_size)  # type: ignore[attr-defined]
        assert len(page) <= page_size
        seen += page
        pages += 1
        assert pages <= max_pages, "the cursor never ran out"
        if between:
            await between.pop(0)
        if cursor is None:
            return seen


def rec(n: int, user: str) -> SessionRecord:
    return SessionRecord(
        token_hash=hashlib.sha256(f"token-{n}".encode()).digest(), id=f"sid-{n}", user_id=user,
        created_at=1000.0 + n, last_seen_at=1000.0 + n, expires_at=10_000.0,
    )  # fmt: skip


@pytest.mark.parametrize(
    "store_kind",
    KINDS,
    indirect=True,
)
@pytest.mark.parametrize("page_size", [1, 3, 7, 50])
async def test_pages_cover_every_row_once_in_bounded_pages(make_store: MakeStore, page_size: int) -> None:
    store = await make_store()
    rows = [rec(n, f"user-{n % 3}") for n in range(7)]
    for r in rows:
        await store.add(r)
    seen = await every_page(store, page_size, max_pages=10)
    assert sorted(r.id for r in seen) == sorted(r.id for r in rows)
    assert {r.id: r for r in seen} == {r.id: r for r in rows}  # whole records, data included


@pytest.mark.parametrize(
    "store_kind",
    KINDS,
    indirect=True,
)
async def test_an_empty_store_is_one_empty_page(make_store: MakeStore) -> None:
    store = await make_store()
    assert await store.sessions_page(None, limit=10) == ([], None)  # type: ignore[attr-defined]


@pytest.mark.parametrize("store_kind", KINDS, indirect=True)
async def test_rows_present_throughout_are_listed_while_others_come_and_go(make_store: MakeStore) -> None:
    store = await make_store()
    kept = [rec(n, f"user-{n % 4}") for n in range(40)]
    doomed = [rec(n, "leaving") for n in range(40, 50)]
    for r in kept + doomed:
        await store.add(r)

    async def add(n: int) -> None:
        await store.add(rec(n, "arriving"))

    async def leave() -> None:
        await store.delete_user("leaving")

    writes = [add(100), leave(), add(101), add(102)]
    seen = await every_page(store, 6, max_pages=40, between=writes)
    for w in writes:  # the listing ran out before every write was needed: still run them
        await w
    ids = {r.id for r in seen}
    assert {r.id for r in kept} <= ids, "a row present during the whole listing was missed"
    assert ids <= {r.id for r in kept + doomed} | {"sid-100", "sid-101", "sid-102"}
    assert {r.id: r for r in seen if r.id in {k.id for k in kept}} == {r.id: r for r in kept}

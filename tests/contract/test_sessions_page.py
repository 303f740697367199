"""``store.sessions_page``: every row, page by page (what ``keyfob sessions list --all`` reads).

Offered by the memory and SQL stores (outside the structural protocol, like ``add_limited``);
the CLI says so clearly on a store without it.
"""

from __future__ import annotations

import hashlib

import pytest

from keyfob.stores import SessionRecord
from tests.contract.conftest import MakeStore

pytestmark = pytest.mark.anyio


def rec(n: int, user: str) -> SessionRecord:
    return SessionRecord(
        token_hash=hashlib.sha256(f"token-{n}".encode()).digest(), id=f"sid-{n}", user_id=user,
        created_at=1000.0 + n, last_seen_at=1000.0 + n, expires_at=10_000.0,
    )  # fmt: skip


@pytest.mark.parametrize(
    "store_kind",
    ["memory", "sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)],
    indirect=True,
)
@pytest.mark.parametrize("page_size", [1, 3, 7, 50])
async def test_pages_cover_every_row_once_in_bounded_pages(make_store: MakeStore, page_size: int) -> None:
    store = await make_store()
    rows = [rec(n, f"user-{n % 3}") for n in range(7)]
    for r in rows:
        await store.add(r)
    seen: list[SessionRecord] = []
    cursor: str | None = None
    pages = 0
    while True:
        page, cursor = await store.sessions_page(cursor, limit=page_size)  # type: ignore[attr-defined]
        assert len(page) <= page_size
        seen += page
        pages += 1
        assert pages <= 10, "the cursor never ran out"
        if cursor is None:
            break
    assert sorted(r.id for r in seen) == sorted(r.id for r in rows)
    assert {r.id: r for r in seen} == {r.id: r for r in rows}  # whole records, data included


@pytest.mark.parametrize(
    "store_kind",
    ["memory", "sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)],
    indirect=True,
)
async def test_an_empty_store_is_one_empty_page(make_store: MakeStore) -> None:
    store = await make_store()
    assert await store.sessions_page(None, limit=10) == ([], None)  # type: ignore[attr-defined]

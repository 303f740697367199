"""Every statement keyfob's schema needs, rendered once per dialect, and the row codec.

SQLAlchemy Core builds and renders the statements (``_schema`` holds the tables); what the
backends run per call is the rendered SQL string with its parameters in driver order
(:class:`Q`), so nothing from SQLAlchemy runs per request.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine.interfaces import Dialect

from ..._frozen import fast_constructor
from .._protocol import LiveRow, SessionRecord
from .._schema import Tables, index_statements, table_statements
from ._driver import Row

__all__ = ["FIELDS", "Q", "Statements", "live", "params", "record"]

_MISSING: Any = object()


@dataclass(frozen=True, slots=True)
class Q:
    """A statement rendered for one driver: SQL text and how to order its parameters."""

    sql: str
    names: tuple[str, ...]
    defaults: tuple[Any, ...]

    def bind(self, **params: Any) -> tuple[Any, ...]:
        return tuple(params[n] if n in params else d for n, d in zip(self.names, self.defaults, strict=True))


def render(stmt: sa.ClauseElement, dialect: Dialect, column_keys: list[str] | None = None) -> Q:
    compiled = stmt.compile(dialect=dialect, column_keys=column_keys)
    names = tuple(getattr(compiled, "positiontup", None) or ())
    values = compiled.params
    return Q(str(compiled), names, tuple(values.get(n, _MISSING) for n in names))


FIELDS = (
    "token_hash", "id", "user_id", "created_at", "last_seen_at", "expires_at", "absolute_expires_at",
    "authenticated_at", "ip", "user_agent", "data", "retired_at", "generation",
)  # fmt: skip


class Statements:
    """Every statement the keyfob schema needs, rendered for one dialect."""

    def __init__(self, tables: Tables, dialect: Dialect, *, postgres: bool) -> None:
        t, v, r, m, c = tables.sessions, tables.user_versions, tables.revocations, tables.meta, tables.changes
        bp = sa.bindparam
        cols = [t.c[f] for f in FIELDS]
        live = t.c.retired_at.is_(None)
        ins: Any = pg_insert if postgres else sqlite_insert
        greatest = sa.func.greatest if postgres else sa.func.max
        batch = bp("batch", type_=sa.Integer)

        def q(stmt: sa.ClauseElement, column_keys: list[str] | None = None) -> Q:
            return render(stmt, dialect, column_keys)

        # sessions
        self.get = q(sa.select(*cols).where(t.c.token_hash == bp("h")))
        live_cols = [t.c[f] for f in LiveRow._fields]
        self.get_live = q(sa.select(*live_cols).where(t.c.token_hash == bp("h"), live))
        self.get_by_id = q(sa.select(*cols).where(t.c.id == bp("sid"), live).limit(1))
        self.list_user = q(
            sa.select(*cols).where(t.c.user_id == bp("uid"), live).order_by(t.c.created_at, t.c.id)
        )
        self.insert = q(sa.insert(t), list(FIELDS))
        self.touch = q(
            sa.update(t)
            .where(t.c.token_hash == bp("h"), live)
            .values(last_seen_at=bp("seen"), expires_at=bp("exp"))
        )
        self.set_data = q(sa.update(t).where(t.c.token_hash == bp("h"), live).values(data=bp("d")))
        self.lock_live = q(sa.select(*cols).where(t.c.token_hash == bp("h"), live).with_for_update())
        self.swap = q(
            sa.update(t)
            .where(t.c.token_hash == bp("old"), live)
            .values({f: bp(f"new_{f}") for f in FIELDS})
        )
        self.delete_id = q(sa.delete(t).where(t.c.id == bp("sid")).returning(t.c.retired_at))
        deleted = (t.c.id, t.c.created_at)
        self.delete_user = q(sa.delete(t).where(t.c.user_id == bp("uid")).returning(*deleted))
        self.delete_user_keep = q(
            sa.delete(t).where(t.c.user_id == bp("uid"), t.c.id != bp("keep")).returning(*deleted)
        )
        past = sa.or_(t.c.expires_at < bp("now"), t.c.absolute_expires_at < bp("now"))
        doomed = sa.select(t.c.token_hash).where(past).limit(batch)
        self.delete_expired = q(sa.delete(t).where(t.c.token_hash.in_(doomed.scalar_subquery())))
        self.count = q(sa.select(sa.func.count()).select_from(t))
        page = sa.select(*cols).where(t.c.token_hash > bp("after")).order_by(t.c.token_hash)
        self.page = q(page.limit(bp("n", type_=sa.Integer)))  # keyset paging: sessions_page

        # versions, revocations and their change log
        self.get_version = q(sa.select(v.c.version).where(v.c.user_id == bp("uid")))
        self.bump_version = q(
            ins(v)
            .values(user_id=bp("uid"), version=1, until=bp("until", type_=sa.Double), live=1)
            .on_conflict_do_update(
                index_elements=[v.c.user_id],
                set_={"version": v.c.version + 1, "until": bp("until2", type_=sa.Double), "live": 1},
            )
            .returning(v.c.version)
        )
        self.versions = q(sa.select(v.c.user_id, v.c.version).where(v.c.version != 0, v.c.live == 1))
        stale = sa.select(v.c.user_id).where(v.c.live == 1, v.c.until < bp("now")).limit(batch)
        self.prune_versions = q(sa.update(v).where(v.c.user_id.in_(stale.scalar_subquery())).values(live=0))
        up = ins(r).values(session_id=bp("sid"), until=bp("until"))
        self.add_revocation = q(
            up.on_conflict_do_update(
                index_elements=[r.c.session_id], set_={"until": greatest(r.c.until, up.excluded.until)}
            )
        )
        self.revocations = q(sa.select(r.c.session_id, r.c.until).where(r.c.until > bp("now")))
        self.is_revoked = q(
            sa.select(sa.literal(1)).where(r.c.session_id == bp("sid"), r.c.until > bp("now"))
        )
        gone = sa.select(r.c.session_id).where(r.c.until < bp("now")).limit(batch)
        self.delete_revocations = q(sa.delete(r).where(r.c.session_id.in_(gone.scalar_subquery())))
        self.append_change = q(
            sa.insert(c).values(kind=bp("kind"), key=bp("key"), ver=bp("ver", type_=sa.Integer),
                                until=bp("until", type_=sa.Double))
        )  # fmt: skip
        self.changes = q(
            sa.select(c.c.seq, c.c.kind, c.c.key, c.c.ver, c.c.until)
            .where(c.c.seq > bp("after"), sa.or_(c.c.until.is_(None), c.c.until > bp("now")))
            .order_by(c.c.seq)
            .limit(bp("n", type_=sa.Integer))
        )
        old = sa.select(c.c.seq).where(c.c.until < bp("now")).limit(batch)
        self.prune_changes = q(sa.delete(c).where(c.c.seq.in_(old.scalar_subquery())))

        # meta: the schema version and the epoch
        self.get_meta = q(sa.select(m.c.value).where(m.c.key == bp("k")))
        mi = ins(m).values(key=bp("k"), value=bp("val"))
        self.set_meta = q(
            mi.on_conflict_do_update(index_elements=[m.c.key], set_={"value": mi.excluded.value})
        )
        self.add_meta = q(ins(m).values(key=bp("k"), value=bp("val")).on_conflict_do_nothing())
        self.create_tables = table_statements(tables, dialect)
        self.create_indexes = index_statements(tables, dialect)


# json.loads(text) is JSONDecoder().decode(text): two whitespace regex matches and checks around
# raw_decode, ~7.5k of its 15.3k instructions on a three-key object (benchmarks/callgrind_parts.py).
_raw_decode = json.JSONDecoder().raw_decode


def _loads(text: str | None) -> dict[str, Any]:
    """The data column's value: the JSON object, or {} (empty text, or JSON that is not an object)."""
    if not text or text == "{}":
        return {}
    try:
        value, end = _raw_decode(text)
    except ValueError:
        end = -1
    if end != len(text):  # whitespace around the document, or not JSON at all: json.loads decides
        value = json.loads(text)
    return value if isinstance(value, dict) else {}


def dumps(data: Mapping[str, Any]) -> str:
    """The data column's text."""
    return _dumps(data)


def _dumps(data: Mapping[str, Any]) -> str:
    if not data:
        return "{}"
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


# Per-request reads (the database strategy's lookup): a plain frozen SessionRecord(...) costs ~14.5k
# CPU instructions more (13 fields set through object.__setattr__), 5.8% of asgi_db_sqlite_vs_floor
# (2.26 -> 2.39 by instruction counts, benchmarks/callgrind_asgi.py); see keyfob._frozen.
_new_record = fast_constructor(SessionRecord)


def record(row: Row) -> SessionRecord:
    """A sessions row (columns in :data:`FIELDS` order) → SessionRecord."""
    return _new_record(
        row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], row[8], row[9],
        _loads(row[10]), row[11], row[12],
    )  # fmt: skip


_new_live = LiveRow._make


def live(row: Row) -> LiveRow:
    """A ``get_live`` row (the columns of :class:`LiveRow`, in its order) → LiveRow."""
    return _new_live((row[0], row[1], row[2], row[3], row[4], row[5], row[6], _loads(row[7])))


def params(r: SessionRecord) -> tuple[Any, ...]:
    """SessionRecord → the insert's parameters, in :data:`FIELDS` order."""
    return (
        r.token_hash, r.id, r.user_id, r.created_at, r.last_seen_at, r.expires_at,
        r.absolute_expires_at, r.authenticated_at, r.ip, r.user_agent, _dumps(r.data), r.retired_at,
        r.generation,
    )  # fmt: skip

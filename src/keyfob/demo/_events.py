"""The demo's event log: keyfob's lifecycle events and the admin's actions, kept in the demo's SQLite file.

The engine calls :meth:`EventLog.record` (subscribed with ``fob.on_event``) synchronously on the request
path, and handlers must not block, so it only appends to an in-memory buffer. :meth:`EventLog.flush`
writes the buffer in one transaction; the app runs it every second, before every read of the log, and
at shutdown. The table is bounded: past ``limit`` rows the oldest go.

Events carry public ids only (session id, user id), never a token. Some engine events know only the
session id (``revoked`` by id, ``signed_out``); the log fills in the user from earlier events of the
same session, so filtering by user finds them too.
"""

from __future__ import annotations

import json
import sqlite3
from collections import OrderedDict, deque
from collections.abc import Iterator, Mapping
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._session import Event

__all__ = ["ADMIN_KINDS", "ENGINE_KINDS", "THEFT_KINDS", "EventLog", "LoggedEvent"]

#: The engine's lifecycle events (``keyfob.EventName``).
ENGINE_KINDS: tuple[str, ...] = (
    "created", "rolled", "rotated", "refreshed", "revoked", "expired", "reuse_detected",
    "user_version_bumped", "signed_out", "updated", "elevated", "impersonation_started",
    "impersonation_stopped", "binding_mismatch", "served_from_view",
)
#: What the demo's admin console does; each is logged like an engine event.
ADMIN_KINDS: tuple[str, ...] = ("admin.kicked", "admin.version_bumped", "admin.role_changed")
#: Events that mean a token was stolen or replayed: highlighted in the console.
THEFT_KINDS: frozenset[str] = frozenset({"reuse_detected"})

_MAX_PENDING = 10_000  # a burst bigger than this between two flushes drops its oldest events
_MAX_OWNERS = 10_000  # session id → user id, remembered for events that carry only the session


@dataclass(frozen=True, slots=True)
class LoggedEvent:
    """One row of the event log."""

    id: int
    at: float
    kind: str
    session_id: str | None
    user_id: str | None
    actor: str | None  # the admin who acted, for admin.* events
    detail: Mapping[str, Any] = field(default_factory=dict)

    @property
    def theft(self) -> bool:
        """A reuse (theft) detection: shown highlighted."""
        return self.kind in THEFT_KINDS


class EventLog:
    """A bounded table ``events`` in the demo's users file."""

    def __init__(self, path: Path, *, limit: int = 5000) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.path = path
        self.limit = limit
        self._pending: deque[tuple[float, str, str | None, str | None, str | None, str]] = deque(
            maxlen=_MAX_PENDING
        )
        self._owners: OrderedDict[str, str] = OrderedDict()
        with self._db() as db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS events ("
                " id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, kind TEXT NOT NULL,"
                " session_id TEXT, user_id TEXT, actor TEXT, detail TEXT NOT NULL DEFAULT '{}')"
            )
            db.execute("CREATE INDEX IF NOT EXISTS events_user ON events (user_id, id)")
            db.execute("CREATE INDEX IF NOT EXISTS events_session ON events (session_id)")

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        with closing(sqlite3.connect(self.path, timeout=5)) as db, db:
            yield db

    # -- writing --------------------------------------------------------------------------------------
    def record(self, event: Event) -> None:
        """``fob.on_event`` handler: buffer the event (no I/O here)."""
        self._add(event.at, event.name, event.session_id, event.user_id, None, event.detail)

    def admin(self, kind: str, *, actor: str, user_id: str, at: float,
              detail: Mapping[str, Any] | None = None) -> None:
        """Log an admin action (``admin.kicked``, ``admin.version_bumped``, ``admin.role_changed``)
        against ``user_id``."""
        if kind not in ADMIN_KINDS:
            raise ValueError(f"unknown admin event {kind!r}")
        self._add(at, kind, None, user_id, actor, detail or {})

    def _add(self, at: float, kind: str, session_id: str | None, user_id: str | None, actor: str | None,
             detail: Mapping[str, Any]) -> None:
        if session_id is not None:
            if user_id is not None:
                self._owners[session_id] = user_id
                self._owners.move_to_end(session_id)
                if len(self._owners) > _MAX_OWNERS:
                    self._owners.popitem(last=False)
            else:
                user_id = self._owners.get(session_id)
        text = json.dumps(dict(detail), default=str, sort_keys=True)
        self._pending.append((at, kind, session_id, user_id, actor, text))

    def flush(self) -> int:
        """Write the buffered events; returns how many. Trims the table to ``limit`` rows."""
        if not self._pending:
            return 0
        rows = []
        while self._pending:
            rows.append(self._pending.popleft())
        with self._db() as db:
            for i, (at, kind, sid, uid, actor, detail) in enumerate(rows):
                if sid is not None and uid is None:  # owner known only from an earlier run's events
                    found = db.execute(
                        "SELECT user_id FROM events WHERE session_id = ? AND user_id IS NOT NULL LIMIT 1",
                        (sid,),
                    ).fetchone()
                    if found is not None:
                        rows[i] = (at, kind, sid, found[0], actor, detail)
            db.executemany(
                "INSERT INTO events (at, kind, session_id, user_id, actor, detail) VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )
            db.execute(
                "DELETE FROM events WHERE id <= (SELECT MAX(id) FROM events) - ?", (self.limit,)
            )
        return len(rows)

    # -- reading --------------------------------------------------------------------------------------
    def query(self, *, user_id: str | None = None, kind: str | None = None,
              limit: int = 200) -> list[LoggedEvent]:
        """The newest events first, optionally only one user's and/or one kind's."""
        self.flush()
        where, args = [], []
        if user_id:
            where.append("(user_id = ? OR actor = ?)")
            args += [user_id, user_id]
        if kind:
            where.append("kind = ?")
            args.append(kind)
        sql = "SELECT id, at, kind, session_id, user_id, actor, detail FROM events"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC LIMIT ?"
        with self._db() as db:
            rows = db.execute(sql, (*args, limit)).fetchall()
        return [LoggedEvent(r[0], r[1], r[2], r[3], r[4], r[5], _detail(r[6])) for r in rows]

    def count(self) -> int:
        self.flush()
        with self._db() as db:
            return int(db.execute("SELECT COUNT(*) FROM events").fetchone()[0])


def _detail(text: str) -> Mapping[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}

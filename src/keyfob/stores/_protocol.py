"""The one store protocol and the records that cross it.

Stores are dumb: they keep rows and answer atomically. Whether a session is valid,
expired or revoked is decided in ``keyfob.strategies`` (Lucia's split).

Times are epoch seconds (float). Token hashes are ``sha256(token).digest()`` (32 bytes);
a raw token never reaches a store (except in Auth.js compatibility mode, where the
Auth.js schema stores raw tokens and the adapter does the mapping itself).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple, Protocol, runtime_checkable

__all__ = [
    "ChangePage",
    "FeedHandler",
    "LiveRow",
    "RevocationFeed",
    "SessionRecord",
    "SessionStore",
    "eviction_key",
    "is_live",
    "live_reader",
    "live_row",
    "over_limit",
    "passed_deadline",
]


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """One stored session token.

    ``token_hash`` is the primary key. ``id`` is the public handle (safe to show, log and
    put in URLs); several rows share an ``id`` only in the hybrid strategy, where the
    retired refresh tokens of a session are kept (``retired_at`` set) for reuse detection.
    """

    token_hash: bytes
    id: str
    user_id: str
    created_at: float
    last_seen_at: float
    expires_at: float
    absolute_expires_at: float | None = None
    authenticated_at: float | None = None  # when the user last proved who they are (fresh_age)
    ip: str | None = None
    user_agent: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)
    retired_at: float | None = None  # hybrid: this refresh token was rotated away at this time
    generation: int = 0  # hybrid: refresh rotation counter within the session (family)


class LiveRow(NamedTuple):
    """What a request's check reads of a live (not retired) row: :meth:`SessionStore.get_live`.

    The :class:`SessionRecord` fields the ``database`` strategy's per-request decision (deadlines,
    policy) and its :class:`~keyfob.Session` need, with the same names and meanings; the token
    hash is the caller's own key. A plain tuple underneath (cheap to build from a SQL row).
    """

    id: str
    user_id: str
    created_at: float
    last_seen_at: float
    expires_at: float
    absolute_expires_at: float | None
    authenticated_at: float | None
    data: Mapping[str, Any]


def live_row(rec: SessionRecord | None) -> LiveRow | None:
    """``rec`` as a :class:`LiveRow`; None for no row or a retired one."""
    if rec is None or rec.retired_at is not None:
        return None
    return LiveRow(rec.id, rec.user_id, rec.created_at, rec.last_seen_at, rec.expires_at,
                   rec.absolute_expires_at, rec.authenticated_at, rec.data)


def live_reader(store: SessionStore) -> Callable[[bytes], Awaitable[LiveRow | None]]:
    """``store.get_live``, or, for a store without it, ``get`` made into its answer."""
    own: Callable[[bytes], Awaitable[LiveRow | None]] | None = getattr(store, "get_live", None)
    if own is not None:
        return own

    async def get_live(token_hash: bytes) -> LiveRow | None:
        return live_row(await store.get(token_hash))

    return get_live


@dataclass(frozen=True, slots=True)
class ChangePage:
    """One page of a store's change log (:meth:`SessionStore.changes`).

    ``events`` are feed-shaped, oldest first: ``{"t": "sid", "sid": str, "until": float}`` and
    ``{"t": "ver", "user": str, "ver": int, "until": float | None}``. ``cursor`` is opaque: pass it
    back to ``changes()`` to read what follows (on an empty page it is the cursor that was passed
    in, or a starting one). ``more`` is True when another page is ready now.
    """

    events: list[dict[str, Any]]
    cursor: str
    more: bool


Reason = Literal["absolute", "idle", "max_age"]


def passed_deadline(now: float, *, expires_at: float, last_seen_at: float, absolute_expires_at: float | None,
                    idle_timeout: float | None) -> tuple[Reason, float] | None:
    """The liveness rule: ``(reason, expired_at)`` of the first deadline passed at ``now``, or None.

    Reasons, in the order checked: ``"absolute"`` (``now >= absolute_expires_at``), ``"idle"``
    (``now - last_seen_at >= idle_timeout``), ``"max_age"`` (``now >= expires_at``). Every deadline is
    exclusive: a session is dead *at* its deadline. Pure; stores may call it (arrows point down), and
    ``keyfob.strategies._lifetimes`` is its front door for the strategies. RedisStore's
    ``LIVENESS_LUA`` mirrors it, and tests/unit/test_lifetimes.py proves the mirror.
    """
    if absolute_expires_at is not None and now >= absolute_expires_at:
        return "absolute", absolute_expires_at
    if idle_timeout is not None and now - last_seen_at >= idle_timeout:
        return "idle", last_seen_at + idle_timeout
    if now >= expires_at:
        return "max_age", expires_at
    return None


def is_live(rec: SessionRecord, now: float, idle_timeout: float | None) -> bool:
    """Whether a row is a live session at ``now``: not retired and before every deadline.

    Used by the stores' ``add_limited`` (which counts live sessions atomically) and by the strategies.
    """
    return rec.retired_at is None and passed_deadline(
        now, expires_at=rec.expires_at, last_seen_at=rec.last_seen_at,
        absolute_expires_at=rec.absolute_expires_at, idle_timeout=idle_timeout) is None


def eviction_key(rec: SessionRecord) -> tuple[float, float, str]:
    """Sort key of ``add_limited``'s evictions: least recently active first (ties: oldest, then id)."""
    return (rec.last_seen_at, rec.created_at, rec.id)


def over_limit(rows: Iterable[SessionRecord], *, limit: int, now: float,
               idle_timeout: float | None) -> list[str] | None:
    """``add_limited``'s rule: None when one more session of this user fits under ``limit``; else the
    session ids to evict first, the ``live - limit + 1`` live ones first in :func:`eviction_key`
    order. Shared by the in-process stores; RedisStore's Lua mirrors it."""
    live = [r for r in rows if is_live(r, now, idle_timeout)]
    if len(live) < limit:
        return None
    live.sort(key=eviction_key)
    return list(dict.fromkeys(r.id for r in live[: len(live) - limit + 1]))


@runtime_checkable
class SessionStore(Protocol):
    """Async storage of session records and per-user token versions.

    Every method translates driver/connection errors into ``keyfob.StoreUnavailable``
    (``raise StoreUnavailable(...) from exc``): callers fail closed on it.

    Every store also has a ``stores_raw_tokens: bool`` attribute (not part of the structural
    check, so third-party stores without it still match): False for keyfob's own schema, True for
    ``open_store(url, authjs_compat=True)``, whose ``SessionRecord.token_hash`` carries the *raw*
    token's UTF-8 bytes because Auth.js stores raw tokens. Strategies read it with
    ``getattr(store, "stores_raw_tokens", False)`` to decide whether to hash.

    keyfob's stores also offer ``add_limited`` (likewise outside the structural check; without it
    the strategies fall back to ``list_user`` + ``delete`` + ``add``, which concurrent sign-ins of
    one user can overrun)::

        async def add_limited(self, record: SessionRecord, *, limit: int, evict: bool, now: float,
                              idle_timeout: float | None) -> tuple[bool, list[str]]:

    ``add`` under ``max_sessions_per_user``, atomically with respect to every other
    ``add_limited`` of the same user (on every node): count the user's live rows (:func:`is_live`
    at ``now``); below ``limit``, insert ``record`` and return ``(True, [])``; otherwise, with
    ``evict=False`` insert nothing and return ``(False, [])``, with ``evict=True`` delete every row
    (live and retired) of the ``count - limit + 1`` live sessions first in :func:`eviction_key`
    order, insert ``record`` and return ``(True, evicted session ids)``. Raises ValueError, changing
    nothing, if a row with ``record.token_hash`` exists.

    Every store also has a ``namespace: str`` attribute (outside the structural check): the
    prefix in use (``?prefix=`` on Redis, ``?table_prefix=`` on SQL; ``""`` for the default),
    shown by ``keyfob doctor``.

    They also offer ``set_data`` (``Keyfob.update_session``; without it that call is a ConfigError)::

        async def set_data(self, token_hash: bytes, data: Mapping[str, Any]) -> bool:

    Replace the ``data`` of the live row with this hash, touching nothing else; False (changing
    nothing) when the row is missing or retired.

    And ``get_live``, the ``database`` strategy's per-request read (for a store without it,
    :func:`live_reader` makes ``get``'s answer into one)::

        async def get_live(self, token_hash: bytes) -> LiveRow | None:

    The live (not retired) row with this hash as a :class:`LiveRow`, or None: ``get`` without
    retired rows, reading only the columns a :class:`LiveRow` holds. Never writes.
    """

    async def get(self, token_hash: bytes) -> SessionRecord | None:
        """The row with this token hash (live or retired), or None. Never writes."""
        ...

    async def add(self, record: SessionRecord) -> None:
        """Insert a new row. Raises ValueError if a row with this ``token_hash`` exists."""
        ...

    async def touch(self, token_hash: bytes, *, seen: float, expires: float) -> None:
        """Set ``last_seen_at`` and ``expires_at`` of a live row (rolling sessions).

        A missing or retired row is left alone (no error).
        """
        ...

    async def replace(self, old_hash: bytes, new: SessionRecord, *, now: float, keep_old: bool) -> bool:
        """Atomically swap a live row for ``new`` (same ``id``).

        Returns False, changing nothing, if ``old_hash`` is missing or already retired.
        ``keep_old=False`` deletes the old row (``rotate``); ``keep_old=True`` keeps it with
        ``retired_at=now`` (hybrid refresh rotation, for reuse detection). Two concurrent calls
        with the same ``old_hash`` can never both return True. ``new.token_hash`` may equal
        ``old_hash`` (with ``keep_old=False``): the row is rewritten in place, which is how
        ``keyfob.django``'s session engine saves changed session data under the same key.
        """
        ...

    async def delete(self, session_id: str) -> int:
        """Delete every row (live and retired) of this session id; return how many live ones went."""
        ...

    async def get_by_id(self, session_id: str) -> SessionRecord | None:
        """The live row with this public id, or None."""
        ...

    async def list_user(self, user_id: str) -> Sequence[SessionRecord]:
        """The user's live (not retired) rows, oldest first. Expired rows may be included."""
        ...

    async def delete_user(self, user_id: str, *, keep: str | None = None) -> list[str]:
        """Delete all the user's sessions except the one with id ``keep``; return the ids deleted."""
        ...

    async def delete_expired(self, now: float, *, batch: int = 1000) -> int:
        """Delete up to ``batch`` rows whose ``expires_at`` (or ``absolute_expires_at``) is past.

        Callers loop until it returns less than ``batch``; each call is one short transaction.
        Rows expiring exactly at ``now`` stay. Also prunes, in bounded batches, revocations,
        version horizons and change-log entries whose ``until`` is past. Returns the number of
        session rows deleted.
        """
        ...

    async def count(self) -> int:
        """How many rows are stored (for the CLI and benchmarks)."""
        ...

    async def get_user_version(self, user_id: str) -> int:
        """The user's token version (0 if never bumped)."""
        ...

    async def bump_user_version(self, user_id: str, *, until: float | None = None) -> int:
        """Atomically increment and return the user's token version, and append a ``ver`` entry
        to the change log.

        ``until`` is the horizon: after it no token minted before this bump can still be alive
        (``access_ttl`` plus skew for hybrid, ``max_age`` for jwt), so the bump leaves
        :meth:`user_versions` and its change-log entry may be pruned by :meth:`delete_expired`.
        ``None`` keeps it forever (old callers). A later bump's horizon replaces an earlier one's
        in :meth:`user_versions` (the later, higher version refuses every token the earlier one
        did). The number itself never goes down: :meth:`get_user_version` keeps
        returning it after the horizon, so a later bump never hands out a number a live token
        minted after this bump may carry.
        """
        ...

    async def user_versions(self) -> Mapping[str, int]:
        """Every non-zero user version whose horizon is not past (for the revocation view's
        resync). Versions bumped with ``until=None`` stay."""
        ...

    async def is_revoked(self, session_id: str, *, now: float) -> bool:
        """Whether ``session_id`` is in the revocation list with an ``until`` after ``now``.

        A point lookup (the store-check path when the feed is down); never loads the whole list.
        """
        ...

    async def changes(self, cursor: str | None, *, now: float, limit: int = 1000) -> ChangePage:
        """Page through the change log, oldest first, strictly after ``cursor`` (None: from the start).

        :meth:`add_revocation` appends ``{"t": "sid", "sid": str, "until": float}``,
        :meth:`bump_user_version` appends ``{"t": "ver", "user": str, "ver": int, "until": float | None}``.
        An entry lives until its ``until`` (then :meth:`delete_expired` may prune it); ``changes``
        never returns an entry whose ``until`` is past ``now``. Because every entry expires at its
        horizon, reading from the start gives the whole current state, and a cursor older than the
        oldest kept entry loses nothing. Each call is one short query/command returning at most
        ``limit`` events (on Redis: never one command over ~10 ms, no HGETALL/SMEMBERS of an
        unbounded key). Entries appear in commit order: a reader never sees a later entry before
        an earlier one that was committed first.
        """
        ...

    async def epoch(self) -> str | None:
        """The store's epoch id, or None when it is absent.

        A random string (16 url-safe characters) that :meth:`migrate` creates when absent,
        atomically: the first writer wins and every process then reads the same one. ``None``
        means the store lost its data (FLUSHDB, a restart without persistence, a dropped table) or
        was never migrated. Tokens carry the epoch they were minted under and a process refuses
        tokens of another epoch, so a wipe never resurrects a revoked session.
        """
        ...

    def feed(self) -> RevocationFeed | None:
        """A new revocation feed that matches this store, or None when it has no push channel.

        Same server; the channel derives from the store's :attr:`namespace` and its database
        (Redis db number, PostgreSQL database name), so apps sharing a server never see each
        other's revocations. SQLite returns None (the engine then polls the store); memory returns
        an in-process feed private to the store's shared state. The engine calls it when no
        ``feed=`` is passed; ``open_feed(url)`` keeps working for callers that use it.
        """
        ...

    async def add_revocation(self, session_id: str, *, until: float) -> None:
        """Remember that ``session_id`` was revoked, until ``until`` (when its last access token
        expires). Feeds the hybrid/jwt revocation view's resync; idempotent."""
        ...

    async def revocations(self, now: float) -> Mapping[str, float]:
        """Revoked session ids whose ``until`` is still in the future → their ``until``."""
        ...

    async def migrate(self) -> None:
        """Create or upgrade the schema and create the epoch if it is absent.

        Idempotent and serialized: N processes migrating a fresh store at the same moment all
        succeed and end up with the same epoch (SQLite ``BEGIN IMMEDIATE`` with a busy timeout and
        retries, PostgreSQL ``pg_advisory_xact_lock``, Redis ``SET NX``). Never loses rows.
        """
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


FeedHandler = Callable[[Mapping[str, Any]], None]
StateHandler = Callable[[bool], Awaitable[None] | None]


@runtime_checkable
class RevocationFeed(Protocol):
    """Broadcast of revocation events between nodes (Redis pub/sub, PostgreSQL LISTEN/NOTIFY, memory).

    Events are small JSON objects, the shapes of :class:`ChangePage` events:
    ``{"t": "sid", "sid": ..., "until": ...}`` (a session revoked), ``{"t": "ver", "user": ...,
    "ver": ...}`` (a user's minimum token version raised; ``"until"`` optional).
    """

    async def publish(self, event: Mapping[str, Any]) -> None:
        """Send an event to every subscribed node (this one included). Raises StoreUnavailable."""
        ...

    async def start(self, handler: FeedHandler, on_state: StateHandler) -> None:
        """Start listening in a background task; call ``handler`` for each event and
        ``on_state(True)`` once subscribed, ``on_state(False)`` when the connection drops
        (the task keeps reconnecting with backoff, calling ``on_state(True)`` again when back)."""
        ...

    async def close(self) -> None:
        """Stop listening and release the connection."""
        ...

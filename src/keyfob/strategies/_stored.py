"""What the two stored strategies (database, hybrid) share: the session limit and the user-wide ops."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from .._session import RequestMeta
from ..errors import KeyfobError
from ..stores import SessionRecord
from ..stores._protocol import eviction_key
from . import _lifetimes as lifetimes
from ._base import Context, new_id

__all__ = ["SessionLimitReached", "StoredSessions", "add_session", "new_record", "shape"]


class SessionLimitReached(KeyfobError):
    """The user already has ``max_sessions_per_user`` sessions and the policy is ``refuse``."""

    code = "session_limit_reached"
    status_code = 403
    default_hint = "sign out on another device (or revoke one from the device list) and try again"


async def add_session(ctx: Context, rec: SessionRecord, now: float, *,
                      revoke: Callable[[str], Awaitable[Any]]) -> None:
    """Store a new session under ``max_sessions_per_user`` (evict the least recently active, or refuse).

    The count, the evictions and the insert are one atomic store call (``add_limited``), so
    concurrent sign-ins of one user cannot overrun the limit. ``revoke(id)`` runs for each evicted
    session (after the store deleted it, or as the fallback's eviction for a third-party store
    without ``add_limited``: check then insert, not atomic).
    """
    s = ctx.settings
    limit = s.max_sessions_per_user
    if limit is None:
        await ctx.store.add(rec)
        return
    evict = s.session_limit_policy == "evict"
    refused = f"this account already has {limit} or more active sessions (limit {limit})"
    add_limited = getattr(ctx.store, "add_limited", None)
    if add_limited is not None:
        added, evicted = await add_limited(rec, limit=limit, evict=evict, now=now,
                                           idle_timeout=s.idle_timeout)
        if not added:
            raise SessionLimitReached(refused)
    else:
        rows = await ctx.store.list_user(rec.user_id)
        live = [r for r in rows if lifetimes.is_live(r, now, s.idle_timeout)]
        evicted = []
        if len(live) >= limit:
            if not evict:
                raise SessionLimitReached(refused)
            evicted = [old.id for old in sorted(live, key=eviction_key)[: len(live) - limit + 1]]
        for sid in evicted:
            await ctx.store.delete(sid)
        await ctx.store.add(rec)
    for sid in evicted:
        await revoke(sid)
        ctx.emit("revoked", sid, rec.user_id, {"reason": "session_limit"})


def new_record(ctx: Context, key: bytes, user_id: str, data: Mapping[str, Any], meta: RequestMeta,
               now: float) -> SessionRecord:
    """The row of a new sign-in: a fresh public id, its deadlines, the app data (``on_token`` shaped)."""
    s = ctx.settings
    absolute = lifetimes.absolute_deadline(now, s)
    return SessionRecord(
        token_hash=key, id=new_id(), user_id=user_id, created_at=now, last_seen_at=now,
        expires_at=lifetimes.new_expiry(now, absolute, s), absolute_expires_at=absolute, authenticated_at=now,
        ip=meta.ip, user_agent=meta.user_agent, data=shape(ctx, user_id, data))


def shape(ctx: Context, user_id: str, data: Mapping[str, Any]) -> dict[str, Any]:
    """The app data to store: ``data``, through the ``on_token`` callback if there is one."""
    return dict(data) if ctx.on_token is None else ctx.on_token(dict(data), user_id)


class StoredSessions:
    """User-wide operations of strategies whose sessions are store rows."""

    ctx: Context
    name: str

    async def forget(self, session_id: str, now: float) -> None:
        """After a session's rows are deleted: what else must refuse its tokens (hybrid: access tokens)."""

    async def revoke_user(self, user_id: str, *, keep: str | None, now: float) -> int:
        ids = await self.ctx.store.delete_user(user_id, keep=keep)
        for sid in ids:
            await self.forget(sid, now)
            self.ctx.emit("revoked", sid, user_id, {"reason": "revoke_user"})
        return len(ids)

    async def revoke_others(self, current: Any, token: str | None, refresh: str | None, *,
                            now: float) -> tuple[int, Any]:
        return await self.revoke_user(current.user_id, keep=current.id, now=now), None

    async def bump_user_version(self, user_id: str, *, now: float) -> int:
        ver = await self.ctx.view.bump(user_id)
        for sid in await self.ctx.store.delete_user(user_id):
            await self.forget(sid, now)
            self.ctx.emit("revoked", sid, user_id, {"reason": "user_version_bumped"})
        self.ctx.emit("user_version_bumped", None, user_id, {"version": ver})
        return ver

    async def list_sessions(self, user_id: str, *, now: float) -> list[SessionRecord]:
        idle = self.ctx.settings.idle_timeout
        return [rec for rec in await self.ctx.store.list_user(user_id) if lifetimes.is_live(rec, now, idle)]

"""What the two stored strategies (database, hybrid) share: the session limit and the user-wide ops."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from .._session import Issued, RequestMeta, Session
from ..errors import ConfigError, KeyfobError, SessionRevoked
from ..settings import Settings
from ..stores import LiveRow, SessionRecord
from ..stores._protocol import eviction_key
from . import _lifetimes as lifetimes
from ._base import Context, new_id
from ._policy import POLICY_KEY, fingerprint, policy_of

__all__ = ["SessionLimitReached", "StoredSessions", "add_session", "binding_data", "check_binding",
           "lifetimes_for", "new_record", "shape"]


def lifetimes_for(s: Settings, pol: Mapping[str, Any] | None) -> Settings:
    """The lifetimes a session lives by: the browser-session pair for a "don't remember me" sign-in."""
    return s.browser_session if pol is not None and pol.get("rem") is False else s


async def check_binding(ctx: Context, rec: SessionRecord, pol: Mapping[str, Any], meta: RequestMeta,
                        revoke: Callable[[str], Awaitable[Any]]) -> SessionRecord:
    """Binding, at a store check: the device must match the one the session is bound to.

    ``soft``: a mismatch makes the session not fresh (``authenticated_at`` 0, stored) until the user
    re-authenticates (``Keyfob.elevate`` re-binds to the new device); ``strict``: revoked.
    """
    data = await binding_data(ctx, rec.token_hash, rec, pol, meta, revoke)
    return rec if data is rec.data else dataclasses.replace(rec, data=data)


async def binding_data(ctx: Context, key: bytes, row: SessionRecord | LiveRow, pol: Mapping[str, Any],
                       meta: RequestMeta, revoke: Callable[[str], Awaitable[Any]]) -> Mapping[str, Any]:
    """:func:`check_binding` on the row stored under ``key``: its data (a new object after a soft
    mismatch made it not fresh)."""
    bound = pol.get("bnd")
    mode = ctx.settings.bind
    if mode is None or bound is None or bound == fingerprint(meta):
        return row.data
    if mode == "strict":
        await revoke(row.id)
        ctx.emit("binding_mismatch", row.id, row.user_id, {"mode": mode})
        ctx.emit("revoked", row.id, row.user_id, {"reason": "binding"})
        raise SessionRevoked("the session was used from another device or network", hint="sign in again")
    if pol.get("auth") == 0:  # already not fresh: nothing to write
        return row.data
    data = {**row.data, POLICY_KEY: {**pol, "auth": 0.0}}
    await set_data(ctx, key, data)
    ctx.emit("binding_mismatch", row.id, row.user_id, {"mode": mode})
    return data


async def set_data(ctx: Context, token_hash: bytes, data: Mapping[str, Any]) -> bool:
    setter = getattr(ctx.store, "set_data", None)
    if setter is None:
        name = type(ctx.store).__name__
        raise ConfigError(f"the store {name} cannot update a session's data (it has no set_data)",
                          hint="use one of keyfob's stores, or add set_data (see keyfob.stores.SessionStore)")
    return bool(await setter(token_hash, data))


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
               now: float, policy: Mapping[str, Any] | None = None) -> SessionRecord:
    """The row of a new sign-in: a fresh public id, its deadlines, the app data (``on_token`` shaped)
    and keyfob's policy for it (under ``_kf``)."""
    s = lifetimes_for(ctx.settings, policy)
    absolute = policy.get("until") if policy else None
    absolute = lifetimes.absolute_deadline(now, s) if absolute is None else float(absolute)
    stored = shape(ctx, user_id, data)
    if policy:
        # the deadline is the row's; a row needs no copy of the admin's claims to return to
        stored[POLICY_KEY] = {k: v for k, v in policy.items() if k not in ("until", "imp_claims")}
    return SessionRecord(
        token_hash=key, id=new_id(), user_id=user_id, created_at=now, last_seen_at=now,
        expires_at=lifetimes.new_expiry(now, absolute, s), absolute_expires_at=absolute, authenticated_at=now,
        ip=meta.ip, user_agent=meta.user_agent, data=stored)


def shape(ctx: Context, user_id: str, data: Mapping[str, Any]) -> dict[str, Any]:
    """The app data to store: ``data``, through the ``on_token`` callback if there is one."""
    return dict(data) if ctx.on_token is None else ctx.on_token(dict(data), user_id)


class StoredSessions:
    """User-wide operations of strategies whose sessions are store rows."""

    ctx: Context
    name: str

    def horizon(self, now: float) -> float:
        """When the last token minted before ``now`` is dead everywhere: an access token's lifetime
        plus the clock skew (the view's entries live until then; database tokens are rows, and a
        row deleted at ``now`` is refused at once, so the same bound is more than enough)."""
        return now + self.ctx.settings.access_ttl + self.ctx.settings.clock_skew

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
        ver = await self.ctx.view.bump(user_id, until=self.horizon(now))
        for sid in await self.ctx.store.delete_user(user_id):
            await self.forget(sid, now)
            self.ctx.emit("revoked", sid, user_id, {"reason": "user_version_bumped"})
        self.ctx.emit("user_version_bumped", None, user_id, {"version": ver})
        return ver

    async def announce(self, session_id: str, now: float) -> None:
        """After a session's row changed: what else must re-read it (hybrid: access tokens)."""

    async def _update_row(self, session_id: str, change: Callable[[Mapping[str, Any]], dict[str, Any]],
                          now: float) -> SessionRecord | None:
        """Apply ``change`` to the live row's data; the updated row, or None if there is none.
        A refresh racing the write (the row's hash moved and kept the old data) is retried."""
        for _ in range(5):
            rec = await self.ctx.store.get_by_id(session_id)
            if rec is None:
                return None
            data = change(rec.data)
            if await set_data(self.ctx, rec.token_hash, data):
                after = await self.ctx.store.get_by_id(session_id)
                if after is None or after.token_hash == rec.token_hash or after.data == data:
                    await self.announce(session_id, now)
                    return dataclasses.replace(rec, data=data)
        return None

    async def update(self, session: Session | None, session_id: str, patch: Mapping[str, Any] | None, *,
                     now: float, policy: Mapping[str, Any] | None = None) -> Issued | bool:
        def change(data: Mapping[str, Any]) -> dict[str, Any]:
            out = dict(data)
            if patch:
                pol = out.pop(POLICY_KEY, None)
                out = {**out, **patch}
                if pol is not None:
                    out[POLICY_KEY] = pol
            if policy is not None:
                out[POLICY_KEY] = {**(policy_of(data) or {}), **policy}
            return out

        rec = await self._update_row(session_id, change, now)
        if rec is None:
            return False
        self.ctx.emit("updated", rec.id, rec.user_id, {"keys": sorted(patch or ())})
        return await self.reissued(rec, now) if session is not None else True

    async def reissued(self, rec: SessionRecord, now: float) -> Issued | bool:
        """The current request's new tokens after its own row changed (hybrid: a new access token)."""
        return True

    async def update_user(self, user_id: str, patch: Mapping[str, Any], *, now: float) -> int:
        n = 0
        for rec in await self.list_sessions(user_id, now=now):
            if await self.update(None, rec.id, patch, now=now):
                n += 1
        return n

    async def list_sessions(self, user_id: str, *, now: float) -> list[SessionRecord]:
        idle = self.ctx.settings.idle_timeout
        return [rec for rec in await self.ctx.store.list_user(user_id) if lifetimes.is_live(rec, now, idle)]

"""The ``database`` strategy: an opaque 256-bit token in the cookie, its SHA-256 in the store.

Validation reads top to bottom like a checklist (Lucia's ``validateSessionToken``):
shape → lookup by hash → retired? → deadlines → roll (throttled by ``update_age``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from .._session import RequestMeta, Session
from ..errors import InvalidToken, KeyfobError, SessionExpired
from ..stores import SessionRecord
from ..stores._protocol import eviction_key
from . import _lifetimes as life
from ._base import (
    Context,
    Outcome,
    Tokens,
    looks_like_opaque_token,
    new_id,
    new_outcome,
    new_session,
    new_token,
    token_hash,
)

__all__ = ["DatabaseStrategy", "SessionLimitReached"]


class SessionLimitReached(KeyfobError):
    """The user already has ``max_sessions_per_user`` sessions and the policy is ``refuse``."""

    code = "session_limit_reached"
    status_code = 403
    default_hint = "sign out on another device (or revoke one from the device list) and try again"


def session_from_record(rec: SessionRecord, strategy: str, expires_at: float | None = None) -> Session:
    auth = rec.authenticated_at
    return new_session(  # Session(id, user_id, data, created_at, expires_at, authenticated_at, strategy)
        rec.id, rec.user_id, rec.data, rec.created_at, rec.expires_at if expires_at is None else expires_at,
        auth if auth is not None else rec.created_at, strategy,
    )


async def add_session(ctx: Context, rec: SessionRecord, now: float, *,
                      revoke: Callable[[str], Awaitable[Any]],
                      forget: Callable[[str], Awaitable[Any]] | None = None) -> None:
    """Store a new session under ``max_sessions_per_user`` (evict the least recently active, or refuse).

    The count, the evictions and the insert are one atomic store call (``add_limited``), so
    concurrent sign-ins of one user cannot overrun the limit. ``forget(id)`` runs for each session
    the store evicted (hybrid: mark it revoked for access tokens); ``revoke(id)`` is the fallback's
    eviction, for a third-party store without ``add_limited`` (check then insert, not atomic).
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
        for sid in evicted:
            if forget is not None:
                await forget(sid)
            ctx.emit("revoked", sid, rec.user_id, {"reason": "session_limit"})
        return
    live = [r for r in await ctx.store.list_user(rec.user_id) if life.is_alive(r, now, s)]
    if len(live) >= limit:
        if not evict:
            raise SessionLimitReached(refused)
        live.sort(key=eviction_key)
        for old in live[: len(live) - limit + 1]:
            await revoke(old.id)
            ctx.emit("revoked", old.id, old.user_id, {"reason": "session_limit"})
    await ctx.store.add(rec)


class DatabaseStrategy:
    """Server-side sessions: revocable at once, one store read per request."""

    name = "database"

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.s = ctx.settings
        self._raw = bool(getattr(ctx.store, "stores_raw_tokens", False))
        # A store may offer its lookup as a plain call (SQLite: no coroutine per request).
        self._get_sync = getattr(ctx.store, "get_sync", None)

    def _plausible(self, token: str) -> bool:
        if self._raw:  # Auth.js tokens are UUIDs (or whatever its adapter generated)
            return 0 < len(token) <= 255 and token.isascii() and token.isprintable()
        return looks_like_opaque_token(token)

    def _key(self, token: str) -> bytes:
        # Auth.js compatibility mode stores raw tokens (as Auth.js does); otherwise only the hash.
        return token.encode() if self._raw else token_hash(token)

    def _shape(self, user_id: str, data: Mapping[str, Any]) -> dict[str, Any]:
        stored = dict(data)
        if self.ctx.on_token is not None:
            stored = self.ctx.on_token(stored, user_id)
        return stored

    async def create(self, user_id: str, data: Mapping[str, Any], meta: RequestMeta, *,
                     cookie_salt: str, now: float) -> tuple[Session, Tokens]:
        token = new_token()
        absolute = life.absolute_deadline(now, self.s)
        rec = SessionRecord(
            token_hash=self._key(token), id=new_id(), user_id=user_id, created_at=now, last_seen_at=now,
            expires_at=life.new_expiry(now, absolute, self.s), absolute_expires_at=absolute,
            authenticated_at=now, ip=meta.ip, user_agent=meta.user_agent, data=self._shape(user_id, data),
        )
        await add_session(self.ctx, rec, now, revoke=lambda sid: self.revoke(sid, now=now))
        if self._raw:  # an Auth.js table may assign its own id (serial, uuid): hand back the row's
            stored = await self.ctx.store.get(rec.token_hash)
            if stored is not None:
                rec = dataclasses.replace(rec, id=stored.id)
        self.ctx.emit("created", rec.id, user_id, {})
        tokens = Tokens(session=token, session_max_age=rec.expires_at - now)
        return session_from_record(rec, self.name), tokens

    async def authenticate(self, token: str | None, refresh: str | None, *, cookie_salt: str,
                           now: float) -> Outcome:
        if token is None:
            return Outcome(None)
        # 1. shape: garbage never reaches the store
        if not self._plausible(token):
            raise InvalidToken()
        # 2. lookup by hash
        get_sync = self._get_sync
        key = self._key(token)
        rec = get_sync(key) if get_sync is not None else await self.ctx.store.get(key)
        if rec is None or rec.retired_at is not None:
            raise InvalidToken()
        # 3. deadlines (absolute, rolling max_age, idle)
        try:
            life.check_alive(rec, now, self.s)
        except SessionExpired:
            self.ctx.emit("expired", rec.id, rec.user_id, {})
            raise
        # 4. roll, at most once per update_age
        if life.needs_touch(rec, now, self.s):
            expires = life.new_expiry(now, rec.absolute_expires_at, self.s)
            await self.ctx.store.touch(rec.token_hash, seen=now, expires=expires)
            self.ctx.emit("rolled", rec.id, rec.user_id, {})
            return Outcome(session_from_record(rec, self.name, expires),
                           tokens=Tokens(session=token, session_max_age=expires - now))
        return new_outcome(session_from_record(rec, self.name))

    async def refresh(self, refresh: str, *, cookie_salt: str, now: float) -> tuple[Session, Tokens]:
        raise InvalidToken("the database strategy has no refresh tokens", hint="use strategy='hybrid'")

    async def revoke(self, session_id: str, *, now: float) -> bool:
        return await self.ctx.store.delete(session_id) > 0

    async def rotate(self, token: str, *, cookie_salt: str, now: float,
                     data: Mapping[str, Any] | None) -> tuple[Session, Tokens]:
        """New token for the same session; the old token is dead (sign-in, privilege change)."""
        if not self._plausible(token):
            raise InvalidToken()
        old = await self.ctx.store.get(self._key(token))
        if old is None or old.retired_at is not None:
            raise InvalidToken()
        life.check_alive(old, now, self.s)
        new_token_ = new_token()
        new = dataclasses.replace(
            old, token_hash=self._key(new_token_), last_seen_at=now,
            expires_at=life.new_expiry(now, old.absolute_expires_at, self.s),
            data=old.data if data is None else self._shape(old.user_id, data),
        )
        if not await self.ctx.store.replace(old.token_hash, new, now=now, keep_old=False):
            raise InvalidToken("the session was rotated or revoked concurrently")
        self.ctx.emit("rotated", new.id, new.user_id, {})
        return session_from_record(new, self.name), Tokens(session=new_token_,
                                                            session_max_age=new.expires_at - now)

    async def sign_out(self, token: str | None, refresh: str | None, *, cookie_salt: str,
                       now: float) -> str | None:
        if token is None or not self._plausible(token):
            return None
        rec = await self.ctx.store.get(self._key(token))
        if rec is None:
            return None
        await self.ctx.store.delete(rec.id)
        return rec.id

"""The ``database`` strategy: an opaque 256-bit token in the cookie, its SHA-256 in the store.

``authenticate`` is the whole decision, top to bottom (Lucia's ``validateSessionToken``):
parse (shape) → verify (lookup by hash; a revoked token says so) → lifetimes → binding → roll.
Every request is a store check, so ``max_staleness`` is always met (0: the store confirmed this
request) and a live update (``update_session``) shows at the next request. A store outage is a
503 even with ``outage_grace``: an opaque token carries nothing to answer from.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping
from typing import Any, TypeVar

from .._session import Issued, RequestMeta, Session
from ..errors import InvalidToken, SessionExpired, SessionRevoked
from ..stores import LiveRow, SessionRecord
from ..stores._protocol import live_reader
from . import _lifetimes as lifetimes
from ._base import (
    Context,
    CookieSpecs,
    issued,
    looks_like_opaque_token,
    new_token,
    session_from_record,
    token_hash,
)
from ._policy import POLICY_KEY, RouteCheck, policy_of
from ._stored import (
    SessionLimitReached,
    StoredSessions,
    add_session,
    binding_data,
    lifetimes_for,
    new_record,
    shape,
)

__all__ = ["DatabaseStrategy", "SessionLimitReached"]

_Row = TypeVar("_Row", SessionRecord, LiveRow)


class DatabaseStrategy(StoredSessions):
    """Server-side sessions: revocable at once, one store read per request."""

    name = "database"

    def __init__(self, ctx: Context, cookies: CookieSpecs) -> None:
        self.ctx = ctx
        self.settings = ctx.settings
        self.cookies = cookies
        # Auth.js compatibility mode stores raw tokens (as Auth.js does); otherwise only the hash.
        self.raw_tokens = bool(getattr(ctx.store, "stores_raw_tokens", False))
        # the per-request read: only the columns the decision and the Session need
        self._get_live = live_reader(ctx.store)

    async def authenticate(self, token: str | None, refresh: str | None, *, now: float,
                           check: RouteCheck | None = None) -> Session | Issued:
        # 1. shape: garbage never reaches the store
        if token is None or not self._plausible(token):
            raise InvalidToken()
        key = self._key(token)
        row = self._alive(key, await self._get_live(key), now)  # 2-3. lookup, lifetimes
        pol = row.data.get(POLICY_KEY)
        s = self.settings if pol is None else lifetimes_for(self.settings, pol)
        # 4. binding (opt-in): the device must match at every store check, which here is every request
        if pol is not None and check is not None and check.meta is not None:
            data = await binding_data(self.ctx, key, row, pol, check.meta,
                                      lambda sid: self.revoke(sid, now=now))
            if data is not row.data:
                row = row._replace(data=data)
        # 5. roll, at most once per update_age
        if not lifetimes.needs_touch(row.last_seen_at, now, s):
            return session_from_record(row, self.name)
        expires = lifetimes.new_expiry(now, row.absolute_expires_at, s)
        await self.ctx.store.touch(key, seen=now, expires=expires)
        self.ctx.emit("rolled", row.id, row.user_id, {})
        return issued(session_from_record(row, self.name, expires), token, now, lifetime=expires - now)

    async def _live_record(self, token: str, now: float) -> SessionRecord:
        """``authenticate``'s steps 1-3 with the whole row (for ``rotate``, which writes a new one)."""
        if not self._plausible(token):
            raise InvalidToken()
        key = self._key(token)
        rec = await self.ctx.store.get(key)
        return self._alive(key, None if rec is None or rec.retired_at is not None else rec, now)

    def _alive(self, key: bytes, rec: _Row | None, now: float) -> _Row:
        """Steps 2-3 on the live row read by ``key`` (None: there is none)."""
        # 2. no row: a token this node saw revoked says so
        if rec is None:
            if _tombstone(key) in self.ctx.view.revoked:
                raise SessionRevoked()
            raise InvalidToken()
        # 3. deadlines (absolute, idle, rolling max_age; a "don't remember me" session has its own)
        try:
            pol = rec.data.get(POLICY_KEY)
            life = self.settings if pol is None else lifetimes_for(self.settings, pol)
            lifetimes.check_alive(rec, now, life)
        except SessionExpired:
            self.ctx.emit("expired", rec.id, rec.user_id, {})
            raise
        return rec

    def _plausible(self, token: str) -> bool:
        if self.raw_tokens:  # Auth.js tokens are UUIDs (or whatever its adapter generated)
            return 0 < len(token) <= 255 and token.isascii() and token.isprintable()
        return looks_like_opaque_token(token)

    def _key(self, token: str) -> bytes:
        return token.encode() if self.raw_tokens else token_hash(token)

    async def create(self, user_id: str, data: Mapping[str, Any], meta: RequestMeta, *, now: float,
                     policy: Mapping[str, Any] | None = None) -> Issued:
        token = new_token()
        rec = new_record(self.ctx, self._key(token), user_id, data, meta, now, policy)
        await add_session(self.ctx, rec, now, revoke=lambda sid: self.forget(sid, now))
        if self.raw_tokens:  # an Auth.js table may assign its own id (serial, uuid): hand back the row's
            stored = await self.ctx.store.get(rec.token_hash)
            if stored is not None:
                rec = dataclasses.replace(rec, id=stored.id)
        self.ctx.emit("created", rec.id, user_id, {})
        return issued(session_from_record(rec, self.name), token, now, lifetime=rec.expires_at - now)

    async def refresh(self, refresh: str, *, now: float, check: RouteCheck | None = None) -> Issued:
        raise InvalidToken("the database strategy has no refresh tokens", hint="use strategy='hybrid'")

    async def rotate(self, token: str | None, refresh: str | None, *, now: float,
                     data: Mapping[str, Any] | None, policy: Mapping[str, Any] | None = None) -> Issued:
        """New token for the same session; the old token is dead (privilege change, ``Keyfob.elevate``:
        ``policy`` changes keyfob's facts about the session)."""
        if token is None:
            raise InvalidToken("no session to rotate", hint="sign in first")
        old = await self._live_record(token, now)
        fresh = new_token()
        pol = policy_of(old.data)
        stored = dict(old.data) if data is None else shape(self.ctx, old.user_id, data)
        if policy:
            pol = {**(pol or {}), **policy}
        if pol is not None:
            stored[POLICY_KEY] = pol
        new = dataclasses.replace(
            old, token_hash=self._key(fresh), last_seen_at=now,
            expires_at=lifetimes.new_expiry(now, old.absolute_expires_at, lifetimes_for(self.settings, pol)),
            data=stored,
        )
        if not await self.ctx.store.replace(old.token_hash, new, now=now, keep_old=False):
            raise InvalidToken("the session was rotated or revoked concurrently")
        self.ctx.emit("rotated", new.id, new.user_id, {})
        return issued(session_from_record(new, self.name), fresh, now, lifetime=new.expires_at - now)

    async def resume(self, session_id: str, *, now: float, claims: Mapping[str, Any] | None) -> Issued | None:
        """A new token for a live session this browser no longer holds (the admin's, when an
        impersonation stops); None if it is gone."""
        rec = await self.ctx.store.get_by_id(session_id)
        if rec is None:
            return None
        token = new_token()
        new = dataclasses.replace(rec, token_hash=self._key(token), last_seen_at=now)
        if not await self.ctx.store.replace(rec.token_hash, new, now=now, keep_old=False):
            return None
        return issued(session_from_record(new, self.name), token, now, lifetime=new.expires_at - now)

    async def revoke(self, session_id: str, *, now: float) -> bool:
        rec = await self.ctx.store.get_by_id(session_id)
        deleted = await self.ctx.store.delete(session_id) > 0
        if rec is not None:
            await self._bury(rec)
        return deleted

    async def sign_out(self, token: str | None, refresh: str | None, *, now: float) -> str | None:
        if token is None or not self._plausible(token):
            return None
        rec = await self.ctx.store.get(self._key(token))
        if rec is None:
            return None
        await self.ctx.store.delete(rec.id)
        await self._bury(rec)
        return rec.id

    async def revoke_user(self, user_id: str, *, keep: str | None, now: float) -> int:
        doomed = [r for r in await self.ctx.store.list_user(user_id) if r.id != keep]
        n = await super().revoke_user(user_id, keep=keep, now=now)
        for rec in doomed:
            await self._bury(rec)
        return n

    async def bump_user_version(self, user_id: str, *, now: float) -> int:
        doomed = await self.ctx.store.list_user(user_id)
        ver = await super().bump_user_version(user_id, now=now)
        for rec in doomed:  # as revoke_user: the deleted tokens are refused as revoked, not unknown
            await self._bury(rec)
        return ver

    async def _bury(self, rec: SessionRecord) -> None:
        """Remember a revoked token's hash until it would have expired, so it is refused as revoked."""
        await self.ctx.view.revoke(_tombstone(rec.token_hash), until=rec.expires_at)


def _tombstone(key: bytes) -> str:
    """The revocation-view key of a deleted database token: a hash of its store key (never the raw
    token, which Auth.js compatibility mode keys by), and never a session id (those have no ':')."""
    return "h:" + hashlib.sha256(key).hexdigest()[:32]  # 128 bits: fits every store's session id column

"""The ``hybrid`` strategy: a short-lived signed access token + a rotating opaque refresh token.

Per request: signature + claims + two dict lookups in the revocation view — no store read.
Device binding (``bind``) is compared at each store check: every refresh, every route that asks
for the store (``max_staleness``), and every request while the view is down (the store answers).
The refresh token is a session row (hashed at rest) that rotates on every use; presenting a
retired one after the grace window is theft (RFC 9700 §4.14.2): the whole session is revoked.

``authenticate`` is the per-request decision (parse + verify → store epoch → revocation → live
update → roll by refresh);
``refresh`` is the session's (lookup → reuse / grace → lifetimes → rotate).

Identity for revocation and reuse is the session id (``sid``) and ``jti``, never a hash of
the JWT string (signatures are malleable).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from .._session import Issued, RequestMeta, Session
from ..errors import InvalidToken, SessionExpired, SessionRevoked, TokenReuseDetected
from ..stores import SessionRecord
from ..tokens import JWSSigner, KeyRing, TokenExpired
from . import _lifetimes as lifetimes
from ._access import (
    ACCESS_TYP,
    access_claims,
    access_identity,
    access_verifier,
    session_from_claims,
    stored_data,
)
from ._base import Context, CookieSpecs, issued, looks_like_opaque_token, new_id, new_token, token_hash
from ._policy import POLICY_KEY, RouteCheck, policy_of
from ._stored import StoredSessions, add_session, check_binding, lifetimes_for, new_record, shape

__all__ = ["ACCESS_TYP", "HybridStrategy", "access_identity", "access_verifier"]  # the last three: ._access

class HybridStrategy(StoredSessions):
    """JWT cost per request, database control: instant revocation on every node."""

    name = "hybrid"

    def __init__(self, ctx: Context, cookies: CookieSpecs, ring: KeyRing, *, audience: str) -> None:
        self.ctx = ctx
        self.settings = s = ctx.settings
        self.cookies = cookies
        self.audience = audience
        self.signer = JWSSigner(ring)
        self.verifier = access_verifier(ring, audience=audience)
        self.refresh_margin = min(60.0, s.access_ttl / 5)  # refresh in the same request once less is left

    async def authenticate(self, token: str | None, refresh: str | None, *, now: float,
                           check: RouteCheck | None = None) -> Session | Issued:
        # 1. parse + verify the access token; an expired (or, with a refresh token, bad) one is refreshed
        claims: dict[str, Any] | None = None
        try:
            claims = None if token is None else self.verifier.verify(token, now=now, leeway=0)
        except TokenExpired:
            if refresh is None:
                raise SessionExpired(reason="access") from None
        except InvalidToken:
            if refresh is None:
                raise
        if claims is not None:
            sid, sub, ver = access_identity(claims)
            view = self.ctx.view
            # 2. the store epoch: an access token minted before the store lost its data is refused
            # (with a refresh token the refresh decides: the wipe took its row too)
            if claims.get("ep") != view.epoch:
                try:
                    await view.check_epoch(claims.get("ep"))
                except SessionRevoked:
                    if refresh is None:
                        raise
                    return await self.refresh(refresh, now=now, check=check)
            # The row is read when the route demands it, or when the view is down and the session's
            # binding (check.meta) must be compared at this store check anyway.
            if check is None or not (check.demands or (check.meta is not None and not view.live)):
                # 3. revocation: two dict lookups while the feed is live, the store otherwise
                if not view.live:
                    await view.check(sid, sub, ver, session_must_exist=True)
                elif view.check_live(sid, sub, ver):  # the feed is up: two dict lookups, no await
                    raise SessionRevoked()
                # 4. a live update since this token was minted: refresh to re-read the row
                if view.updated and claims.get("upd", 0.0) < view.updated.get(sid, 0.0):
                    if refresh is None:
                        raise SessionExpired("the session changed; refresh it", reason="access")
                    return await self.refresh(refresh, now=now, check=check)
            else:
                # 3'. what the route asked for: the store confirms (max_staleness), or the view bridges
                # an outage the route accepts (outage_grace)
                rec, outage = await view.checked(sid, sub, ver, rows=True, check=check, now=now)
                if outage is not None:
                    self.ctx.emit("served_from_view", sid, sub, {"outage_seconds": outage})
                elif rec is not None:
                    # 4'. the row is the truth: binding, then a new access token if the row changed
                    pol = policy_of(rec.data)
                    if pol is not None and check.meta is not None:
                        rec = await check_binding(self.ctx, rec, pol, check.meta,
                                                  lambda sid: self.revoke(sid, now=now))
                    if stored_data(claims) != rec.data:
                        return await self._issue(rec, now, None)
                elif view.updated and claims.get("upd", 0.0) < view.updated.get(sid, 0.0):
                    if refresh is None:
                        raise SessionExpired("the session changed; refresh it", reason="access")
                    return await self.refresh(refresh, now=now, check=check)
            # 5. roll: refresh in the same request once the access token is about to expire
            if refresh is None or claims["exp"] - now > self.refresh_margin:
                return self._session(claims)
        if refresh is None:
            raise InvalidToken()
        return await self.refresh(refresh, now=now, check=check)

    async def refresh(self, refresh: str, *, now: float, check: RouteCheck | None = None) -> Issued:
        """Rotate the refresh token and mint a new access token (RFC 9700 rotation + reuse detection)."""
        rec = await self._row(refresh, now)
        pol = policy_of(rec.data)
        s = self.settings if pol is None else lifetimes_for(self.settings, pol)
        if rec.retired_at is None:
            lifetimes.check_alive(rec, now, s)
            if pol is not None and check is not None and check.meta is not None:  # binding: a store check
                rec = await check_binding(self.ctx, rec, pol, check.meta,
                                          lambda sid: self.revoke(sid, now=now))
            new_refresh = new_token()
            new = dataclasses.replace(
                rec, token_hash=token_hash(new_refresh), last_seen_at=now, retired_at=None,
                expires_at=lifetimes.new_expiry(now, rec.absolute_expires_at, s),
                generation=rec.generation + 1)
            if await self.ctx.store.replace(rec.token_hash, new, now=now, keep_old=True):
                self.ctx.emit("refreshed", new.id, new.user_id, {"generation": new.generation})
                return await self._issue(new, now, new_refresh)
            rec = await self._row(refresh, now)  # lost a race with a concurrent refresh: now retired
        # Two tabs refreshed at once and the other won: an access token; the refresh cookie stays.
        live = await self.ctx.store.get_by_id(rec.id)
        if live is None:
            raise SessionRevoked()
        lifetimes.check_alive(live, now, s)
        return await self._issue(live, now, None)

    async def _row(self, refresh: str, now: float) -> SessionRecord:
        """The refresh token's row: live, or retired inside the grace window; reuse after it is theft."""
        if not looks_like_opaque_token(refresh):
            raise InvalidToken()
        rec = await self.ctx.store.get(token_hash(refresh))
        if rec is None:
            raise InvalidToken()
        if rec.retired_at is not None and now - rec.retired_at > self.settings.refresh_grace:
            # A retired token after the grace window: someone holds a copy. Revoke the whole family.
            await self.revoke(rec.id, now=now)
            self.ctx.emit("reuse_detected", rec.id, rec.user_id, {"generation": rec.generation})
            raise TokenReuseDetected(family_id=rec.id)
        return rec

    async def rotate(self, token: str | None, refresh: str | None, *, now: float,
                     data: Mapping[str, Any] | None, policy: Mapping[str, Any] | None = None) -> Issued:
        """New session id and tokens for the same sign-in (privilege change, ``Keyfob.elevate``:
        ``policy`` changes keyfob's facts about the session); the old ones die."""
        if refresh is None:
            raise InvalidToken("no session to rotate", hint="sign in first")
        old = await self._row(refresh, now)
        if old.retired_at is not None:
            raise InvalidToken("the session was refreshed concurrently", hint="retry with the new cookies")
        pol = policy_of(old.data)
        s = lifetimes_for(self.settings, pol)
        lifetimes.check_alive(old, now, s)
        stored = dict(old.data) if data is None else shape(self.ctx, old.user_id, data)
        if policy:
            pol = {**(pol or {}), **policy}
        if pol is not None:
            stored[POLICY_KEY] = pol
        fresh = new_token()
        expires = lifetimes.new_expiry(now, old.absolute_expires_at, s)
        new = dataclasses.replace(old, token_hash=token_hash(fresh), id=new_id(), last_seen_at=now,
                                  generation=0, data=stored, expires_at=expires)
        await self.ctx.store.add(new)
        await self.revoke(old.id, now=now)
        self.ctx.emit("rotated", new.id, new.user_id, {"previous": old.id})
        return await self._issue(new, now, fresh)

    async def create(self, user_id: str, data: Mapping[str, Any], meta: RequestMeta, *, now: float,
                     policy: Mapping[str, Any] | None = None) -> Issued:
        refresh = new_token()
        rec = new_record(self.ctx, token_hash(refresh), user_id, data, meta, now, policy)
        await add_session(self.ctx, rec, now, revoke=lambda sid: self.forget(sid, now))
        self.ctx.emit("created", rec.id, user_id, {})
        return await self._issue(rec, now, refresh)

    async def resume(self, session_id: str, *, now: float, claims: Mapping[str, Any] | None) -> Issued | None:
        """New tokens for a live session this browser no longer holds (the admin's, when an
        impersonation stops); None if it is gone."""
        rec = await self.ctx.store.get_by_id(session_id)
        if rec is None:
            return None
        refresh = new_token()
        new = dataclasses.replace(rec, token_hash=token_hash(refresh), last_seen_at=now)
        if not await self.ctx.store.replace(rec.token_hash, new, now=now, keep_old=False):
            return None
        return await self._issue(new, now, refresh)

    async def announce(self, session_id: str, now: float) -> None:
        """Every node's access tokens of this session minted before now refresh at their next use."""
        await self.ctx.view.mark_updated(session_id, until=self.horizon(now))

    async def reissued(self, rec: SessionRecord, now: float) -> Issued | bool:
        return await self._issue(rec, now, None)

    async def revoke(self, session_id: str, *, now: float) -> bool:
        deleted = await self.ctx.store.delete(session_id)
        await self.forget(session_id, now)
        return deleted > 0

    async def forget(self, session_id: str, now: float) -> None:
        """Refuse the access tokens of a session whose rows are gone (until the last one expires)."""
        await self.ctx.view.revoke(session_id, until=self.horizon(now))

    async def sign_out(self, token: str | None, refresh: str | None, *, now: float) -> str | None:
        sid: str | None = None
        if refresh is not None and looks_like_opaque_token(refresh):
            rec = await self.ctx.store.get(token_hash(refresh))
            sid = None if rec is None else rec.id
        if sid is None and token is not None:
            try:  # an expired access token still names its session
                claims = self.verifier.verify(token, now=now, leeway=self.settings.access_ttl)
                sid = access_identity(claims)[0]
            except InvalidToken:
                return None
        if sid is not None:
            await self.revoke(sid, now=now)
        return sid

    async def _issue(self, rec: SessionRecord, now: float, refresh: str | None) -> Issued:
        """A new access token for the session ``rec`` (and the new refresh token, if rotated)."""
        view = self.ctx.view
        ver = view.min_version.get(rec.user_id, 0) if view.live else await self.ctx.store.get_user_version(
            rec.user_id)
        claims = access_claims(rec, ver, audience=self.audience, now=now, ttl=self.settings.access_ttl,
                               updated=view.updated.get(rec.id), epoch=view.epoch)
        access = self.signer.sign(claims, typ=ACCESS_TYP)
        # The cookies outlive the access JWT (until the session's end): see authenticate.
        return issued(self._session(claims), access, now, lifetime=rec.expires_at - now, refresh=refresh)

    def _session(self, claims: Mapping[str, Any]) -> Session:
        return session_from_claims(claims, self.name, self.ctx.on_session)

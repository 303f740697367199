"""The ``hybrid`` strategy: a short-lived signed access token + a rotating opaque refresh token.

Per request: signature + claims + two dict lookups in the revocation view — no store read.
The refresh token is a session row (hashed at rest) that rotates on every use; presenting a
retired one after the grace window is theft (RFC 9700 §4.14.2): the whole session is revoked.

Identity for revocation and reuse is the session id (``sid``) and ``jti``, never a hash of
the JWT string (signatures are malleable).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from .._session import RequestMeta, Session
from ..errors import InvalidToken, SessionExpired, SessionRevoked, TokenReuseDetected
from ..stores import SessionRecord
from ..tokens import JWSSigner, JWSVerifier, KeyRing
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
from .database import add_session, session_from_record
from .jwt import RESERVED_CLAIMS

__all__ = ["ACCESS_TYP", "HybridStrategy", "access_identity", "access_verifier"]

ACCESS_TYP = "at+jwt"  # RFC 9068: an access token is never accepted where another token is expected


def access_verifier(ring: KeyRing, *, audience: str) -> JWSVerifier:
    """The verifier of hybrid access tokens: ``typ`` at+jwt, this audience, the ring's algorithms.

    Shared by the strategy and by ``keyfob.Verifier`` (other services), so both accept exactly
    the same tokens.
    """
    algs = tuple(sorted({k.alg for k in ring.keys}))
    return JWSVerifier(ring, typ=ACCESS_TYP, audience=audience, algorithms=algs)


def access_identity(claims: Mapping[str, Any]) -> tuple[str, str, int]:
    """``(sid, sub, ver)`` of verified access-token claims — what the revocation view checks.

    Raises ``InvalidToken`` unless all three are there with their types (non-empty strings, int).
    """
    sid, sub, ver = claims.get("sid"), claims.get("sub"), claims.get("ver")
    if not isinstance(sid, str) or not isinstance(sub, str) or not sid or not sub or type(ver) is not int:
        raise InvalidToken()
    return sid, sub, ver


class HybridStrategy:
    """JWT cost per request, database control: instant revocation on every node."""

    name = "hybrid"

    def __init__(self, ctx: Context, ring: KeyRing, *, audience: str) -> None:
        self.ctx = ctx
        self.s = ctx.settings
        self.ring = ring
        self.audience = audience
        self.signer = JWSSigner(ring)
        self.verifier = access_verifier(ring, audience=audience)
        # refresh the access token in the same request once less than this is left
        self.refresh_margin = min(60.0, self.s.access_ttl / 5)

    # -- tokens -----------------------------------------------------------------------------------
    def _access(self, rec: SessionRecord, ver: int, now: float) -> tuple[str, dict[str, Any]]:
        data = {k: v for k, v in rec.data.items() if k not in RESERVED_CLAIMS}
        ttl = min(self.s.access_ttl, max(1.0, rec.expires_at - now))
        claims = {
            **data,
            "sub": rec.user_id, "sid": rec.id, "ver": ver, "aud": self.audience,
            "iat": int(now), "exp": int(now + ttl), "jti": new_id(),
            "auth_time": int(rec.authenticated_at or rec.created_at), "ct": int(rec.created_at),
        }
        return self.signer.sign(claims, typ=ACCESS_TYP), claims

    def _session_from_claims(self, claims: Mapping[str, Any]) -> Session:
        data = {k: v for k, v in claims.items() if k not in RESERVED_CLAIMS}
        if self.ctx.on_session is not None:
            data = self.ctx.on_session(data, claims)
        iat = claims["iat"]
        return new_session(  # Session(id, user_id, data, created_at, expires_at, authenticated_at, ...)
            str(claims["sid"]), str(claims["sub"]), data, float(claims.get("ct", iat)),
            float(claims["exp"]), float(claims.get("auth_time", iat)), self.name, claims,
        )

    async def _version(self, user_id: str) -> int:
        if self.ctx.view.live:
            return self.ctx.view.min_version.get(user_id, 0)
        return await self.ctx.store.get_user_version(user_id)

    def _tokens(self, access: str, claims: Mapping[str, Any], refresh: str | None, rec: SessionRecord,
                now: float) -> Tokens:
        return Tokens(
            session=access, session_max_age=rec.expires_at - now,  # cookie outlives the JWT: see authenticate
            refresh=refresh, refresh_max_age=rec.expires_at - now, set_refresh=refresh is not None,
        )

    # -- lifecycle --------------------------------------------------------------------------------
    async def create(self, user_id: str, data: Mapping[str, Any], meta: RequestMeta, *,
                     cookie_salt: str, now: float) -> tuple[Session, Tokens]:
        stored = dict(data)
        if self.ctx.on_token is not None:
            stored = self.ctx.on_token(stored, user_id)
        refresh = new_token()
        absolute = life.absolute_deadline(now, self.s)
        rec = SessionRecord(
            token_hash=token_hash(refresh), id=new_id(), user_id=user_id, created_at=now, last_seen_at=now,
            expires_at=life.new_expiry(now, absolute, self.s), absolute_expires_at=absolute,
            authenticated_at=now, ip=meta.ip, user_agent=meta.user_agent, data=stored,
        )
        await add_session(self.ctx, rec, now, revoke=lambda sid: self.revoke(sid, now=now),
                          forget=lambda sid: self._forget(sid, now))
        access, claims = self._access(rec, await self._version(user_id), now)
        self.ctx.emit("created", rec.id, user_id, {})
        return self._session_from_claims(claims), self._tokens(access, claims, refresh, rec, now)

    async def authenticate(self, token: str | None, refresh: str | None, *, cookie_salt: str,
                           now: float) -> Outcome:
        claims: dict[str, Any] | None = None
        if token is not None:
            try:
                claims = self.verifier.verify(token, now=now, leeway=0)
            except SessionExpired:
                claims = None  # expired access token: fall through to a transparent refresh
            except InvalidToken:
                if refresh is None:
                    raise
                claims = None
        if claims is not None:
            sid, sub, ver = access_identity(claims)
            view = self.ctx.view
            if view.live:
                if view.check_live(sid, sub, ver):
                    raise SessionRevoked()
            else:
                await view.check(sid, sub, ver, session_must_exist=True)
            if refresh is None or claims["exp"] - now > self.refresh_margin:
                return new_outcome(self._session_from_claims(claims))
        if refresh is None:
            return Outcome(None) if token is None else Outcome(None, clear=True, error=SessionExpired(
                reason="access"))
        session, tokens = await self.refresh(refresh, cookie_salt=cookie_salt, now=now)
        return Outcome(session, tokens=tokens)

    async def refresh(self, refresh: str, *, cookie_salt: str, now: float) -> tuple[Session, Tokens]:
        """Rotate the refresh token and mint a new access token (RFC 9700 rotation + reuse detection)."""
        if not looks_like_opaque_token(refresh):
            raise InvalidToken()
        h = token_hash(refresh)
        store = self.ctx.store
        rec = await store.get(h)
        if rec is None:
            raise InvalidToken()
        if rec.retired_at is None:
            life.check_alive(rec, now, self.s)
            new_refresh = new_token()
            new = dataclasses.replace(
                rec, token_hash=token_hash(new_refresh), last_seen_at=now, retired_at=None,
                expires_at=life.new_expiry(now, rec.absolute_expires_at, self.s),
                generation=rec.generation + 1,
            )
            if await store.replace(h, new, now=now, keep_old=True):
                access, claims = self._access(new, await self._version(new.user_id), now)
                self.ctx.emit("refreshed", new.id, new.user_id, {"generation": new.generation})
                return self._session_from_claims(claims), self._tokens(access, claims, new_refresh, new, now)
            # Lost a race with a concurrent refresh of the same token: treat as inside the grace window.
            again = await store.get(h)
            if again is None:
                raise SessionRevoked()
            rec = again
        assert rec.retired_at is not None
        if now - rec.retired_at <= self.s.refresh_grace:
            # Two tabs refreshed at once: the other one won. Give this one an access token and leave
            # the refresh cookie alone (the browser already holds the winner's).
            live = await store.get_by_id(rec.id)
            if live is None:
                raise SessionRevoked()
            life.check_alive(live, now, self.s)
            access, claims = self._access(live, await self._version(live.user_id), now)
            return self._session_from_claims(claims), self._tokens(access, claims, None, live, now)
        # A retired token after the grace window: someone holds a copy. Revoke the whole family.
        await self.revoke(rec.id, now=now)
        self.ctx.emit("reuse_detected", rec.id, rec.user_id, {"generation": rec.generation})
        raise TokenReuseDetected(family_id=rec.id)

    async def revoke(self, session_id: str, *, now: float) -> bool:
        deleted = await self.ctx.store.delete(session_id)
        await self._forget(session_id, now)
        return deleted > 0

    async def _forget(self, session_id: str, now: float) -> None:
        """Refuse the access tokens of a session whose rows are gone (until the last one expires)."""
        await self.ctx.view.revoke(session_id, until=now + self.s.access_ttl + self.s.clock_skew)

    async def rotate(self, token: str, *, cookie_salt: str, now: float,
                     data: Mapping[str, Any] | None) -> tuple[Session, Tokens]:
        """New session id and tokens for the same sign-in (privilege change); the old ones die."""
        if not looks_like_opaque_token(token):
            raise InvalidToken()
        old = await self.ctx.store.get(token_hash(token))
        if old is None or old.retired_at is not None:
            raise InvalidToken()
        life.check_alive(old, now, self.s)
        refresh = new_token()
        stored = old.data if data is None else dict(data)
        if data is not None and self.ctx.on_token is not None:
            stored = self.ctx.on_token(dict(stored), old.user_id)
        new = dataclasses.replace(old, token_hash=token_hash(refresh), id=new_id(), last_seen_at=now,
                                  generation=0, data=stored,
                                  expires_at=life.new_expiry(now, old.absolute_expires_at, self.s))
        await self.ctx.store.add(new)
        await self.revoke(old.id, now=now)
        access, claims = self._access(new, await self._version(new.user_id), now)
        self.ctx.emit("rotated", new.id, new.user_id, {"previous": old.id})
        return self._session_from_claims(claims), self._tokens(access, claims, refresh, new, now)

    async def sign_out(self, token: str | None, refresh: str | None, *, cookie_salt: str,
                       now: float) -> str | None:
        sid: str | None = None
        if refresh is not None and looks_like_opaque_token(refresh):
            rec = await self.ctx.store.get(token_hash(refresh))
            if rec is not None:
                sid = rec.id
        if sid is None and token is not None:
            try:
                claims = self.verifier.verify(token, now=now, leeway=self.s.access_ttl)
                sid = claims.get("sid") if isinstance(claims.get("sid"), str) else None
            except (InvalidToken, SessionExpired):
                sid = None
        if sid is None:
            return None
        await self.revoke(sid, now=now)
        return sid

    def session_from_record(self, rec: SessionRecord) -> Session:
        return session_from_record(rec, self.name)

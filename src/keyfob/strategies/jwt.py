"""The ``jwt`` strategy: the claims travel in an encrypted JWT (Auth.js v5 format).

No store read per request. Revocation: a per-user token version (``ver``) and a list of
revoked session ids, both mirrored in memory by the revocation view; otherwise bounded by
``max_age``. Rolling: re-issued when older than ``update_age`` (Auth.js semantics).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .._session import RequestMeta, Session
from ..errors import InvalidToken, SessionExpired, SessionRevoked
from ..tokens import JWECodec
from ._base import Context, Outcome, Tokens, new_id, new_outcome, new_session
from ._lifetimes import touch_interval

__all__ = ["RESERVED_CLAIMS", "JWTStrategy"]

# Claims keyfob manages; app data cannot overwrite them.
RESERVED_CLAIMS = frozenset(
    {"sub", "iat", "exp", "nbf", "jti", "sid", "ver", "auth_time", "ct", "iss", "aud"}
)


class JWTStrategy:
    """Stateless sessions: the cookie is the session."""

    name = "jwt"

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.s = ctx.settings
        self._codecs: dict[str, JWECodec] = {}

    def codec(self, salt: str) -> JWECodec:
        """The JWE codec for a cookie name (the HKDF salt); keys derived once per salt."""
        c = self._codecs.get(salt)
        if c is None:
            c = self._codecs[salt] = JWECodec(self.s.secrets, salt)
        return c

    def _claims(self, user_id: str, data: Mapping[str, Any], *, sid: str, ver: int, auth_time: float,
                created: float) -> dict[str, Any]:
        claims: dict[str, Any] = {k: v for k, v in data.items() if k not in RESERVED_CLAIMS}
        if self.ctx.on_token is not None:
            claims = {k: v for k, v in self.ctx.on_token(claims, user_id).items() if k not in RESERVED_CLAIMS}
        claims.update(sub=user_id, sid=sid, ver=ver, auth_time=int(auth_time), ct=int(created))
        return claims

    def _session(self, claims: Mapping[str, Any]) -> Session:
        data = {k: v for k, v in claims.items() if k not in RESERVED_CLAIMS}
        if self.ctx.on_session is not None:
            data = self.ctx.on_session(data, claims)
        iat = claims.get("iat", 0)
        created = claims.get("ct", iat)
        return new_session(  # Session(id, user_id, data, created_at, expires_at, authenticated_at, ...)
            str(claims.get("sid") or claims.get("jti") or ""),
            str(claims["sub"]),
            data,
            float(created),
            float(claims["exp"]),
            float(claims.get("auth_time", created)),
            self.name,
            claims,
        )

    def _max_age(self, created: float, now: float) -> float:
        if self.s.absolute_timeout is None:
            return self.s.max_age
        return max(1.0, min(self.s.max_age, created + self.s.absolute_timeout - now))

    async def create(self, user_id: str, data: Mapping[str, Any], meta: RequestMeta, *,
                     cookie_salt: str, now: float) -> tuple[Session, Tokens]:
        ver = await self.ctx.store.get_user_version(user_id)
        claims = self._claims(user_id, data, sid=new_id(), ver=ver, auth_time=now, created=now)
        max_age = self._max_age(now, now)
        token = self.codec(cookie_salt).encode(claims, max_age=max_age, now=now)
        self.ctx.emit("created", claims["sid"], user_id, {})
        full = {**claims, "iat": int(now), "exp": int(now + max_age)}
        return self._session(full), Tokens(session=token, session_max_age=max_age)

    async def authenticate(self, token: str | None, refresh: str | None, *, cookie_salt: str,
                           now: float) -> Outcome:
        if token is None:
            return Outcome(None)
        # 1. decrypt + verify + exp/nbf/iat (raises InvalidToken / SessionExpired)
        claims = self.codec(cookie_salt).decode(token, now=now, leeway=self.s.clock_skew)
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub:
            raise InvalidToken()
        ver = claims.get("ver", 0)
        if not isinstance(ver, int) or isinstance(ver, bool):
            raise InvalidToken()
        iat = claims.get("iat", now)
        created = claims.get("ct", iat)
        if not isinstance(created, int | float) or isinstance(created, bool):
            raise InvalidToken()
        # 2. idle and absolute deadlines
        if self.s.absolute_timeout is not None and now >= created + self.s.absolute_timeout:
            raise SessionExpired(expired_at=created + self.s.absolute_timeout, reason="absolute")
        if self.s.idle_timeout is not None and now - iat >= self.s.idle_timeout:
            raise SessionExpired(expired_at=iat + self.s.idle_timeout, reason="idle")
        # 3. revocation view (two dict lookups while the feed is live)
        sid = claims.get("sid") or claims.get("jti")
        if isinstance(sid, str):
            view = self.ctx.view
            if view.live:
                if view.check_live(sid, sub, ver):
                    raise SessionRevoked()
            else:
                await view.check(sid, sub, ver, session_must_exist=False)
        # 4. roll when older than update_age (Auth.js re-issues the cookie)
        session = self._session(claims)
        if now - iat >= touch_interval(self.s):
            max_age = self._max_age(float(created), now)
            rolled = {k: v for k, v in claims.items() if k not in ("iat", "exp", "jti")}
            new = self.codec(cookie_salt).encode(rolled, max_age=max_age, now=now)
            self.ctx.emit("rolled", session.id, sub, {})
            return Outcome(self._session({**rolled, "iat": int(now), "exp": int(now + max_age)}),
                           tokens=Tokens(session=new, session_max_age=max_age))
        return new_outcome(session)

    async def refresh(self, refresh: str, *, cookie_salt: str, now: float) -> tuple[Session, Tokens]:
        raise InvalidToken("the jwt strategy has no refresh tokens", hint="use strategy='hybrid'")

    async def revoke(self, session_id: str, *, now: float) -> bool:
        # The token itself cannot be recalled: refuse its session id until it could expire anyway.
        await self.ctx.view.revoke(session_id, until=now + self.s.max_age + self.s.clock_skew)
        return True

    async def rotate(self, token: str, *, cookie_salt: str, now: float,
                     data: Mapping[str, Any] | None) -> tuple[Session, Tokens]:
        claims = self.codec(cookie_salt).decode(token, now=now, leeway=self.s.clock_skew)
        old_sid = claims.get("sid")
        sub = str(claims["sub"])
        base = {k: v for k, v in claims.items() if k not in RESERVED_CLAIMS} if data is None else data
        created = float(claims.get("ct", now))
        if isinstance(old_sid, str):
            await self.revoke(old_sid, now=now)
        ver = await self.ctx.store.get_user_version(sub)
        auth_time = float(claims.get("auth_time", created))  # a rotation is not a new sign-in
        new = self._claims(sub, base, sid=new_id(), ver=ver, auth_time=auth_time, created=created)
        max_age = self._max_age(created, now)
        out = self.codec(cookie_salt).encode(new, max_age=max_age, now=now)
        self.ctx.emit("rotated", new["sid"], sub, {})
        return self._session({**new, "iat": int(now), "exp": int(now + max_age)}), Tokens(
            session=out, session_max_age=max_age)

    async def sign_out(self, token: str | None, refresh: str | None, *, cookie_salt: str,
                       now: float) -> str | None:
        if token is None:
            return None
        try:
            claims = self.codec(cookie_salt).decode(token, now=now, leeway=self.s.clock_skew)
        except (InvalidToken, SessionExpired):
            return None
        sid = claims.get("sid")
        if isinstance(sid, str):
            exp = claims.get("exp", now + self.s.max_age)
            await self.ctx.view.revoke(sid, until=float(exp) + self.s.clock_skew)
            return sid
        return None

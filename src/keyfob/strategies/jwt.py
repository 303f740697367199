"""The ``jwt`` strategy: the claims travel in an encrypted JWT (Auth.js v5 format).

No store read per request. Revocation: a per-user token version (``ver``) and a list of
revoked session ids, both mirrored in memory by the revocation view; otherwise bounded by
``max_age``. Rolling: re-issued when older than ``update_age`` (Auth.js semantics).
``authenticate`` is the whole decision: parse + verify → lifetimes → revocation → roll.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .._session import Issued, RequestMeta, Session
from ..errors import ConfigError, InvalidToken, SessionExpired, SessionRevoked
from ..tokens import JWECodec, TokenExpired
from . import _lifetimes as lifetimes
from ._access import RESERVED_CLAIMS, session_from_claims
from ._base import Context, CookieSpecs, issued, new_id

__all__ = ["RESERVED_CLAIMS", "JWTStrategy"]

def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class JWTStrategy:
    """Stateless sessions: the cookie is the session."""

    name = "jwt"

    def __init__(self, ctx: Context, cookies: CookieSpecs) -> None:
        self.ctx = ctx
        self.settings = ctx.settings
        self.cookies = cookies
        self.codec = JWECodec(self.settings.secrets, cookies.session.name)  # the cookie name is the salt

    async def authenticate(self, token: str | None, refresh: str | None, *, now: float) -> Session | Issued:
        claims = await self._verified(token, now)
        if now - claims["iat"] < lifetimes.touch_interval(self.settings):
            return self._session(claims)
        # 5. roll when older than update_age (Auth.js re-issues the cookie)
        rolled = self._issue(claims, {k: v for k, v in claims.items() if k not in ("iat", "exp", "jti")}, now)
        self.ctx.emit("rolled", rolled.session.id, rolled.session.user_id, {})
        return rolled

    async def _verified(self, token: str | None, now: float) -> dict[str, Any]:
        s = self.settings
        if token is None:
            raise InvalidToken()
        # 1. parse + verify: decrypt, tag, exp/nbf/iat (the JOSE layer's errors, mapped here)
        try:
            claims = self.codec.decode(token, now=now, leeway=s.clock_skew)
        except TokenExpired as exc:
            raise SessionExpired(expired_at=exc.expired_at, reason="max_age") from None
        sub, sid, ver = claims.get("sub"), claims.get("sid") or claims.get("jti"), claims.get("ver", 0)
        iat = claims.get("iat", now)
        created = claims.setdefault("ct", iat)
        if not isinstance(sub, str) or not sub or type(ver) is not int:
            raise InvalidToken()
        if not _number(iat) or not _number(created):
            raise InvalidToken()
        claims["iat"] = iat
        # 2. lifetimes: absolute (from the sign-in), idle (since the last roll), max_age (exp + skew)
        lifetimes.check_deadlines(now, s, expires_at=float(claims["exp"]) + s.clock_skew, last_seen_at=iat,
                                  absolute_expires_at=lifetimes.absolute_deadline(created, s))
        # 3. revocation: two dict lookups while the feed is live, the store otherwise
        view = self.ctx.view
        if isinstance(sid, str) and not view.live:
            await view.check(sid, sub, ver, session_must_exist=False)
        elif isinstance(sid, str) and view.check_live(sid, sub, ver):  # feed up: dict lookups, no await
            raise SessionRevoked()
        return claims

    def _session(self, claims: Mapping[str, Any]) -> Session:
        return session_from_claims(claims, self.name, self.ctx.on_session)

    def _issue(self, base: Mapping[str, Any], claims: dict[str, Any], now: float) -> Issued:
        """A new cookie for ``claims``; its lifetime is max_age, capped by the absolute deadline."""
        created = float(base.get("ct", now))
        absolute = lifetimes.absolute_deadline(created, self.settings)
        max_age = self.settings.max_age if absolute is None else max(1.0, min(self.settings.max_age,
                                                                              absolute - now))
        token = self.codec.encode(claims, max_age=max_age, now=now)
        return issued(self._session({**claims, "iat": int(now), "exp": int(now + max_age)}), token, now,
                      lifetime=max_age)

    def _claims(self, user_id: str, data: Mapping[str, Any], *, ver: int, auth_time: float,
                created: float) -> dict[str, Any]:
        claims: dict[str, Any] = {k: v for k, v in data.items() if k not in RESERVED_CLAIMS}
        if self.ctx.on_token is not None:
            claims = {k: v for k, v in self.ctx.on_token(claims, user_id).items() if k not in RESERVED_CLAIMS}
        claims.update(sub=user_id, sid=new_id(), ver=ver, auth_time=int(auth_time), ct=int(created))
        return claims

    async def create(self, user_id: str, data: Mapping[str, Any], meta: RequestMeta, *, now: float) -> Issued:
        ver = await self.ctx.store.get_user_version(user_id)
        out = self._issue({"ct": now}, self._claims(user_id, data, ver=ver, auth_time=now, created=now), now)
        self.ctx.emit("created", out.session.id, user_id, {})
        return out

    async def refresh(self, refresh: str, *, now: float) -> Issued:
        raise InvalidToken("the jwt strategy has no refresh tokens", hint="use strategy='hybrid'")

    async def rotate(self, token: str | None, refresh: str | None, *, now: float,
                     data: Mapping[str, Any] | None) -> Issued:
        """A new session id (and the caller's ``data``, or the old data) for the same sign-in."""
        if token is None:
            raise InvalidToken("no session to rotate", hint="sign in first")
        return await self._reissue(await self._verified(token, now), data, now)

    async def _reissue(self, old: Mapping[str, Any], data: Mapping[str, Any] | None, now: float) -> Issued:
        await self.revoke(str(old.get("sid") or old.get("jti")), now=now)
        sub = old["sub"]
        base = {k: v for k, v in old.items() if k not in RESERVED_CLAIMS} if data is None else data
        created = old.get("ct", old.get("iat", now))
        auth_time = float(old.get("auth_time", created))  # a rotation is not a new sign-in
        ver = await self.ctx.store.get_user_version(sub)
        out = self._issue(old, self._claims(sub, base, ver=ver, auth_time=auth_time, created=created), now)
        self.ctx.emit("rotated", out.session.id, sub, {})
        return out

    async def revoke(self, session_id: str, *, now: float) -> bool:
        """Refuse this session id until its token could have expired anyway. Always True: jwt
        sessions are not stored, so an unknown id cannot be told from a live one."""
        await self.ctx.view.revoke(session_id, until=now + self.settings.max_age + self.settings.clock_skew)
        return True

    async def sign_out(self, token: str | None, refresh: str | None, *, now: float) -> str | None:
        try:
            claims = await self._verified(token, now)
        except (InvalidToken, SessionExpired, SessionRevoked):
            return None
        sid = claims.get("sid")
        if not isinstance(sid, str):
            return None
        await self.ctx.view.revoke(sid, until=float(claims["exp"]) + self.settings.clock_skew)
        return sid

    async def revoke_user(self, user_id: str, *, keep: str | None, now: float) -> int:
        """Bump the user's token version; -1 means "all of them" (jwt sessions cannot be counted)."""
        if keep is not None:
            raise ConfigError("the jwt strategy cannot keep one session while revoking the others",
                              hint="use Keyfob.revoke_others(cookies), which re-issues the current one")
        await self.bump_user_version(user_id, now=now)
        return -1

    async def revoke_others(self, current: Session, token: str | None, refresh: str | None, *,
                            now: float) -> tuple[int, Issued | None]:
        """Bump the version and re-issue the current session under it. The count is 0: jwt keeps no
        list, so how many other cookies exist is unknowable; the re-issued session says it happened."""
        await self.bump_user_version(current.user_id, now=now)
        return 0, await self._reissue(current.claims, None, now)

    async def bump_user_version(self, user_id: str, *, now: float) -> int:
        ver = await self.ctx.view.bump(user_id)
        self.ctx.emit("user_version_bumped", None, user_id, {"version": ver})
        return ver

    async def list_sessions(self, user_id: str, *, now: float) -> list[Any]:
        return []  # nothing is stored

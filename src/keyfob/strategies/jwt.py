"""The ``jwt`` strategy: the claims travel in an encrypted JWT (Auth.js v5 format).

No store read per request. Revocation: a per-user token version (``ver``) and a list of
revoked session ids, both mirrored in memory by the revocation view; otherwise bounded by
``max_age``. Rolling: re-issued when older than ``update_age`` (Auth.js semantics).
``authenticate`` is the whole decision: parse + verify → lifetimes → store epoch → revocation →
binding → live update → roll.

What jwt cannot promise, said plainly: there is no session row, so ``max_staleness=0`` confirms
the *revocation list and the user's version* in the store (not the data in the cookie); a live
update (``update_session``) travels on the revocation feed, so it reaches the next request on
every node that has one, and only this process without one.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping
from typing import Any

from .._session import Issued, RequestMeta, Session
from ..errors import ConfigError, InvalidToken, SessionExpired, SessionRevoked
from ..settings import Settings
from ..stores import SessionRecord
from ..tokens import JWECodec, TokenExpired
from . import _lifetimes as lifetimes
from ._access import RESERVED_CLAIMS, session_from_claims
from ._base import Context, CookieSpecs, issued, new_id
from ._policy import POLICY_KEY, RouteCheck, fingerprint
from ._revocation import merge_patch
from ._stored import lifetimes_for

#: The user id of the rows that keep jwt's pending updates (see ``JWTStrategy.update``).
UPDATES_OWNER = "keyfob:jwt-updates"


def _update_key(key: str) -> bytes:
    return hashlib.sha256(b"keyfob jwt update\x00" + key.encode()).digest()


@functools.lru_cache(maxsize=4096)
def _user_marker(user_id: str) -> str:
    """The revocation view's update-marker key of a user: fits the 64-character id column, never a sid."""
    return "user:" + hashlib.sha256(user_id.encode()).hexdigest()[:32]

__all__ = ["RESERVED_CLAIMS", "JWTStrategy"]

def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _apply(claims: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """``claims`` with ``patch`` merged in; the policy dict merges key by key (``auth`` → ``auth_time``)."""
    out = dict(claims)
    for k, v in patch.items():
        if k == POLICY_KEY:
            pol = {**(out.get(POLICY_KEY) or {}), **v}
            if "auth" in pol:
                out["auth_time"] = int(pol.pop("auth"))
            out[POLICY_KEY] = pol
        elif k not in RESERVED_CLAIMS:
            out[k] = v
    return out


class JWTStrategy:
    """Stateless sessions: the cookie is the session."""

    name = "jwt"

    def __init__(self, ctx: Context, cookies: CookieSpecs) -> None:
        self.ctx = ctx
        self.settings = ctx.settings
        self.cookies = cookies
        self.codec = JWECodec(self.settings.secrets, cookies.session.name)  # the cookie name is the salt

    async def authenticate(self, token: str | None, refresh: str | None, *, now: float,
                           check: RouteCheck | None = None) -> Session | Issued:
        claims = await self._verified(token, now, check)
        pol = claims.get(POLICY_KEY)
        # 5. binding (opt-in): the token carries the device it is bound to
        if pol is not None and check is not None and check.meta is not None:
            rebound = await self._bound(claims, pol, check, now)
            if rebound is not None:
                return rebound
        # 6. a live update for this session or its user since the token was minted: re-issue with it
        updated = self.ctx.view.updated
        if updated:
            seen = claims.get("upd", 0.0)
            if updated.get(str(claims.get("sid")), 0.0) > seen or updated.get(
                    _user_marker(claims["sub"]), 0.0) > seen:
                patched = await self._stored_updates(claims, now)
                if patched is not None:
                    return patched
        life = self.settings if pol is None else self._lifetimes(claims)
        if now - claims["iat"] < lifetimes.touch_interval(life) and claims.get("ep") == self.ctx.view.epoch:
            return self._session(claims)
        # 7. roll when older than update_age (Auth.js re-issues the cookie), with the updates stored
        # while this node had no feed to hear them; a token from before store epochs (no ``ep``)
        # rolls at once, so that it carries one
        stored = await self._stored_updates(claims, now)
        if stored is not None:
            return stored
        rolled = self._issue(claims, {k: v for k, v in claims.items() if k not in ("iat", "exp", "jti")}, now)
        self.ctx.emit("rolled", rolled.session.id, rolled.session.user_id, {})
        return rolled

    def _lifetimes(self, claims: Mapping[str, Any]) -> Settings:
        pol = claims.get(POLICY_KEY)
        return self.settings if pol is None else lifetimes_for(self.settings, pol)

    async def _bound(self, claims: dict[str, Any], pol: Mapping[str, Any], check: RouteCheck,
                     now: float) -> Issued | None:
        """Binding under jwt: soft → re-issued not fresh (``auth_time`` 0), strict → revoked."""
        mode, bound = self.settings.bind, pol.get("bnd")
        if mode is None or bound is None or check.meta is None or bound == fingerprint(check.meta):
            return None
        sid, sub = str(claims.get("sid")), str(claims["sub"])
        if mode == "strict":
            await self.revoke(sid, now=now)
            self.ctx.emit("binding_mismatch", sid, sub, {"mode": mode})
            self.ctx.emit("revoked", sid, sub, {"reason": "binding"})
            raise SessionRevoked("the session was used from another device or network", hint="sign in again")
        if claims.get("auth_time") == 0:
            return None
        self.ctx.emit("binding_mismatch", sid, sub, {"mode": mode})
        return self._issue(claims, {**{k: v for k, v in claims.items() if k not in ("iat", "exp", "jti")},
                                    "auth_time": 0}, now)

    async def _stored_updates(self, claims: dict[str, Any], now: float) -> Issued | None:
        pending: list[tuple[float, dict[str, Any]]] = []
        for key in ("s:" + str(claims.get("sid")), "u:" + str(claims["sub"])):
            row = await self.ctx.store.get(_update_key(key))
            if row is not None and row.expires_at > now and isinstance(row.data.get("patch"), dict):
                pending.append((float(row.data["until"]), row.data["patch"]))
        return self._patched(claims, now, pending)

    def _patched(self, claims: dict[str, Any], now: float,
                 found: list[tuple[float, dict[str, Any]]]) -> Issued | None:
        """The token re-issued with the updates (``update_session``) it has not seen yet, or None."""
        seen = claims.get("upd", 0.0)
        pending = [u for u in found if u[0] > seen]
        if not pending:
            return None
        base = {k: v for k, v in claims.items() if k not in ("iat", "exp", "jti")}
        for until, patch in sorted(pending, key=lambda u: u[0]):
            base = _apply(base, patch)
            base["upd"] = until
        out = self._issue(claims, base, now)
        self.ctx.emit("updated", out.session.id, out.session.user_id, {"keys": sorted(pending[0][1])})
        return out

    async def _verified(self, token: str | None, now: float,
                        check: RouteCheck | None = None) -> dict[str, Any]:
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
        # the session id keys the revocation view: one that is not a string could never be found there
        if not isinstance(sub, str) or not sub or not isinstance(sid, str) or type(ver) is not int:
            raise InvalidToken()
        if not _number(iat) or not _number(created):
            raise InvalidToken()
        claims["iat"] = iat
        # 2. lifetimes: absolute (from the sign-in), idle (since the last roll), max_age (exp + skew);
        # a "don't remember me" session has its own pair, an impersonation its own end
        end = float(claims["exp"]) + s.clock_skew
        if POLICY_KEY not in claims:
            lifetimes.check_deadlines(now, s, expires_at=end, last_seen_at=iat,
                                      absolute_expires_at=lifetimes.absolute_deadline(created, s))
        else:
            lifetimes.check_deadlines(now, self._lifetimes(claims), expires_at=end, last_seen_at=iat,
                                      absolute_expires_at=self._absolute(claims, created))
        # 3. the store epoch: a token minted before the store lost its data is refused (one without
        # the claim, minted before keyfob had epochs, is accepted and rolled at step 7)
        view = self.ctx.view
        epoch = claims.get("ep")
        if epoch != view.epoch and epoch is not None:
            await view.check_epoch(epoch)
        # 4. revocation: two dict lookups while the feed is live, the store otherwise (or when the route
        # asks: max_staleness; the view bridges an outage the route accepts: outage_grace)
        if check is not None and check.demands:
            _, outage = await view.checked(sid, sub, ver, rows=False, check=check, now=now)
            if outage is not None:
                self.ctx.emit("served_from_view", sid, sub, {"outage_seconds": outage})
        elif not view.live:
            await view.check(sid, sub, ver, session_must_exist=False)
        elif view.check_live(sid, sub, ver):  # feed up: dict lookups, no await
            raise SessionRevoked()
        return claims

    def _absolute(self, claims: Mapping[str, Any], created: float) -> float | None:
        absolute = lifetimes.absolute_deadline(created, self._lifetimes(claims))
        pol = claims.get(POLICY_KEY)
        until = pol.get("until") if pol is not None else None
        if isinstance(until, int | float):
            return float(until) if absolute is None else min(absolute, float(until))
        return absolute

    def _session(self, claims: Mapping[str, Any]) -> Session:
        return session_from_claims(claims, self.name, self.ctx.on_session)

    def _issue(self, base: Mapping[str, Any], claims: dict[str, Any], now: float) -> Issued:
        """A new cookie for ``claims``; its lifetime is max_age, capped by the absolute deadline."""
        created = float(base.get("ct", now))
        life = self._lifetimes(claims)
        absolute = self._absolute(claims, created)
        max_age = life.max_age if absolute is None else max(1.0, min(life.max_age, absolute - now))
        epoch = self.ctx.view.epoch  # the store epoch it is minted under (refused after a wipe)
        if epoch is not None:
            claims["ep"] = epoch
        else:
            claims.pop("ep", None)
        token = self.codec.encode(claims, max_age=max_age, now=now)
        return issued(self._session({**claims, "iat": int(now), "exp": int(now + max_age)}), token, now,
                      lifetime=max_age)

    def _claims(self, user_id: str, data: Mapping[str, Any], *, ver: int, auth_time: float,
                created: float, policy: Mapping[str, Any] | None = None) -> dict[str, Any]:
        claims: dict[str, Any] = {k: v for k, v in data.items() if k not in RESERVED_CLAIMS}
        if self.ctx.on_token is not None:
            claims = {k: v for k, v in self.ctx.on_token(claims, user_id).items() if k not in RESERVED_CLAIMS}
        claims.update(sub=user_id, sid=new_id(), ver=ver, auth_time=int(auth_time), ct=int(created))
        if policy:
            claims = _apply(claims, {POLICY_KEY: policy})
        return claims

    async def create(self, user_id: str, data: Mapping[str, Any], meta: RequestMeta, *, now: float,
                     policy: Mapping[str, Any] | None = None) -> Issued:
        ver = await self.ctx.store.get_user_version(user_id)
        claims = self._claims(user_id, data, ver=ver, auth_time=now, created=now, policy=policy)
        out = self._issue({"ct": now}, claims, now)
        self.ctx.emit("created", out.session.id, user_id, {})
        return out

    async def refresh(self, refresh: str, *, now: float, check: RouteCheck | None = None) -> Issued:
        raise InvalidToken("the jwt strategy has no refresh tokens", hint="use strategy='hybrid'")

    async def rotate(self, token: str | None, refresh: str | None, *, now: float,
                     data: Mapping[str, Any] | None, policy: Mapping[str, Any] | None = None) -> Issued:
        """A new session id (and the caller's ``data``, or the old data) for the same sign-in;
        ``policy`` changes keyfob's facts about it (``Keyfob.elevate``)."""
        if token is None:
            raise InvalidToken("no session to rotate", hint="sign in first")
        return await self._reissue(await self._verified(token, now), data, now, policy)

    async def _reissue(self, old: Mapping[str, Any], data: Mapping[str, Any] | None, now: float,
                       policy: Mapping[str, Any] | None = None) -> Issued:
        await self.revoke(str(old.get("sid") or old.get("jti")), now=now)
        sub = old["sub"]
        base = {k: v for k, v in old.items() if k not in RESERVED_CLAIMS} if data is None else data
        created = old.get("ct", old.get("iat", now))
        auth_time = float(old.get("auth_time", created))  # a rotation is not a new sign-in
        pol = dict(old.get(POLICY_KEY) or {})
        if policy:
            pol.update(policy)
        if "auth" in pol:  # under jwt the time of the last proof is the auth_time claim
            auth_time = float(pol.pop("auth"))
        ver = await self.ctx.store.get_user_version(sub)
        claims = self._claims(sub, base, ver=ver, auth_time=auth_time, created=created, policy=pol)
        if "upd" in old:
            claims["upd"] = old["upd"]
        out = self._issue(old, claims, now)
        self.ctx.emit("rotated", out.session.id, sub, {})
        return out

    async def resume(self, session_id: str, *, now: float, claims: Mapping[str, Any] | None) -> Issued | None:
        """New cookies for a session this browser no longer holds (the admin's, when an impersonation
        stops): from the claims the impersonation token kept, unless the session was revoked since."""
        if claims is None or claims.get("sid") != session_id:
            return None
        if claims.get("ep") not in (None, self.ctx.view.epoch):  # minted before a store wipe
            return None
        try:
            await self.ctx.view.check(session_id, str(claims["sub"]), int(claims.get("ver", 0)),
                                      session_must_exist=False)
        except SessionRevoked:
            return None
        return self._issue(claims, dict(claims), now)

    async def update(self, session: Session | None, session_id: str, patch: Mapping[str, Any] | None, *,
                     now: float, policy: Mapping[str, Any] | None = None) -> Issued | bool:
        """Publish the patch (every node re-issues the session's cookie at its next request); for the
        current request's own session, re-issue it now."""
        change: dict[str, Any] = dict(patch or {})
        if policy:
            change[POLICY_KEY] = dict(policy)
        marker = await self._publish("s:" + session_id, change, now)
        self.ctx.emit("updated", session_id, None if session is None else session.user_id,
                      {"keys": sorted(patch or ())})
        if session is None:
            return True
        base = _apply({k: v for k, v in session.claims.items() if k not in ("iat", "exp", "jti")}, change)
        base["upd"] = marker
        return self._issue(session.claims, base, now)

    async def update_user(self, user_id: str, patch: Mapping[str, Any], *, now: float) -> int:
        await self._publish("u:" + user_id, dict(patch), now)
        self.ctx.emit("updated", None, user_id, {"keys": sorted(patch)})
        return -1

    async def _publish(self, key: str, change: dict[str, Any], now: float) -> float:
        """Keep the patch in the store until every token it concerns has expired, and put an update
        marker in the revocation list: nodes whose feed brings the marker re-read the patch at their
        next request, nodes without a feed at their next roll. Returns the marker."""
        view = self.ctx.view
        marker_key = key[2:] if key.startswith("s:") else _user_marker(key[2:])
        until = max(now + self.settings.max_age + self.settings.clock_skew,
                    view.updated.get(marker_key, 0.0) + 0.001)
        h = _update_key(key)
        old = await self.ctx.store.get(h)
        if old is not None and isinstance(old.data.get("patch"), dict) and old.expires_at > now:
            change = merge_patch(old.data["patch"], change)
        row_id = "u:" + h.hex()[:32]
        await self.ctx.store.delete(row_id)
        await self.ctx.store.add(SessionRecord(
            token_hash=h, id=row_id, user_id=UPDATES_OWNER, created_at=now, last_seen_at=now,
            expires_at=until, data={"until": until, "patch": change}))
        await view.mark_updated(marker_key, until=until)
        return until

    async def revoke(self, session_id: str, *, now: float) -> bool:
        """Refuse this session id until its token could have expired anyway. Always True: jwt
        sessions are not stored, so an unknown id cannot be told from a live one."""
        await self.ctx.view.revoke(session_id, until=self.horizon(now))
        return True

    def horizon(self, now: float) -> float:
        """When the last cookie minted before ``now`` is dead everywhere: ``max_age`` plus the clock
        skew (a cookie is valid until its ``exp`` plus the skew). The view's entries live until then."""
        return now + self.settings.max_age + self.settings.clock_skew

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
        ver = await self.ctx.view.bump(user_id, until=self.horizon(now))
        self.ctx.emit("user_version_bumped", None, user_id, {"version": ver})
        return ver

    async def list_sessions(self, user_id: str, *, now: float) -> list[Any]:
        return []  # nothing is stored

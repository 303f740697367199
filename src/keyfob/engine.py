"""Layer 4: ``Keyfob``, the one object an app holds.

It owns the settings, the store, the revocation view and the chosen strategy, turns
tokens into cookies (``keyfob.web``), and emits lifecycle events. High-level calls return
values (``authenticate`` gives a session or None plus a reason); only a store outage raises
(``StoreUnavailable``: fail closed, answer 503).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ._clock import Clock, system_clock
from ._devices import device_label
from ._session import AuthResult, Event, EventName, Issued, RequestMeta, Session, SessionInfo, new_auth_result
from .errors import (
    ImpersonationRefused,
    InvalidToken,
    KeyfobError,
    SessionError,
    StepUpRequired,
    StoreUnavailable,
    UpdateRefused,
)
from .settings import Settings
from .stores import RevocationFeed, SessionRecord, SessionStore, open_feed, open_store
from .strategies import (
    Context,
    CookieSpecs,
    HybridStrategy,
    RevocationView,
    Strategy,
    make_strategy,
    polls_revocations,
)
from .strategies._base import present
from .strategies._policy import POLICY_KEY, RouteCheck, fingerprint, level_for, policy_of
from .tokens import KeyRing, jwks_document
from .web import SetCookie

__all__ = ["AuthResult", "Issued", "Keyfob"]

log = logging.getLogger("keyfob")
_UNSET: Any = object()
_NO_SESSION = AuthResult(None)
#: Browsers cap a cookie's Max-Age at 400 days (RFC 6265bis); keyfob never asks for more.
MAX_COOKIE_AGE = 400 * 86400
#: Roles whose sessions ``impersonate`` refuses to take over without ``allow_admin=True``.
ADMIN_ROLES = frozenset({"admin", "superuser", "owner"})


class Keyfob:
    """Session management: ``create`` at sign-in, ``authenticate`` per request, ``revoke`` at will.

    ```python
    fob = Keyfob(strategy="hybrid", secret=["new", "old"], store="sqlite:///keyfob.db")
    issued = await fob.create("user-1", data={"role": "admin"}, meta=RequestMeta(ip, ua))
    result = await fob.authenticate(cookies)   # result.session or None; result.cookies to set
    ```
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        clock: Clock | None = None,
        store: SessionStore | str | None = None,
        feed: RevocationFeed | None = _UNSET,
        on_token: Callable[[dict[str, Any], str], dict[str, Any]] | None = None,
        on_session: Callable[[dict[str, Any], Mapping[str, Any]], dict[str, Any]] | None = None,
        on_event: Callable[[Event], None] | None = None,
        on_update: Callable[[Session, Mapping[str, Any]], Mapping[str, Any] | None] | None = None,
        auto_migrate: bool = True,
        **options: Any,
    ) -> None:
        if "secret" in options:
            secret = options.pop("secret")
            options["secrets"] = (secret,) if isinstance(secret, str) else tuple(secret)
        if isinstance(store, str):
            options["store"] = store
        if settings is None:
            settings = Settings(**options)
        elif options:
            settings = settings.with_changes(**options)
        self.settings = settings
        self.clock: Clock = clock or system_clock
        self.store: SessionStore = store if store is not None and not isinstance(store, str) else open_store(
            settings.store, **({"authjs_compat": True} if settings.authjs_compat else {}))
        if feed is _UNSET:
            feed = self.store.feed() if hasattr(self.store, "feed") else open_feed(settings.store)
            if feed is None and polls_revocations(settings) and settings.store.startswith("sqlite"):
                from .stores._polling import PollingFeed  # other processes on the same file

                feed = PollingFeed(self.store, clock=self.clock)
        self.feed = feed
        self._listeners: list[Callable[[Event], None]] = [on_event] if on_event else []
        self.on_update = on_update
        self.auto_migrate = auto_migrate
        # After a wipe the view migrates the store again (under auto_migrate) so a running process
        # keeps serving: it and fresh processes then agree on the new epoch.
        self.view = RevocationView(self.store, feed, self.clock,
                                   migrate=self.store.migrate if auto_migrate else None)
        self.ctx = Context(settings=settings, store=self.store, view=self.view, clock=self.clock,
                           emit=self._emit, on_token=on_token, on_session=on_session)
        self.access_ring = self._access_ring()
        # One strategy per transport: each owns its cookie specs (and, for jwt, the codec they key).
        self._strategies: dict[bool, Strategy] = {
            secure: make_strategy(self.ctx, self.access_ring, secure=secure) for secure in (True, False)}
        self.strategy: Strategy = self._strategies[True]
        self._started = False
        self._start_lock = asyncio.Lock()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Keyfob:
        """Build from ``KEYFOB_SECRET`` (comma list, newest first), ``KEYFOB_STRATEGY``, ``KEYFOB_STORE``...
        """
        engine_kw = {k: overrides.pop(k) for k in ("clock", "store", "feed", "on_token", "on_session",
                                                   "on_event", "on_update", "auto_migrate") if k in overrides}
        if isinstance(engine_kw.get("store"), str):
            overrides["store"] = engine_kw.pop("store")
        return cls(Settings.from_env(environ, **overrides), **engine_kw)

    # -- setup --------------------------------------------------------------------------------------
    def _access_ring(self) -> KeyRing:
        info = "keyfob access token EdDSA" if self.settings.jwks else "keyfob access token HS256"
        if self.settings.jwks:
            return KeyRing.from_secrets_ed25519(self.settings.secrets, info=info)
        return KeyRing.from_secrets(self.settings.secrets, info=info)

    def _for(self, secure: bool | None) -> Strategy:
        return self._strategies[True if secure is None else secure]

    def profile(self, secure: bool | None = None) -> CookieSpecs:
        """Cookie names and attributes for a request (``secure=False`` only for http://localhost)."""
        return self._for(secure).cookies

    async def start(self) -> None:
        """Create/upgrade the schema (when ``auto_migrate``) and start the revocation view. Idempotent."""
        if self._started:
            return
        async with self._start_lock:
            if self._started:
                return
            if self.auto_migrate:
                await self.store.migrate()
            await self.view.start()
            self._started = True

    async def close(self) -> None:
        """Stop the revocation feed and close the store's connections."""
        await self.view.close()
        await self.store.close()
        self._started = False

    async def __aenter__(self) -> Keyfob:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- events ----------------------------------------------------------------------------------------
    def on_event(self, handler: Callable[[Event], None]) -> Callable[[Event], None]:
        """Subscribe to lifecycle events (usable as a decorator). Handlers must not block."""
        self._listeners.append(handler)
        return handler

    def _emit(self, name: EventName, session_id: str | None, user_id: str | None,
              detail: Mapping[str, Any]) -> None:
        event = Event(name=name, session_id=session_id, user_id=user_id, at=self.clock(), detail=detail)
        log.info("session %s", name, extra={"keyfob_event": name, "session_id": session_id,
                                            "user_id": user_id,
                                            **{f"detail_{k}": v for k, v in detail.items()}})
        for handler in self._listeners:
            try:
                handler(event)
            except Exception:
                log.exception("keyfob event handler failed for %s", name)

    # -- cookies ----------------------------------------------------------------------------------------
    def _with_cookies(self, strategy: Strategy, out: Issued, existing: Mapping[str, str]) -> Issued:
        """``out`` with the Set-Cookie values that carry its tokens."""
        specs = strategy.cookies
        max_age = min(int(out.cookie_max_age), MAX_COOKIE_AGE) if out.persistent else None
        cookies: list[SetCookie] = []
        if out.access_token is not None:
            cookies += specs.session.write(out.access_token, max_age=max_age, existing=existing)
        if out.refresh_token is not None:
            cookies += specs.refresh.write(out.refresh_token, max_age=max_age, existing=existing)
        return dataclasses.replace(out, cookies=cookies)

    def clear_cookies(self, cookies: Mapping[str, str], *, secure: bool | None = None) -> list[SetCookie]:
        """Set-Cookie values that delete keyfob's cookies (and their chunks)."""
        return self.profile(secure).clear(cookies)

    # -- the API -----------------------------------------------------------------------------------------
    async def create(
        self,
        user_id: str,
        data: Mapping[str, Any] | None = None,
        meta: RequestMeta | None = None,
        *,
        secure: bool | None = None,
        cookies: Mapping[str, str] | None = None,
        remember: bool = True,
        amr: Sequence[str] = (),
        level: int | None = None,
    ) -> Issued:
        """Sign a user in: a new session (always a new id — no fixation) and the cookies to set.

        ``cookies`` are the request's cookies: a session already there is revoked (fresh id on
        sign-in) and stale cookie chunks are cleared. ``remember=False`` ("don't remember me") gives
        browser-session cookies (no Max-Age) and the ``browser_idle_timeout`` /
        ``browser_absolute_timeout`` lifetimes. ``amr`` names the methods the user just proved
        (``["pwd"]``, ``["pwd", "otp"]``; RFC 8176); ``level`` overrides the level they imply. With
        ``bind`` set, the session is bound to ``meta``'s IP prefix and user-agent family.
        """
        if not isinstance(user_id, str) or not user_id:
            raise ValueError("user_id must be a non-empty string")
        _check_data(data)
        await self.start()
        strategy, existing = self._for(secure), cookies or {}
        if existing:
            await self._sign_out_quietly(strategy, existing)
        meta = meta or RequestMeta()
        policy = self._new_policy(meta, remember=remember, amr=amr, level=level)
        out = await strategy.create(user_id, dict(data or {}), meta, now=self.clock(), policy=policy)
        return self._with_cookies(strategy, out, existing)

    def _new_policy(self, meta: RequestMeta, *, remember: bool, amr: Sequence[str],
                    level: int | None) -> dict[str, Any] | None:
        policy: dict[str, Any] = {}
        if amr:
            if isinstance(amr, str):
                raise TypeError("amr is a list of method names, e.g. ['pwd']")
            policy["amr"] = list(dict.fromkeys(amr))
        if amr or level is not None:
            policy["lvl"] = level if level is not None else level_for(amr)
        if not remember:
            policy["rem"] = False
        if self.settings.bind is not None and (meta.ip or meta.user_agent):
            policy["bnd"] = fingerprint(meta)
        return policy or None

    async def authenticate(self, cookies: Mapping[str, str], *, secure: bool | None = None,
                           max_staleness: float | None = None, outage_grace: float = 0,
                           meta: RequestMeta | None = None) -> AuthResult:
        """The session the cookies carry, or None with a reason. Never raises for bad input.

        Raises only ``StoreUnavailable`` (fail closed → 503). ``result.cookies`` must be sent
        back (rolling renewal, transparent refresh, or clearing a dead session).

        ``max_staleness`` is how old the answer may be, in seconds: ``None`` (the default) accepts the
        revocation view (its propagation delay is measured by ``keyfob bench``); ``0`` makes the store
        confirm this request under every strategy (a payment route); ``N`` accepts the view only if
        its bound is known and within N (without a feed it is not: the store answers).
        ``outage_grace`` (seconds, default 0: fail closed) lets this route be answered from the view
        for the first N seconds of a store outage, with a ``served_from_view`` event; the database
        strategy has no view of sessions, so there it stays a 503. ``meta`` is the request's device,
        compared with the session's binding (``bind``) at each store check.
        """
        if not cookies:  # no cookie at all: nothing to read or clear
            return _NO_SESSION
        strategy = self._for(secure)
        check = None
        if max_staleness is not None or outage_grace or (meta is not None and self.settings.bind is not None):
            check = _route_check(max_staleness, outage_grace, meta)
        try:
            token, refresh = strategy.cookies.read(cookies)
        except InvalidToken as exc:
            return AuthResult(None, cookies=self.clear_cookies(cookies, secure=strategy.cookies.secure),
                              reason=exc.code, error=exc)
        if token is None and refresh is None:
            return _NO_SESSION
        return await self._authenticate(strategy, token, refresh, cookies, check)

    async def authenticate_token(self, token: str, *, max_staleness: float | None = None,
                                 outage_grace: float = 0, meta: RequestMeta | None = None) -> AuthResult:
        """Authenticate a bearer token (API clients): the session token / access token itself.
        ``max_staleness``, ``outage_grace`` and ``meta`` as for :meth:`authenticate`."""
        check = None
        if max_staleness is not None or outage_grace or (meta is not None and self.settings.bind is not None):
            check = _route_check(max_staleness, outage_grace, meta)
        return await self._authenticate(self._for(True), token, None, {}, check)

    async def _authenticate(self, strategy: Strategy, token: str | None, refresh: str | None,
                            cookies: Mapping[str, str], check: RouteCheck | None = None) -> AuthResult:
        if not self._started:
            await self.start()
        try:
            out = await strategy.authenticate(token, refresh, now=self.clock(), check=check)
        except StoreUnavailable:
            raise
        except SessionError as exc:
            cleared = self.clear_cookies(cookies, secure=strategy.cookies.secure) if cookies else []
            return AuthResult(None, cookies=cleared, reason=exc.code, error=exc)
        except KeyfobError as exc:
            return AuthResult(None, reason=exc.code)
        except Exception:
            # A bug, or input that got past the parsers: fail closed, never 500, never log the token.
            log.exception("keyfob could not check a session token; treating it as invalid")
            err = InvalidToken()
            return AuthResult(None, reason=err.code, error=err)
        if isinstance(out, Session):
            return new_auth_result(out)
        return AuthResult(out.session, cookies=self._with_cookies(strategy, out, cookies).cookies)

    async def refresh(self, refresh_token: str | None = None, *, cookies: Mapping[str, str] | None = None,
                      secure: bool | None = None, meta: RequestMeta | None = None) -> Issued:
        """Hybrid: rotate the refresh token (from the argument or the cookie) and mint a new access token.

        A refresh is a store check: with ``bind`` set, ``meta`` (the request's device) is compared
        with the session's binding. Raises ``InvalidToken`` / ``SessionExpired`` / ``SessionRevoked``
        / ``TokenReuseDetected``.
        """
        await self.start()
        strategy, existing = self._for(secure), cookies or {}
        token = refresh_token if refresh_token is not None else strategy.cookies.read(existing)[1]
        if token is None and present(strategy.cookies.refresh, existing):
            raise InvalidToken("the refresh cookie is not valid (unreadable, or over 16 KiB)",
                               hint="sign in again")
        if token is None:
            raise InvalidToken("no refresh token was sent", hint="send the refresh cookie or refresh_token")
        check = RouteCheck(meta=meta) if meta is not None and self.settings.bind is not None else None
        out = await strategy.refresh(token, now=self.clock(), check=check)
        return self._with_cookies(strategy, out, existing)

    async def rotate(self, cookies: Mapping[str, str], *, data: Mapping[str, Any] | None = None,
                     secure: bool | None = None) -> Issued:
        """New token (and id, for jwt/hybrid) for the current session; the old token stops working.

        Call on privilege change (``data`` replaces the session data) — sign-in always gets a new one.
        """
        await self.start()
        strategy = self._for(secure)
        token, refresh = strategy.cookies.read(cookies)
        out = await strategy.rotate(token, refresh, now=self.clock(), data=data)
        return self._with_cookies(strategy, out, cookies)

    async def sign_out(self, cookies: Mapping[str, str], *, secure: bool | None = None) -> list[SetCookie]:
        """Revoke the current session (if any) and return the Set-Cookie values that clear it."""
        await self.start()
        strategy = self._for(secure)
        sid = await self._sign_out_quietly(strategy, cookies)
        if sid is not None:
            self._emit("signed_out", sid, None, {})
        return self.clear_cookies(cookies, secure=strategy.cookies.secure)

    async def _sign_out_quietly(self, strategy: Strategy, cookies: Mapping[str, str]) -> str | None:
        try:
            token, refresh = strategy.cookies.read(cookies)
            if token is None and refresh is None:
                return None
            return await strategy.sign_out(token, refresh, now=self.clock())
        except SessionError:
            return None

    async def revoke(self, session_id: str) -> bool:
        """Revoke one session by its public id (immediately for database and hybrid).

        True if a session went; jwt sessions are not stored, so there it is always True.
        """
        await self.start()
        done = await self.strategy.revoke(session_id, now=self.clock())
        if done:  # an unknown or already-revoked id is not a lifecycle event
            self._emit("revoked", session_id, None, {})
        return done

    async def revoke_user(self, user_id: str, *, keep: str | None = None) -> int:
        """Log a user out everywhere (except session ``keep``). Returns how many sessions went.

        jwt sessions are not enumerable: without ``keep`` the user's token version is bumped
        (every token refused at its next use) and the count is -1 ("all").
        """
        await self.start()
        return await self.strategy.revoke_user(user_id, keep=keep, now=self.clock())

    async def revoke_others(self, cookies: Mapping[str, str], *,
                            secure: bool | None = None) -> tuple[int, Issued | None]:
        """"Sign out everywhere else": revoke every other session of the current user.

        Returns (how many other sessions went, re-issued current session or None). For jwt the
        user's version is bumped and the current session is re-issued under the new version; the
        count is then 0 (jwt keeps no list of sessions, so it cannot know how many there were) and
        the re-issued ``Issued`` is the sign that every other cookie is now refused.
        """
        strategy = self._for(secure)
        result = await self.authenticate(cookies, secure=secure)
        if result.session is None:
            raise InvalidToken("no current session", hint="sign in first")
        token, refresh = strategy.cookies.read(cookies)
        n, reissued = await strategy.revoke_others(result.session, token, refresh, now=self.clock())
        if reissued is not None:
            return n, self._with_cookies(strategy, reissued, {**cookies})
        if result.cookies:  # authenticating rolled or refreshed the session: the new cookies must reach it
            return n, Issued(session=result.session, cookies=result.cookies,
                             expires_in=max(0.0, result.session.expires_at - self.clock()))
        return n, None

    async def bump_user_version(self, user_id: str) -> int:
        """Invalidate every token of a user at its next use (password change, suspension).

        Raises the user's token version (jwt and hybrid access tokens carry it) and deletes the
        user's stored sessions (database, hybrid refresh tokens). Returns the new version.
        """
        await self.start()
        return await self.strategy.bump_user_version(user_id, now=self.clock())

    async def list_sessions(self, user_id: str, *, current: str | None = None) -> list[SessionInfo]:
        """The user's active sessions for a device list (database and hybrid; jwt keeps none)."""
        await self.start()
        out = [self._info(rec, current=rec.id == current)
               for rec in await self.strategy.list_sessions(user_id, now=self.clock())]
        out.sort(key=lambda i: i.last_seen_at, reverse=True)
        return out

    @staticmethod
    def _info(rec: SessionRecord, *, current: bool) -> SessionInfo:
        pol = policy_of(rec.data)
        imp = pol.get("imp") if pol is not None else None
        return SessionInfo(id=rec.id, user_id=rec.user_id, created_at=rec.created_at,
                           last_seen_at=rec.last_seen_at, expires_at=rec.expires_at, ip=rec.ip,
                           user_agent=rec.user_agent, device=device_label(rec.user_agent), current=current,
                           impersonated_by=imp if isinstance(imp, str) else None)

    async def get_session(self, session_id: str) -> SessionInfo | None:
        """One live stored session by public id (for admin tools and ``DELETE /auth/sessions/{id}``)."""
        await self.start()
        rec = await self.store.get_by_id(session_id)
        return None if rec is None else self._info(rec, current=False)

    async def cleanup(self, *, batch: int = 1000, progress: Callable[[int], None] | None = None) -> int:
        """Delete expired sessions in bounded batches (authentication is never blocked for long)."""
        await self.start()
        total = 0
        while True:
            n = await self.store.delete_expired(self.clock(), batch=batch)
            total += n
            if progress is not None:
                progress(n)
            if n < batch:
                return total
            await asyncio.sleep(0)

    def is_fresh(self, session: Session, max_age: float | None = None) -> bool:
        """Did the user prove who they are within ``max_age`` (default ``settings.fresh_age``)?

        Only a sign-in and :meth:`elevate` count: a refresh, a roll or a rotation never makes a
        session fresh; a soft binding mismatch makes it stale until the next ``elevate``.
        """
        limit = max_age if max_age is not None else self.settings.fresh_age
        if limit is None:
            return True
        return session.authenticated_at > 0 and self.clock() - session.authenticated_at <= limit

    def step_up(self, session: Session, *, fresh: float | None = None,
                level: int | None = None) -> StepUpRequired | None:
        """What this session lacks for a route that needs a proof within ``fresh`` seconds and/or
        assurance ``level``: a :class:`StepUpRequired` (answer 403 with its ``to_json()``), or None."""
        if fresh is not None and not self.is_fresh(session, fresh):
            return StepUpRequired(reason="fresh", max_age=fresh,
                                  authenticated_at=session.authenticated_at or None)
        if level is not None and session.level < level:
            return StepUpRequired(reason="level", level=level, current_level=session.level)
        return None

    async def elevate(self, session: Session, method: str, *, cookies: Mapping[str, str],
                      level: int | None = None, meta: RequestMeta | None = None,
                      secure: bool | None = None) -> Issued:
        """The user just proved who they are again with ``method`` (``"pwd"``, ``"otp"``, ``"webauthn"``...):
        record it and the time, raise the level, and issue a new token (ASVS 7.2.4: a new token on
        re-authentication; the old one stops working). ``cookies`` are the request's; send back
        ``issued.cookies``. With ``bind`` set, the session is re-bound to ``meta``'s device.
        """
        if not isinstance(method, str) or not method:
            raise ValueError("method must be a method name such as 'pwd', 'otp' or 'webauthn'")
        await self.start()
        strategy, now = self._for(secure), self.clock()
        amr = list(dict.fromkeys([*session.amr, method]))
        lvl = max(session.level, level if level is not None else level_for(amr))
        policy: dict[str, Any] = {"amr": amr, "lvl": lvl, "auth": now}
        if self.settings.bind is not None and meta is not None and (meta.ip or meta.user_agent):
            policy["bnd"] = fingerprint(meta)
        token, refresh = strategy.cookies.read(cookies)
        out = await strategy.rotate(token, refresh, now=now, data=None, policy=policy)
        if out.session.user_id != session.user_id:
            raise InvalidToken("the cookies carry another user's session", hint="sign in again")
        self._emit("elevated", out.session.id, session.user_id,
                   {"method": method, "level": lvl, "previous": session.id})
        return self._with_cookies(strategy, out, cookies)

    # -- live updates ------------------------------------------------------------------------------------
    async def update_session(self, session_id: str, data: Mapping[str, Any]) -> bool:
        """Merge ``data`` into one session's data, so its next request sees it — no sign-out.

        database: the next request reads the row. hybrid: the session's access tokens refresh at
        their next use on every node (the revocation feed carries the change). jwt: the next request
        re-issues the cookie with the change on every node with a feed (Redis, PostgreSQL, memory);
        a process without one sees it only if the change was made there (see docs/SESSION_POLICY.md).
        Returns False if no such live session is stored (jwt: always True, sessions are not stored).
        """
        _check_data(data)
        await self.start()
        return bool(await self.strategy.update(None, session_id, dict(data), now=self.clock()))

    async def update_user_sessions(self, user_id: str, data: Mapping[str, Any]) -> int:
        """:meth:`update_session` for every session of a user (a role change). How many (-1 under jwt:
        its sessions cannot be counted, and every one of them gets the change)."""
        _check_data(data)
        await self.start()
        return await self.strategy.update_user(user_id, dict(data), now=self.clock())

    async def update_current(self, cookies: Mapping[str, str], requested: Mapping[str, Any], *,
                             secure: bool | None = None) -> Issued:
        """The client's own update request (``POST /auth/session``, Auth.js's ``update()``): the
        ``on_update(session, requested)`` callback decides what may change (it returns the patch, or
        None to refuse); the patch is applied as :meth:`update_session` and the current cookies are
        re-issued where the strategy needs it.

        Raises ``InvalidToken`` without a session, ``UpdateRefused`` (403) when the callback refuses
        or there is no ``on_update`` callback (client updates are off by default).
        """
        if self.on_update is None:
            raise UpdateRefused("this app does not accept session updates from clients",
                                hint="the app enables them with Keyfob(on_update=callback)")
        result = await self.authenticate(cookies, secure=secure)
        if result.session is None:
            raise InvalidToken("no current session", hint="sign in first")
        patch = self.on_update(result.session, requested)
        if patch is None:
            raise UpdateRefused("the app refused this session update")
        _check_data(patch)
        strategy = self._for(secure)
        out = await strategy.update(result.session, result.session.id, dict(patch), now=self.clock())
        if isinstance(out, Issued):
            return self._with_cookies(strategy, out, cookies)
        after = await self.authenticate(cookies, secure=secure)
        session = after.session or result.session
        return Issued(session=session, cookies=[*result.cookies, *after.cookies],
                      expires_in=max(0.0, session.expires_at - self.clock()))

    # -- impersonation -----------------------------------------------------------------------------------
    async def impersonate(self, admin: Session, user_id: str, *, ttl: float = 3600,
                          data: Mapping[str, Any] | None = None, cookies: Mapping[str, str] | None = None,
                          allow_admin: bool = False, meta: RequestMeta | None = None,
                          secure: bool | None = None) -> Issued:
        """Act as ``user_id`` for at most ``ttl`` seconds: a new session for that user carrying
        ``impersonated_by`` (the admin's user id), listed in the user's devices, ended by
        :meth:`stop_impersonating`, which gives the admin their own session back. ``data`` is the
        user's session data; a target whose role is an admin role needs ``allow_admin=True``.
        The app decides who may impersonate (``require_role``); keyfob refuses nesting.
        """
        if admin.impersonated_by is not None:
            raise ImpersonationRefused("this session is already an impersonation",
                                       hint="stop it first (Keyfob.stop_impersonating)")
        if not isinstance(user_id, str) or not user_id:
            raise ValueError("user_id must be a non-empty string")
        if user_id == admin.user_id:
            raise ImpersonationRefused("an admin cannot impersonate themselves", hint="pick another user")
        _check_data(data)
        if (data or {}).get("role") in ADMIN_ROLES and not allow_admin:
            raise ImpersonationRefused(f"user {user_id} is an admin: impersonating an admin needs explicit "
                                       "permission", hint="pass allow_admin=True if your policy allows it")
        if not (isinstance(ttl, int | float) and 0 < ttl):
            raise ValueError("ttl must be a positive number of seconds")
        await self.start()
        strategy, now, existing = self._for(secure), self.clock(), cookies or {}
        policy: dict[str, Any] = {"imp": admin.user_id, "imp_sid": admin.id, "until": now + ttl,
                                  "amr": ["imp"], "lvl": 1}
        if admin.claims:  # jwt: no row to return to, so the impersonation token keeps the admin's claims
            policy["imp_claims"] = {k: v for k, v in admin.claims.items() if k not in ("iat", "exp", "jti")}
        out = await strategy.create(user_id, dict(data or {}), meta or RequestMeta(), now=now, policy=policy)
        self._emit("impersonation_started", out.session.id, user_id,
                   {"admin": admin.user_id, "admin_session": admin.id, "ttl": ttl})
        return self._with_cookies(strategy, out, existing)

    async def stop_impersonating(self, cookies: Mapping[str, str], *,
                                 secure: bool | None = None) -> Issued | None:
        """End the current impersonation and hand back the admin's own session (new cookies for it),
        or None when the admin's session has ended meanwhile (they sign in again). Raises
        ``InvalidToken`` when the current session is not an impersonation."""
        result = await self.authenticate(cookies, secure=secure)
        session = result.session
        if session is None or session.impersonated_by is None:
            raise InvalidToken("the current session is not an impersonation", hint="nothing to stop")
        strategy, now = self._for(secure), self.clock()
        await strategy.revoke(session.id, now=now)
        admin_sid = str(session.policy.get("imp_sid", ""))
        claims = session.policy.get("imp_claims")
        back = await strategy.resume(admin_sid, now=now, claims=claims if isinstance(claims, dict) else None)
        self._emit("impersonation_stopped", session.id, session.user_id,
                   {"admin": session.impersonated_by, "admin_session": admin_sid,
                    "resumed": back is not None})
        if back is None:
            return None
        out = self._with_cookies(strategy, back, cookies)
        return out

    def jwks(self) -> dict[str, Any]:
        """The public keys that verify hybrid access tokens (empty unless ``jwks=True``: HS256 is secret)."""
        return jwks_document(self.access_ring)

    def csrf_key(self) -> bytes:
        """A key for CSRF tokens, derived from the newest secret (rotates with it)."""
        return hashlib.sha256(b"keyfob csrf\x00" + self.settings.secrets[0].encode()).digest()

    @property
    def hybrid(self) -> HybridStrategy | None:
        return self.strategy if isinstance(self.strategy, HybridStrategy) else None

    def secrets_fingerprints(self) -> Sequence[str]:
        """Short, non-reversible fingerprints of the configured secrets (for `keyfob inspect`)."""
        return [hashlib.sha256(s.encode()).hexdigest()[:8] for s in self.settings.secrets]

    # -- observation (keyfob.metrics) -------------------------------------------------------------------
    def observe(self, observer: Callable[[str, str, float], None]) -> None:
        """Call ``observer(operation, result, seconds)`` after every ``authenticate``/``authenticate_token``
        (operation ``"authenticate"``) and ``refresh`` (``"refresh"``). ``result`` is ``"ok"``,
        ``"anonymous"`` (no credential) or an error ``code``: never an id or a token.

        Free until called: it replaces this instance's methods with timed wrappers, so an engine that
        is not observed runs the plain methods, with no check at all. ``keyfob.metrics.instrument``
        uses it; call it before the app serves requests.
        """
        from time import perf_counter

        plain_authenticate, plain_token = self.authenticate, self.authenticate_token
        plain_refresh = self.refresh

        # The same keyword parameters as the plain methods, passed on only when a route sets them: a
        # ``**route`` catch-all would build a dict and take the slow call path on every request.
        async def authenticate(cookies: Mapping[str, str], *, secure: bool | None = None,
                               max_staleness: float | None = None, outage_grace: float = 0,
                               meta: RequestMeta | None = None) -> AuthResult:  # fmt: skip
            start = perf_counter()
            try:
                if max_staleness is None and not outage_grace and meta is None:
                    result = await plain_authenticate(cookies, secure=secure)
                else:
                    result = await plain_authenticate(cookies, secure=secure, max_staleness=max_staleness,
                                                      outage_grace=outage_grace, meta=meta)  # fmt: skip
            except KeyfobError as exc:
                observer("authenticate", exc.code, perf_counter() - start)
                raise
            observer("authenticate", "ok" if result.session is not None else result.reason or "anonymous",
                     perf_counter() - start)
            return result

        async def authenticate_token(token: str, *, max_staleness: float | None = None,
                                     outage_grace: float = 0, meta: RequestMeta | None = None) -> AuthResult:
            start = perf_counter()
            try:
                if max_staleness is None and not outage_grace and meta is None:
                    result = await plain_token(token)
                else:
                    result = await plain_token(token, max_staleness=max_staleness, outage_grace=outage_grace,
                                               meta=meta)  # fmt: skip
            except KeyfobError as exc:
                observer("authenticate", exc.code, perf_counter() - start)
                raise
            observer("authenticate", "ok" if result.session is not None else result.reason or "anonymous",
                     perf_counter() - start)
            return result

        async def refresh(refresh_token: str | None = None, *, cookies: Mapping[str, str] | None = None,
                          secure: bool | None = None, meta: RequestMeta | None = None) -> Issued:
            start = perf_counter()
            try:
                issued = await plain_refresh(refresh_token, cookies=cookies, secure=secure, meta=meta)
            except KeyfobError as exc:
                observer("refresh", exc.code, perf_counter() - start)
                raise
            observer("refresh", "ok", perf_counter() - start)
            return issued

        self.authenticate = authenticate  # type: ignore[method-assign]
        self.authenticate_token = authenticate_token  # type: ignore[method-assign]
        self.refresh = refresh  # type: ignore[method-assign]

def _route_check(max_staleness: float | None, outage_grace: float, meta: RequestMeta | None) -> RouteCheck:
    if max_staleness is not None and (isinstance(max_staleness, bool) or max_staleness < 0):
        raise ValueError("max_staleness is seconds (0 = the store confirms), or None for the revocation view")
    if isinstance(outage_grace, bool) or outage_grace < 0:
        raise ValueError("outage_grace is seconds of store outage the route accepts (0 = fail closed)")
    return RouteCheck(max_staleness=max_staleness, outage_grace=float(outage_grace), meta=meta)


def _check_data(data: Mapping[str, Any] | None) -> None:
    if data and POLICY_KEY in data:
        raise ValueError(f"{POLICY_KEY!r} is keyfob's own key in session data; use another name")

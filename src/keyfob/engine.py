"""Layer 4: ``Keyfob``, the one object an app holds.

It owns the settings, the store, the revocation view and the chosen strategy, turns
tokens into cookies (``keyfob.web``), and emits lifecycle events. High-level calls return
values (``authenticate`` gives a session or None plus a reason); only a store outage raises
(``StoreUnavailable``: fail closed, answer 503).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ._clock import Clock, system_clock
from ._devices import device_label
from ._frozen import fast_constructor
from ._session import Event, EventName, RequestMeta, Session, SessionInfo
from .errors import ConfigError, InvalidToken, KeyfobError, SessionError, StoreUnavailable
from .settings import Settings
from .stores import RevocationFeed, SessionStore, open_feed, open_store
from .strategies import Context, HybridStrategy, Outcome, Strategy, Tokens, make_strategy
from .tokens import KeyRing, jwks_document
from .web import CookieSpec, SetCookie

__all__ = ["AuthResult", "Issued", "Keyfob"]

log = logging.getLogger("keyfob")
_UNSET: Any = object()


@dataclass(frozen=True, slots=True)
class AuthResult:
    """What ``Keyfob.authenticate`` found: a session or None, why not, and cookies to send back."""

    session: Session | None
    cookies: list[SetCookie] = field(default_factory=list)
    reason: str | None = None  # error code when a token was presented but refused
    error: SessionError | None = None

    def __bool__(self) -> bool:
        return self.session is not None


_new_result = fast_constructor(AuthResult)


@dataclass(frozen=True, slots=True)
class Issued:
    """A freshly issued (or refreshed/rotated) session and the cookies that carry it.

    ``access_token`` / ``refresh_token`` are also given raw for non-browser clients
    (Authorization: Bearer, refresh token in a request body). Never log them.
    """

    session: Session
    cookies: list[SetCookie]
    access_token: str | None = field(default=None, repr=False)
    refresh_token: str | None = field(default=None, repr=False)
    expires_in: float = 0


def _present(spec: CookieSpec, cookies: Mapping[str, str]) -> bool:
    name = spec.name
    if name in cookies or f"{name}.0" in cookies:
        return True
    prefix = name + "."
    return len(cookies) <= 64 and any(k.startswith(prefix) for k in cookies)


@dataclass(frozen=True)
class _Profile:
    secure: bool
    session: CookieSpec
    refresh: CookieSpec


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
            if feed is None and settings.strategy != "database" and settings.store.startswith("sqlite"):
                from .stores._polling import PollingFeed  # other processes on the same file

                feed = PollingFeed(self.store, clock=self.clock)
        self.feed = feed
        self._listeners: list[Callable[[Event], None]] = [on_event] if on_event else []
        self.auto_migrate = auto_migrate
        from .strategies import RevocationView

        self.view = RevocationView(self.store, feed, self.clock)
        self.ctx = Context(settings=settings, store=self.store, view=self.view, clock=self.clock,
                           emit=self._emit, on_token=on_token, on_session=on_session)
        self.access_ring = self._access_ring()
        self.strategy: Strategy = make_strategy(self.ctx, self.access_ring)
        self._profiles = {True: self._make_profile(True), False: self._make_profile(False)}
        self._started = False
        self._start_lock = asyncio.Lock()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Keyfob:
        """Build from ``KEYFOB_SECRET`` (comma list, newest first), ``KEYFOB_STRATEGY``, ``KEYFOB_STORE``...
        """
        engine_kw = {k: overrides.pop(k) for k in ("clock", "store", "feed", "on_token", "on_session",
                                                   "on_event", "auto_migrate") if k in overrides}
        if isinstance(engine_kw.get("store"), str):
            overrides["store"] = engine_kw.pop("store")
        return cls(Settings.from_env(environ, **overrides), **engine_kw)

    # -- setup --------------------------------------------------------------------------------------
    def _access_ring(self) -> KeyRing:
        info = "keyfob access token EdDSA" if self.settings.jwks else "keyfob access token HS256"
        if self.settings.jwks:
            return KeyRing.from_secrets_ed25519(self.settings.secrets, info=info)
        return KeyRing.from_secrets(self.settings.secrets, info=info)

    def _make_profile(self, secure: bool) -> _Profile:
        s = self.settings
        if s.cookie_secure is not None:
            secure = s.cookie_secure
        common: dict[str, Any] = {"secure": secure, "samesite": s.cookie_samesite, "domain": s.cookie_domain}
        return _Profile(
            secure=secure,
            session=CookieSpec(s.cookie_name, path=s.cookie_path, **common),
            refresh=CookieSpec(s.refresh_cookie_name, path=s.refresh_cookie_path, **common),
        )

    def profile(self, secure: bool | None = None) -> _Profile:
        """Cookie names and attributes for a request (``secure=False`` only for http://localhost)."""
        return self._profiles[True if secure is None else secure]

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
    def _cookies(self, prof: _Profile, tokens: Tokens, existing: Mapping[str, str]) -> list[SetCookie]:
        out: list[SetCookie] = []
        if tokens.session is not None:
            out += prof.session.write(tokens.session, max_age=int(tokens.session_max_age), existing=existing)
        if tokens.refresh is not None and tokens.set_refresh:
            out += prof.refresh.write(tokens.refresh, max_age=int(tokens.refresh_max_age), existing=existing)
        return out

    def clear_cookies(self, cookies: Mapping[str, str], *, secure: bool | None = None) -> list[SetCookie]:
        """Set-Cookie values that delete keyfob's cookies (and their chunks)."""
        prof = self.profile(secure)
        out = prof.session.clear(cookies)
        if self.settings.strategy == "hybrid":
            out += prof.refresh.clear(cookies)
        return out

    def _issued(self, prof: _Profile, session: Session, tokens: Tokens,
                existing: Mapping[str, str]) -> Issued:
        return Issued(session=session, cookies=self._cookies(prof, tokens, existing),
                      access_token=tokens.session,
                      refresh_token=tokens.refresh if tokens.set_refresh else None,
                      expires_in=max(0.0, session.expires_at - self.clock()))

    # -- the API -----------------------------------------------------------------------------------------
    async def create(
        self,
        user_id: str,
        data: Mapping[str, Any] | None = None,
        meta: RequestMeta | None = None,
        *,
        secure: bool | None = None,
        cookies: Mapping[str, str] | None = None,
    ) -> Issued:
        """Sign a user in: a new session (always a new id — no fixation) and the cookies to set.

        ``cookies`` are the request's cookies: a session already there is revoked (fresh id on
        sign-in) and stale cookie chunks are cleared.
        """
        if not isinstance(user_id, str) or not user_id:
            raise ValueError("user_id must be a non-empty string")
        await self.start()
        prof = self.profile(secure)
        existing = cookies or {}
        if existing:
            await self._sign_out_quietly(prof, existing)
        session, tokens = await self.strategy.create(user_id, dict(data or {}), meta or RequestMeta(),
                                                     cookie_salt=prof.session.name, now=self.clock())
        return self._issued(prof, session, tokens, existing)

    async def authenticate(self, cookies: Mapping[str, str], *, secure: bool | None = None) -> AuthResult:
        """The session the cookies carry, or None with a reason. Never raises for bad input.

        Raises only ``StoreUnavailable`` (fail closed → 503). ``result.cookies`` must be sent
        back (rolling renewal, transparent refresh, or clearing a dead session).
        """
        if type(cookies) is dict and not cookies:  # no cookie at all: nothing to read or clear
            return _new_result(None)
        prof = self._profiles[True if secure is None else secure]
        token = prof.session.read(cookies)
        refresh = prof.refresh.read(cookies) if self.settings.strategy == "hybrid" else None
        if token is None and refresh is None:
            if _present(prof.session, cookies) or (
                    self.settings.strategy == "hybrid" and _present(prof.refresh, cookies)):
                # a cookie is there but unreadable (bad characters, chunk gaps, oversized): invalid
                err = InvalidToken()
                return AuthResult(None, cookies=self.clear_cookies(cookies, secure=prof.secure),
                                  reason=err.code, error=err)
            return _new_result(None)
        # _authenticate inlined: this is the per-request path (one coroutine fewer per request)
        if not self._started:
            await self.start()
        try:
            out: Outcome = await self.strategy.authenticate(token, refresh, cookie_salt=prof.session.name,
                                                            now=self.clock())
        except StoreUnavailable:
            raise
        except Exception as exc:
            return self._refused(prof, cookies, exc)
        if out.tokens is None and out.session is not None:
            return _new_result(out.session)
        return self._result(prof, out, cookies)

    async def authenticate_token(self, token: str) -> AuthResult:
        """Authenticate a bearer token (API clients): the session token / access token itself."""
        return await self._authenticate(self.profile(True), token, None, {})

    async def _authenticate(self, prof: _Profile, token: str | None, refresh: str | None,
                            cookies: Mapping[str, str]) -> AuthResult:
        if not self._started:
            await self.start()
        try:
            out: Outcome = await self.strategy.authenticate(token, refresh, cookie_salt=prof.session.name,
                                                            now=self.clock())
        except StoreUnavailable:
            raise
        except Exception as exc:
            return self._refused(prof, cookies, exc)
        return self._result(prof, out, cookies)

    def _refused(self, prof: _Profile, cookies: Mapping[str, str], exc: Exception) -> AuthResult:
        """The result for a strategy that raised (called inside the ``except`` block)."""
        if isinstance(exc, SessionError):
            cleared = self.clear_cookies(cookies, secure=prof.secure) if cookies else []
            return AuthResult(None, cookies=cleared, reason=exc.code, error=exc)
        if isinstance(exc, KeyfobError):
            return AuthResult(None, reason=exc.code)
        # A bug, or input that got past the parsers: fail closed, never 500, never log the token.
        log.exception("keyfob could not check a session token; treating it as invalid")
        err = InvalidToken()
        return AuthResult(None, reason=err.code, error=err)

    def _result(self, prof: _Profile, out: Outcome, cookies: Mapping[str, str]) -> AuthResult:
        if out.session is None:
            err = out.error if isinstance(out.error, SessionError) else None
            cleared = self.clear_cookies(cookies, secure=prof.secure) if out.clear else []
            return AuthResult(None, cookies=cleared, reason=err.code if err else None, error=err)
        set_cookies = self._cookies(prof, out.tokens, cookies) if out.tokens is not None else []
        return AuthResult(out.session, cookies=set_cookies)

    async def refresh(self, refresh_token: str | None = None, *, cookies: Mapping[str, str] | None = None,
                      secure: bool | None = None) -> Issued:
        """Hybrid: rotate the refresh token (from the argument or the cookie) and mint a new access token.

        Raises ``InvalidToken`` / ``SessionExpired`` / ``SessionRevoked`` / ``TokenReuseDetected``.
        """
        await self.start()
        prof = self.profile(secure)
        existing = cookies or {}
        token = refresh_token if refresh_token is not None else prof.refresh.read(existing)
        if token is None:
            raise InvalidToken("no refresh token was sent", hint="send the refresh cookie or refresh_token")
        session, tokens = await self.strategy.refresh(token, cookie_salt=prof.session.name, now=self.clock())
        return self._issued(prof, session, tokens, existing)

    async def rotate(self, cookies: Mapping[str, str], *, data: Mapping[str, Any] | None = None,
                     secure: bool | None = None) -> Issued:
        """New token (and id, for jwt/hybrid) for the current session; the old token stops working.

        Call on privilege change (``data`` replaces the session data) — sign-in always gets a new one.
        """
        await self.start()
        prof = self.profile(secure)
        spec = prof.refresh if self.settings.strategy == "hybrid" else prof.session
        token = spec.read(cookies)
        if token is None:
            raise InvalidToken("no session to rotate", hint="sign in first")
        session, tokens = await self.strategy.rotate(token, cookie_salt=prof.session.name, now=self.clock(),
                                                     data=data)
        return self._issued(prof, session, tokens, cookies)

    async def sign_out(self, cookies: Mapping[str, str], *, secure: bool | None = None) -> list[SetCookie]:
        """Revoke the current session (if any) and return the Set-Cookie values that clear it."""
        await self.start()
        prof = self.profile(secure)
        sid = await self._sign_out_quietly(prof, cookies)
        if sid is not None:
            self._emit("signed_out", sid, None, {})
        return self.clear_cookies(cookies, secure=prof.secure)

    async def _sign_out_quietly(self, prof: _Profile, cookies: Mapping[str, str]) -> str | None:
        token = prof.session.read(cookies)
        refresh = prof.refresh.read(cookies) if self.settings.strategy == "hybrid" else None
        if token is None and refresh is None:
            return None
        try:
            return await self.strategy.sign_out(token, refresh, cookie_salt=prof.session.name,
                                                now=self.clock())
        except SessionError:
            return None

    async def revoke(self, session_id: str) -> bool:
        """Revoke one session by its public id (immediately for database and hybrid)."""
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
        now = self.clock()
        if self.settings.strategy == "jwt":
            if keep is not None:
                raise ConfigError("the jwt strategy cannot keep one session while revoking the others",
                                  hint="use Keyfob.revoke_others(cookies), which re-issues the current one")
            await self.view.bump(user_id)
            self._emit("user_version_bumped", None, user_id, {})
            return -1
        ids = await self.store.delete_user(user_id, keep=keep)
        if self.settings.strategy == "hybrid":
            for sid in ids:
                await self.view.revoke(sid, until=now + self.settings.access_ttl + self.settings.clock_skew)
        for sid in ids:
            self._emit("revoked", sid, user_id, {"reason": "revoke_user"})
        return len(ids)

    async def revoke_others(self, cookies: Mapping[str, str], *,
                            secure: bool | None = None) -> tuple[int, Issued | None]:
        """"Sign out everywhere else": revoke every other session of the current user.

        Returns (count, re-issued current session or None). For jwt the user's version is bumped
        and the current session is re-issued under the new version.
        """
        result = await self.authenticate(cookies, secure=secure)
        if result.session is None:
            raise InvalidToken("no current session", hint="sign in first")
        merged = {**cookies}
        if self.settings.strategy == "jwt":
            await self.view.bump(result.session.user_id)
            prof = self.profile(secure)
            session, tokens = await self.strategy.rotate(
                prof.session.read(cookies) or "", cookie_salt=prof.session.name, now=self.clock(), data=None)
            return -1, self._issued(prof, session, tokens, merged)
        n = await self.revoke_user(result.session.user_id, keep=result.session.id)
        return n, None

    async def bump_user_version(self, user_id: str) -> int:
        """Invalidate every token of a user at its next use (password change, suspension).

        Raises the user's token version (jwt and hybrid access tokens carry it) and deletes the
        user's stored sessions (database, hybrid refresh tokens). Returns the new version.
        """
        await self.start()
        ver = await self.view.bump(user_id)
        if self.settings.strategy != "jwt":
            now = self.clock()
            for sid in await self.store.delete_user(user_id):
                if self.settings.strategy == "hybrid":
                    until = now + self.settings.access_ttl + self.settings.clock_skew
                    await self.view.revoke(sid, until=until)
                self._emit("revoked", sid, user_id, {"reason": "user_version_bumped"})
        self._emit("user_version_bumped", None, user_id, {"version": ver})
        return ver

    async def list_sessions(self, user_id: str, *, current: str | None = None) -> list[SessionInfo]:
        """The user's active sessions for a device list (database and hybrid; jwt keeps none)."""
        await self.start()
        now = self.clock()
        out = []
        for rec in await self.store.list_user(user_id):
            if rec.retired_at is not None or rec.expires_at <= now:
                continue
            if rec.absolute_expires_at is not None and rec.absolute_expires_at <= now:
                continue
            idle = self.settings.idle_timeout
            if idle is not None and now - rec.last_seen_at >= idle:
                continue
            out.append(SessionInfo(id=rec.id, user_id=rec.user_id, created_at=rec.created_at,
                                   last_seen_at=rec.last_seen_at, expires_at=rec.expires_at, ip=rec.ip,
                                   user_agent=rec.user_agent, device=device_label(rec.user_agent),
                                   current=rec.id == current))
        out.sort(key=lambda i: i.last_seen_at, reverse=True)
        return out

    async def get_session(self, session_id: str) -> SessionInfo | None:
        """One live stored session by public id (for admin tools and ``DELETE /auth/sessions/{id}``)."""
        await self.start()
        rec = await self.store.get_by_id(session_id)
        if rec is None:
            return None
        return SessionInfo(id=rec.id, user_id=rec.user_id, created_at=rec.created_at,
                           last_seen_at=rec.last_seen_at, expires_at=rec.expires_at, ip=rec.ip,
                           user_agent=rec.user_agent, device=device_label(rec.user_agent), current=False)

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
        """Did the user prove who they are within ``max_age`` (default ``settings.fresh_age``)?"""
        limit = max_age if max_age is not None else self.settings.fresh_age
        if limit is None:
            return True
        return self.clock() - session.authenticated_at <= limit

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

        async def authenticate(cookies: Mapping[str, str], *, secure: bool | None = None) -> AuthResult:
            start = perf_counter()
            try:
                result = await plain_authenticate(cookies, secure=secure)
            except KeyfobError as exc:
                observer("authenticate", exc.code, perf_counter() - start)
                raise
            code = "ok" if result.session is not None else result.reason or "anonymous"
            observer("authenticate", code, perf_counter() - start)
            return result

        async def authenticate_token(token: str) -> AuthResult:
            start = perf_counter()
            try:
                result = await plain_token(token)
            except KeyfobError as exc:
                observer("authenticate", exc.code, perf_counter() - start)
                raise
            observer("authenticate", "ok" if result.session is not None else result.reason or "anonymous",
                     perf_counter() - start)
            return result

        async def refresh(refresh_token: str | None = None, *, cookies: Mapping[str, str] | None = None,
                          secure: bool | None = None) -> Issued:
            start = perf_counter()
            try:
                issued = await plain_refresh(refresh_token, cookies=cookies, secure=secure)
            except KeyfobError as exc:
                observer("refresh", exc.code, perf_counter() - start)
                raise
            observer("refresh", "ok", perf_counter() - start)
            return issued

        self.authenticate = authenticate  # type: ignore[method-assign]
        self.authenticate_token = authenticate_token  # type: ignore[method-assign]
        self.refresh = refresh  # type: ignore[method-assign]

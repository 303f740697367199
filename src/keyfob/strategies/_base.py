"""What every strategy offers the engine, and the plumbing they share.

A strategy is built for one transport (``secure`` or not): it owns its cookie specs and, for
jwt, the JWE codec keyed by its cookie's name, so no cookie name is threaded through calls.
Every operation raises a keyfob error to refuse (one error channel); the engine maps errors to
results. What they return is the public :class:`~keyfob.Session` (nothing to write back) or
:class:`~keyfob.Issued` (a session plus tokens the engine turns into cookies).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from .._clock import Clock
from .._session import EventName, Issued, RequestMeta, Session, new_session
from ..errors import InvalidToken
from ..settings import Settings
from ..stores import LiveRow, SessionRecord, SessionStore
from ..web import CookieSpec, SetCookie
from ._policy import POLICY_KEY, RouteCheck, app_data
from ._revocation import RevocationView

TokenCallback = Callable[[dict[str, Any], str], dict[str, Any]]
SessionCallback = Callable[[dict[str, Any], Mapping[str, Any]], dict[str, Any]]

#: Auth.js's own session cookie name (``__Secure-`` prefixed over https, never ``__Host-``).
AUTHJS_COOKIE = "authjs.session-token"
_DEFAULT_COOKIE = "keyfob.session-token"


def new_token() -> str:
    """256 bits from the OS CSPRNG, base64url without padding (43 characters)."""
    return secrets.token_urlsafe(32)


def new_id() -> str:
    """A public session handle: 128 random bits, base64url (22 characters). Not a secret."""
    return base64.urlsafe_b64encode(secrets.token_bytes(16)).rstrip(b"=").decode()


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


_TOKEN_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def looks_like_opaque_token(token: str) -> bool:
    """Cheap shape check before any store read (garbage never costs a lookup)."""
    return len(token) == 43 and _TOKEN_CHARS.issuperset(token)


@dataclass(frozen=True)
class CookieSpecs:
    """The cookies of one transport: the session (or access) cookie and, if used, the refresh cookie."""

    secure: bool
    session: CookieSpec
    refresh: CookieSpec  # named for every strategy; read and written only when ``uses_refresh``
    uses_refresh: bool = False

    def read(self, cookies: Mapping[str, str]) -> tuple[str | None, str | None]:
        """(session or access token, refresh token) from the request's cookies.

        Raises InvalidToken when a cookie is there but unreadable (bad characters, chunk gaps, over
        16 KiB) and nothing else is: that is a refused credential, not "no cookie".
        """
        token = self.session.read(cookies)
        refresh = self.refresh.read(cookies) if self.uses_refresh else None
        if token is None and refresh is None and (
                present(self.session, cookies) or (self.uses_refresh and present(self.refresh, cookies))):
            raise InvalidToken("the session cookie is not valid (unreadable, or over 16 KiB)",
                               hint="sign in again")
        return token, refresh

    def clear(self, cookies: Mapping[str, str]) -> list[SetCookie]:
        """Set-Cookie values that delete these cookies (and their chunks)."""
        out = self.session.clear(cookies)
        return out + self.refresh.clear(cookies) if self.uses_refresh else out


def present(spec: CookieSpec, cookies: Mapping[str, str]) -> bool:
    """Whether any shape of this cookie (plain or chunked) was sent, readable or not."""
    name = spec.name
    if name in cookies or f"{name}.0" in cookies:
        return True
    prefix = name + "."
    return len(cookies) <= 64 and any(k.startswith(prefix) for k in cookies)


def cookie_specs(s: Settings, secure: bool, *, uses_refresh: bool) -> CookieSpecs:
    """Cookie names and attributes. ``cookie_secure`` overrides the transport.

    In Auth.js compatibility mode the session cookie has Auth.js's own name —
    ``authjs.session-token`` over http, ``__Secure-authjs.session-token`` over https — so a keyfob
    service shares a Next.js app's cookie (``__Host-`` is never added: Auth.js does not use it).
    """
    if s.cookie_secure is not None:
        secure = s.cookie_secure
    common: dict[str, Any] = {"secure": secure, "samesite": s.cookie_samesite, "domain": s.cookie_domain}
    name, prefix = s.cookie_name, "auto"
    if s.authjs_compat:
        name = AUTHJS_COOKIE if name == _DEFAULT_COOKIE else name
        prefix = "__Secure-" if secure else ""
    return CookieSpecs(
        secure=secure,
        session=CookieSpec(name, path=s.cookie_path, prefix=prefix, **common),
        refresh=CookieSpec(s.refresh_cookie_name, path=s.refresh_cookie_path, **common),
        uses_refresh=uses_refresh,
    )


def issued(session: Session, token: str, now: float, *, lifetime: float,
           refresh: str | None = None) -> Issued:
    """An :class:`Issued` without cookies yet: the engine writes them from the tokens.
    A "don't remember me" session gets browser-session cookies (``persistent=False``)."""
    return Issued(session=session, cookies=[], access_token=token, refresh_token=refresh,
                  expires_in=max(0.0, session.expires_at - now), cookie_max_age=lifetime,
                  persistent=session.remembered)


def session_from_record(rec: SessionRecord | LiveRow, strategy: str,
                        expires_at: float | None = None) -> Session:
    auth = rec.authenticated_at
    data = rec.data
    if POLICY_KEY in data:  # keyfob's own facts about the session ride in the row's data
        pol = data[POLICY_KEY]
        auth = pol.get("auth", auth if auth is not None else rec.created_at)
        return new_session(rec.id, rec.user_id, app_data(data), rec.created_at,
                           rec.expires_at if expires_at is None else expires_at,
                           float(auth), strategy, {}, pol)
    return new_session(rec.id, rec.user_id, data, rec.created_at,
                       rec.expires_at if expires_at is None else expires_at,
                       auth if auth is not None else rec.created_at, strategy)


@dataclass
class Context:
    """Everything a strategy shares with the engine."""

    settings: Settings
    store: SessionStore
    view: RevocationView
    clock: Clock
    emit: Callable[[EventName, str | None, str | None, Mapping[str, Any]], None]
    on_token: TokenCallback | None = None
    on_session: SessionCallback | None = None
    extras: dict[str, Any] = field(default_factory=dict)


class Strategy(Protocol):
    """The operations the engine delegates. Each raises a keyfob error to refuse."""

    name: str
    cookies: CookieSpecs

    async def create(self, user_id: str, data: Mapping[str, Any], meta: RequestMeta, *,
                     now: float, policy: Mapping[str, Any] | None = None) -> Issued:
        """A new session; ``policy`` is keyfob's own facts about it (see ``strategies._policy``)."""
        ...

    async def authenticate(self, token: str | None, refresh: str | None, *, now: float,
                           check: RouteCheck | None = None) -> Session | Issued:
        """The session (``Issued`` when cookies must be rewritten), or raise a ``SessionError``.
        ``check`` is what the route demands beyond the default (None on the default route)."""
        ...

    async def refresh(self, refresh: str, *, now: float, check: RouteCheck | None = None) -> Issued: ...

    async def update(self, session: Session | None, session_id: str, patch: Mapping[str, Any] | None, *,
                     now: float, policy: Mapping[str, Any] | None = None) -> Issued | bool:
        """Change a session's app data (``patch`` merged in) and/or its policy, so its next request
        sees it. With the current ``session`` given, may hand back re-issued tokens (``Issued``)."""
        ...

    async def update_user(self, user_id: str, patch: Mapping[str, Any], *, now: float) -> int:
        """``update`` for every session of a user; how many (-1 = all, uncountable: jwt)."""
        ...

    async def rotate(self, token: str | None, refresh: str | None, *, now: float,
                     data: Mapping[str, Any] | None, policy: Mapping[str, Any] | None = None) -> Issued: ...

    async def resume(self, session_id: str, *, now: float, claims: Mapping[str, Any] | None) -> Issued | None:
        """New tokens for an existing live session this browser no longer holds (None if it is gone);
        ``claims`` are its token claims where there is no row (jwt)."""
        ...

    async def sign_out(self, token: str | None, refresh: str | None, *, now: float) -> str | None: ...

    async def revoke(self, session_id: str, *, now: float) -> bool: ...

    async def revoke_user(self, user_id: str, *, keep: str | None, now: float) -> int: ...

    async def revoke_others(self, current: Session, token: str | None, refresh: str | None, *,
                            now: float) -> tuple[int, Issued | None]: ...

    async def bump_user_version(self, user_id: str, *, now: float) -> int: ...

    async def list_sessions(self, user_id: str, *, now: float) -> list[SessionRecord]: ...

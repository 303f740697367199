"""What every strategy offers the engine, and the shared plumbing."""

from __future__ import annotations

import base64
import hashlib
import logging
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from .._clock import Clock
from .._frozen import fast_constructor
from .._session import Event, EventName, RequestMeta, Session
from ..settings import Settings
from ..stores import SessionStore
from ._revocation import RevocationView

log = logging.getLogger("keyfob")

TokenCallback = Callable[[dict[str, Any], str], dict[str, Any]]
SessionCallback = Callable[[dict[str, Any], Mapping[str, Any]], dict[str, Any]]
EventSink = Callable[[Event], None]


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


@dataclass(frozen=True, slots=True)
class Tokens:
    """Raw tokens to hand to the client (the engine turns them into cookies)."""

    session: str | None = None
    session_max_age: float = 0
    refresh: str | None = None
    refresh_max_age: float = 0
    # False: leave the refresh cookie as it is (e.g. a concurrent refresh inside the grace window).
    set_refresh: bool = True


@dataclass(frozen=True, slots=True)
class Outcome:
    """What authenticate/refresh decided: a session (or None) and what to send back."""

    session: Session | None
    tokens: Tokens | None = None  # set when the cookies must be (re)written
    clear: bool = False  # True: clear the session cookies (invalid / expired / revoked)
    error: Exception | None = None


# Per-request constructors (frozen dataclasses built without per-field object.__setattr__).
new_session = fast_constructor(Session)
new_outcome = fast_constructor(Outcome)


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
    """The operations the engine delegates. Raise keyfob errors; the engine maps them."""

    name: str

    async def create(self, user_id: str, data: Mapping[str, Any], meta: RequestMeta, *,
                     cookie_salt: str, now: float) -> tuple[Session, Tokens]: ...

    async def authenticate(self, token: str | None, refresh: str | None, *, cookie_salt: str,
                           now: float) -> Outcome: ...

    async def refresh(self, refresh: str, *, cookie_salt: str, now: float) -> tuple[Session, Tokens]: ...

    async def revoke(self, session_id: str, *, now: float) -> bool: ...

    async def rotate(self, token: str, *, cookie_salt: str, now: float,
                     data: Mapping[str, Any] | None) -> tuple[Session, Tokens]: ...

    async def sign_out(self, token: str | None, refresh: str | None, *, cookie_salt: str,
                       now: float) -> str | None: ...

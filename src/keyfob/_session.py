"""The public value types that cross the engine boundary: Session, RequestMeta, SessionInfo, Event."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from ._clock import iso, to_datetime
from ._frozen import fast_constructor

if TYPE_CHECKING:  # annotations only: the value types sit below every layer that uses them
    from .errors import SessionError
    from .web import SetCookie

__all__ = ["AuthResult", "Event", "EventName", "Issued", "RequestMeta", "Session", "SessionInfo"]



class _NoPolicy(Mapping[str, Any]):
    """The empty, immutable policy of a plain sign-in (a shared default: no per-session allocation)."""

    __slots__ = ()

    def __getitem__(self, key: str) -> Any:
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0

    def __hash__(self) -> int:
        return 0

    def __repr__(self) -> str:
        return "{}"


_NO_POLICY: Mapping[str, Any] = _NoPolicy()


#: The longest User-Agent keyfob keeps (longer ones are cut): one rule for every adapter and caller.
MAX_USER_AGENT = 512


@dataclass(frozen=True, slots=True)
class RequestMeta:
    """What keyfob records about the device that signs in (shown in the device list).

    ``user_agent`` is cut to :data:`MAX_USER_AGENT` characters, and an empty one is None."""

    ip: str | None = None
    user_agent: str | None = None

    def __post_init__(self) -> None:
        ua = self.user_agent
        if ua is not None and (not ua or len(ua) > MAX_USER_AGENT):
            object.__setattr__(self, "user_agent", ua[:MAX_USER_AGENT] or None)


@dataclass(frozen=True, slots=True)
class Session:
    """An authenticated session, as the app sees it.

    ``id`` is the public session handle (safe to log and show); ``data`` is what the app
    stored at sign-in (after the ``on_session`` callback); times are epoch seconds.
    ``authenticated_at`` is when the user last proved who they are (sign-in or ``Keyfob.elevate``;
    a refresh, a roll or a rotation never moves it). ``policy`` holds keyfob's own per-session
    facts (methods, level, impersonation, remember-me); read them through the properties.
    """

    id: str
    user_id: str
    data: Mapping[str, Any]
    created_at: float
    expires_at: float
    authenticated_at: float
    strategy: str
    claims: Mapping[str, Any] = field(default_factory=dict, repr=False)
    policy: Mapping[str, Any] = field(default=_NO_POLICY, repr=False)

    @property
    def amr(self) -> tuple[str, ...]:
        """The authentication methods used (RFC 8176 names: ``pwd``, ``otp``, ``webauthn``...)."""
        return tuple(self.policy.get("amr", ()))

    @property
    def level(self) -> int:
        """The assurance level: 1 = one factor, 2 = two factor kinds (or a phishing-resistant key)."""
        lvl = self.policy.get("lvl", 1)
        return lvl if type(lvl) is int else 1

    @property
    def impersonated_by(self) -> str | None:
        """The admin's user id when this is an impersonation session (``Keyfob.impersonate``)."""
        imp = self.policy.get("imp")
        return imp if isinstance(imp, str) else None

    @property
    def remembered(self) -> bool:
        """False for a "don't remember me" sign-in (a browser-session cookie, shorter lifetimes)."""
        return self.policy.get("rem", True) is not False

    @property
    def expires(self) -> datetime:
        """Expiry as an aware UTC datetime."""
        return to_datetime(self.expires_at)

    @property
    def role(self) -> str | None:
        """``data["role"]`` when it is a string (used by ``require_role``)."""
        r = self.data.get("role")
        return r if isinstance(r, str) else None

    def to_authjs(self) -> dict[str, Any]:
        """The Auth.js ``GET /api/auth/session`` shape: ``{"user": {...}, "expires": ISO-8601}``."""
        user = {k: v for k, v in self.data.items() if k in ("name", "email", "image", "role")}
        user["id"] = self.user_id
        return {"user": user, "expires": iso(self.expires_at)}


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """One row of a user's device list."""

    id: str
    user_id: str
    created_at: float
    last_seen_at: float
    expires_at: float
    ip: str | None
    user_agent: str | None
    device: str
    current: bool
    impersonated_by: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "impersonated_by": self.impersonated_by,
            "id": self.id,
            "created": iso(self.created_at),
            "last_seen": iso(self.last_seen_at),
            "expires": iso(self.expires_at),
            "ip": self.ip,
            "user_agent": self.user_agent,
            "device": self.device,
            "current": self.current,
        }


EventName = Literal[
    "created", "rolled", "rotated", "refreshed", "revoked", "expired", "reuse_detected",
    "user_version_bumped", "signed_out", "updated", "elevated", "impersonation_started",
    "impersonation_stopped", "binding_mismatch", "served_from_view",
]


@dataclass(frozen=True, slots=True)
class Event:
    """A session lifecycle event. Carries public ids only, never a token."""

    name: EventName
    session_id: str | None
    user_id: str | None
    at: float
    detail: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AuthResult:
    """What ``Keyfob.authenticate`` found: a session or None, why not, and cookies to send back."""

    session: Session | None
    cookies: list[SetCookie] = field(default_factory=list)
    reason: str | None = None  # error code when a token was presented but refused
    error: SessionError | None = None

    def __bool__(self) -> bool:
        return self.session is not None


@dataclass(frozen=True, slots=True)
class Issued:
    """A freshly issued (or refreshed/rotated/rolled) session and the cookies that carry it.

    ``access_token`` / ``refresh_token`` are also given raw for non-browser clients
    (Authorization: Bearer, refresh token in a request body). Never log them. ``refresh_token``
    None means: leave the refresh cookie as it is. ``cookie_max_age`` is the cookies' lifetime;
    ``persistent`` False makes them browser-session cookies (no Max-Age: a "don't remember me" sign-in).
    """

    session: Session
    cookies: list[SetCookie]
    access_token: str | None = field(default=None, repr=False)
    refresh_token: str | None = field(default=None, repr=False)
    expires_in: float = 0
    cookie_max_age: float = 0
    persistent: bool = True


# The per-request builds (every strategy's authenticate makes one Session and the engine one AuthResult):
# see keyfob._frozen for the shortcut and its measured worth.
new_session = fast_constructor(Session)
new_auth_result = fast_constructor(AuthResult)

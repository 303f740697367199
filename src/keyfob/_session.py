"""The public value types that cross the engine boundary: Session, RequestMeta, SessionInfo, Event."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from ._clock import iso, to_datetime

__all__ = ["Event", "EventName", "RequestMeta", "Session", "SessionInfo"]


@dataclass(frozen=True, slots=True)
class RequestMeta:
    """What keyfob records about the device that signs in (shown in the device list)."""

    ip: str | None = None
    user_agent: str | None = None


@dataclass(frozen=True, slots=True)
class Session:
    """An authenticated session, as the app sees it.

    ``id`` is the public session handle (safe to log and show); ``data`` is what the app
    stored at sign-in (after the ``on_session`` callback); times are epoch seconds.
    """

    id: str
    user_id: str
    data: Mapping[str, Any]
    created_at: float
    expires_at: float
    authenticated_at: float
    strategy: str
    claims: Mapping[str, Any] = field(default_factory=dict, repr=False)

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

    def to_json(self) -> dict[str, Any]:
        return {
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
    "user_version_bumped", "signed_out",
]


@dataclass(frozen=True, slots=True)
class Event:
    """A session lifecycle event. Carries public ids only, never a token."""

    name: EventName
    session_id: str | None
    user_id: str | None
    at: float
    detail: Mapping[str, Any] = field(default_factory=dict)

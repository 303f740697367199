"""Every error keyfob raises, in one tree.

```
KeyfobError
├── ConfigError            raised at startup; says which setting is wrong and what to set
├── SessionError           → 401; Keyfob.authenticate() turns these into None + a reason
│   ├── InvalidToken       malformed, tampered, wrong key, wrong algorithm: one class, no detail
│   ├── SessionExpired     .expired_at, .reason ("idle" | "absolute" | "max_age")
│   ├── SessionRevoked
│   └── TokenReuseDetected .family_id  (a retired refresh token was presented again)
├── CSRFError              → 403
├── StepUpRequired         → 403; .reason ("fresh" | "level"), .max_age, .level: re-authenticate, then retry
├── ImpersonationRefused   → 403; nested impersonation, or an admin target without the explicit permission
├── UpdateRefused          → 403; the on_update callback refused a client's session update
└── StoreUnavailable       → 503; .__cause__ is the driver error (fail closed)
```

Each class carries a machine-readable ``code`` and the HTTP ``status_code`` an
integration should answer with, plus a ``hint`` that says what to do next.
No message ever contains a token or a secret.
"""

from __future__ import annotations

from typing import ClassVar, Literal

__all__ = [
    "CSRFError",
    "ConfigError",
    "ImpersonationRefused",
    "InvalidToken",
    "KeyfobError",
    "SessionError",
    "SessionExpired",
    "SessionRevoked",
    "StepUpRequired",
    "StoreUnavailable",
    "TokenReuseDetected",
    "UpdateRefused",
]


class KeyfobError(Exception):
    """Base class of every keyfob error."""

    code: ClassVar[str] = "keyfob_error"
    status_code: ClassVar[int] = 500
    default_hint: ClassVar[str] = ""

    def __init__(self, message: str | None = None, *, hint: str | None = None) -> None:
        self.message = message or self.__class__.__doc__ or self.code
        self.hint = hint if hint is not None else self.default_hint
        super().__init__(self.message)

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message} ({self.hint})"
        return self.message


class ConfigError(KeyfobError, ValueError):
    """keyfob is configured wrongly; the message names the setting and the fix."""

    code = "config_error"
    status_code = 500


class SessionError(KeyfobError):
    """The request carries no usable session (answer 401)."""

    code = "session_error"
    status_code = 401
    default_hint = "sign in again"


class InvalidToken(SessionError):
    """The session token is malformed, tampered with, or made with another key."""

    code = "invalid_token"


class SessionExpired(SessionError):
    """The session has expired."""

    code = "session_expired"

    def __init__(
        self,
        message: str | None = None,
        *,
        expired_at: float | None = None,
        reason: Literal["idle", "absolute", "max_age", "access"] = "max_age",
        hint: str | None = None,
    ) -> None:
        self.expired_at = expired_at
        self.reason = reason
        super().__init__(message or f"the session expired ({reason} timeout)", hint=hint)


class SessionRevoked(SessionError):
    """The session was revoked (signed out, logged out everywhere, or its user's tokens were reset)."""

    code = "session_revoked"


class TokenReuseDetected(SessionError):
    """A retired refresh token was presented again; the whole session has been revoked."""

    code = "token_reuse_detected"

    def __init__(self, message: str | None = None, *, family_id: str | None = None) -> None:
        self.family_id = family_id
        super().__init__(
            message or "a refresh token was used twice; the session was revoked as a precaution",
            hint="sign in again; if this was not you, change your password",
        )


class CSRFError(KeyfobError):
    """The request failed the CSRF check (answer 403)."""

    code = "csrf_failed"
    status_code = 403
    default_hint = "send the token from GET /auth/csrf in the X-CSRF-Token header or csrf_token form field"


class StepUpRequired(KeyfobError):
    """The route needs a more recent or a stronger proof of identity than this session has (answer 403).

    ``reason`` is ``"fresh"`` (the last proof is older than ``max_age`` seconds) or ``"level"`` (the
    session's assurance level is below ``level``). :meth:`to_json` is the machine-readable body.
    """

    code = "step_up_required"
    status_code = 403

    def __init__(self, *, reason: Literal["fresh", "level"], max_age: float | None = None,
                 level: int | None = None, current_level: int = 1,
                 authenticated_at: float | None = None) -> None:
        self.reason = reason
        self.max_age = max_age
        self.level = level
        self.current_level = current_level
        self.authenticated_at = authenticated_at
        if reason == "fresh":
            message = f"this action needs a sign-in from the last {max_age:g} seconds"
            hint = "re-enter your password (or another method), then retry: Keyfob.elevate(session, method)"
        else:
            message = f"this action needs assurance level {level} (the session has {current_level})"
            hint = "verify with a second factor (otp, webauthn), then retry: Keyfob.elevate(session, method)"
        super().__init__(message, hint=hint)

    def to_json(self) -> dict[str, object]:
        """``{"error": "step_up_required", "reason": ..., "max_age"|"level": ..., "hint": ...}``."""
        out: dict[str, object] = {"error": self.code, "reason": self.reason, "hint": self.hint}
        if self.reason == "fresh":
            out["max_age"] = self.max_age
            out["authenticated_at"] = self.authenticated_at
        else:
            out["level"] = self.level
            out["current_level"] = self.current_level
        return out


class ImpersonationRefused(KeyfobError):
    """This impersonation is not allowed (answer 403)."""

    code = "impersonation_refused"
    status_code = 403
    default_hint = "stop the current impersonation first, or pass allow_admin=True to impersonate an admin"


class UpdateRefused(KeyfobError):
    """The server's ``on_update`` callback refused this session update (answer 403)."""

    code = "update_refused"
    status_code = 403
    default_hint = "change only what the app lets clients change (its on_update callback decides)"


class StoreUnavailable(KeyfobError):
    """The session store could not be reached; keyfob fails closed (answer 503)."""

    code = "store_unavailable"
    status_code = 503
    default_hint = "check that the store server is running and KEYFOB_STORE points at it; retry shortly"

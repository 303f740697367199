"""Settings: one frozen dataclass, validated at construction, read from the environment in one place."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any, Literal

from .errors import ConfigError

__all__ = ["STRATEGIES", "Settings"]

Strategy = Literal["jwt", "database", "hybrid"]
STRATEGIES: tuple[str, ...] = ("jwt", "database", "hybrid")
DEFAULT_STORE = "sqlite:///keyfob.db"
MIN_SECRET_BYTES = 32
_FIX_SECRET = "run `keyfob secret` and put the output in KEYFOB_SECRET (or pass secret=...)"


def _seconds(name: str, value: object, *, allow_none: bool = False) -> float | None:
    if value is None:
        if allow_none:
            return None
        raise ConfigError(f"{name} must be set", hint=f"give {name} in seconds or as a timedelta")
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"{name} must be a number of seconds or a timedelta, got {type(value).__name__}")
    if value <= 0:
        raise ConfigError(f"{name} must be positive, got {value}")
    return float(value)


def secret_strength(secret: str) -> int:
    """Rough entropy estimate in bytes: decoded length for base64/hex secrets, else UTF-8 length / 2."""
    s = secret.strip()
    import base64
    import binascii

    if len(s) >= 2 and all(c in "0123456789abcdefABCDEF" for c in s) and len(s) % 2 == 0:
        return len(s) // 2
    try:
        raw = base64.b64decode(s + "=" * (-len(s) % 4), altchars=b"-_" if ("-" in s or "_" in s) else None,
                               validate=True)
        if len(raw) >= 16:
            return len(raw)
    except (binascii.Error, ValueError):
        pass
    return len(s.encode()) // 2


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Everything keyfob can be told. Durations are seconds (floats); ``timedelta`` is accepted too.

    ``secrets`` is ordered **newest first**: the first one signs/encrypts, all of them verify
    (the opposite order to itsdangerous, the same as Auth.js's ``AUTH_SECRET`` list).
    """

    strategy: Strategy = "database"
    secrets: tuple[str, ...] = field(default=(), repr=False)
    store: str = DEFAULT_STORE
    max_age: float = 30 * 86400
    update_age: float = 86400
    idle_timeout: float | None = None
    absolute_timeout: float | None = None
    access_ttl: float = 600
    refresh_grace: float = 10
    fresh_age: float | None = None
    # A "don't remember me" sign-in (remember=False): a browser-session cookie with its own lifetimes.
    browser_idle_timeout: float | None = 12 * 3600
    browser_absolute_timeout: float | None = 86400
    # Device binding: None (off), "soft" (a changed device makes the session not fresh) or "strict" (revoked).
    bind: Literal["soft", "strict"] | None = None
    clock_skew: float = 30
    max_sessions_per_user: int | None = None
    session_limit_policy: Literal["evict", "refuse"] = "evict"
    cookie_name: str = "keyfob.session-token"
    refresh_cookie_name: str = "keyfob.refresh-token"
    cookie_secure: bool | None = None  # None = auto: Secure except on plain-http localhost
    cookie_samesite: Literal["lax", "strict", "none"] = "lax"
    cookie_domain: str | None = None
    cookie_path: str = "/"
    # The hybrid refresh cookie is sent on every path by default so the middleware can refresh
    # in the same request; set it to e.g. "/auth/refresh" to scope it (then clients call POST /auth/refresh).
    refresh_cookie_path: str = "/"
    auth_path: str = "/auth"
    allowed_origins: tuple[str, ...] = ()
    csrf: bool = True
    jwks: bool = False
    authjs_compat: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        if self.strategy not in STRATEGIES:
            raise ConfigError(
                f"unknown strategy {self.strategy!r}",
                hint=f"use one of {', '.join(STRATEGIES)} (KEYFOB_STRATEGY)",
            )
        secrets = self.secrets
        if isinstance(secrets, str):
            secrets = tuple(s.strip() for s in secrets.split(",") if s.strip())
        secrets = tuple(secrets)
        if not secrets:
            raise ConfigError("no secret is configured", hint=_FIX_SECRET)
        for i, s in enumerate(secrets):
            if not isinstance(s, str) or secret_strength(s) < MIN_SECRET_BYTES:
                which = "the secret" if len(secrets) == 1 else f"secret #{i + 1} (newest first)"
                raise ConfigError(
                    f"{which} is too short: keyfob needs at least {MIN_SECRET_BYTES} bytes of entropy",
                    hint=_FIX_SECRET,
                )
        set_(self, "secrets", secrets)
        for name in ("max_age", "update_age", "access_ttl", "refresh_grace", "clock_skew"):
            set_(self, name, _seconds(name, getattr(self, name)))
        for name in ("idle_timeout", "absolute_timeout", "fresh_age", "browser_idle_timeout",
                     "browser_absolute_timeout"):
            set_(self, name, _seconds(name, getattr(self, name), allow_none=True))
        if self.update_age > self.max_age:
            raise ConfigError(
                f"update_age ({self.update_age:g}s) is longer than max_age ({self.max_age:g}s)",
                hint="update_age is how often a session is extended; make it shorter than max_age",
            )
        if self.access_ttl > self.max_age:
            raise ConfigError("access_ttl is longer than max_age", hint="access tokens should live minutes")
        if self.bind not in (None, "soft", "strict"):
            raise ConfigError(f"bind must be None, 'soft' or 'strict', got {self.bind!r}",
                              hint="'soft' asks for re-authentication on a new device, 'strict' signs it out")
        if self.max_sessions_per_user is not None and self.max_sessions_per_user < 1:
            raise ConfigError("max_sessions_per_user must be at least 1 (or None for no limit)")
        if self.session_limit_policy not in ("evict", "refuse"):
            raise ConfigError("session_limit_policy must be 'evict' or 'refuse'")
        if self.cookie_samesite not in ("lax", "strict", "none"):
            raise ConfigError("cookie_samesite must be 'lax', 'strict' or 'none'")
        if self.cookie_samesite == "none" and self.cookie_secure is False:
            raise ConfigError("SameSite=None cookies must be Secure", hint="set cookie_secure=True")
        if not self.refresh_cookie_path.startswith("/"):
            raise ConfigError("refresh_cookie_path must start with '/'")
        if not self.auth_path.startswith("/"):
            raise ConfigError("auth_path must start with '/'")
        if not self.store or "://" not in self.store:
            raise ConfigError(
                f"store {self.store!r} is not a URL",
                hint="use e.g. sqlite:///keyfob.db, postgresql://host/db, redis://localhost:6379/0, memory://",
            )
        set_(self, "allowed_origins", tuple(o.rstrip("/") for o in self.allowed_origins))

    @property
    def browser_session(self) -> Settings:
        """The lifetimes of a "don't remember me" session: ``browser_idle_timeout`` and
        ``browser_absolute_timeout`` in place of ``idle_timeout`` and ``absolute_timeout``."""
        cached: Settings | None = self.__dict__.get("_browser_session")
        if cached is None:
            absolute = self.browser_absolute_timeout
            max_age = self.max_age if absolute is None else min(self.max_age, absolute)
            cached = replace(self, idle_timeout=self.browser_idle_timeout, absolute_timeout=absolute,
                             max_age=max_age, update_age=min(self.update_age, max_age),
                             access_ttl=min(self.access_ttl, max_age))
            object.__setattr__(self, "_browser_session", cached)
        return cached

    def with_changes(self, **changes: Any) -> Settings:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read ``KEYFOB_SECRET`` (comma list, newest first), ``KEYFOB_STRATEGY``, ``KEYFOB_STORE`` and
        the optional ``KEYFOB_MAX_AGE``, ``KEYFOB_UPDATE_AGE``, ``KEYFOB_IDLE_TIMEOUT``,
        ``KEYFOB_ABSOLUTE_TIMEOUT``, ``KEYFOB_ACCESS_TTL``, ``KEYFOB_COOKIE_NAME``,
        ``KEYFOB_ALLOWED_ORIGINS`` (comma list). Keyword overrides win over the environment.
        """
        env = os.environ if environ is None else environ
        kw: dict[str, Any] = {}
        if env.get("KEYFOB_SECRET"):
            kw["secrets"] = tuple(s.strip() for s in env["KEYFOB_SECRET"].split(",") if s.strip())
        elif env.get("AUTH_SECRET"):
            kw["secrets"] = tuple(s.strip() for s in env["AUTH_SECRET"].split(",") if s.strip())
        if env.get("KEYFOB_STRATEGY"):
            kw["strategy"] = env["KEYFOB_STRATEGY"].strip()
        if env.get("KEYFOB_STORE"):
            kw["store"] = env["KEYFOB_STORE"].strip()
        for name in ("max_age", "update_age", "idle_timeout", "absolute_timeout", "access_ttl"):
            raw = env.get(f"KEYFOB_{name.upper()}")
            if raw:
                try:
                    kw[name] = float(raw)
                except ValueError:
                    raise ConfigError(f"KEYFOB_{name.upper()}={raw!r} is not a number of seconds") from None
        if env.get("KEYFOB_COOKIE_NAME"):
            kw["cookie_name"] = env["KEYFOB_COOKIE_NAME"].strip()
        if env.get("KEYFOB_ALLOWED_ORIGINS"):
            kw["allowed_origins"] = tuple(o.strip() for o in env["KEYFOB_ALLOWED_ORIGINS"].split(",") if o)
        kw.update(overrides)
        if "secret" in kw:
            kw["secrets"] = _as_secrets(kw.pop("secret"))
        return cls(**kw)


def _as_secrets(secret: str | Sequence[str]) -> tuple[str, ...]:
    if isinstance(secret, str):
        return (secret,)
    return tuple(secret)

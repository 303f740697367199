"""Layer 3: where "valid / expired / revoked" is decided. One module per strategy.

| strategy | cookie | per-request check |
|---|---|---|
| ``jwt`` | encrypted JWT (Auth.js v5 JWE) | decrypt + claims + revocation view |
| ``database`` | opaque 256-bit token | one store lookup by SHA-256(token) |
| ``hybrid`` | short access JWS + rotating refresh token | signature + revocation view |
"""

from __future__ import annotations

from ..settings import Settings
from ..tokens import KeyRing
from ._base import Context, CookieSpecs, Strategy, cookie_specs, new_id, new_token, token_hash
from ._revocation import RevocationView
from ._stored import SessionLimitReached
from .database import DatabaseStrategy
from .hybrid import HybridStrategy
from .jwt import JWTStrategy

__all__ = [
    "Context",
    "CookieSpecs",
    "DatabaseStrategy",
    "HybridStrategy",
    "JWTStrategy",
    "RevocationView",
    "SessionLimitReached",
    "Strategy",
    "cookie_specs",
    "make_strategy",
    "new_id",
    "new_token",
    "polls_revocations",
    "token_hash",
]


def make_strategy(ctx: Context, access_ring: KeyRing, *, secure: bool) -> Strategy:
    """The strategy ``ctx.settings.strategy`` names, for one transport (its cookies and codec)."""
    name = ctx.settings.strategy
    cookies = cookie_specs(ctx.settings, secure, uses_refresh=name == "hybrid")
    if name == "jwt":
        return JWTStrategy(ctx, cookies)
    if name == "database":
        return DatabaseStrategy(ctx, cookies)
    audience = str(ctx.settings.extra.get("audience", "keyfob"))
    return HybridStrategy(ctx, cookies, access_ring, audience=audience)


def polls_revocations(settings: Settings) -> bool:
    """Whether this strategy needs other processes' revocations when the store has no feed (SQLite):
    jwt and hybrid answer from the revocation view; database reads the store on every request."""
    return settings.strategy != "database"

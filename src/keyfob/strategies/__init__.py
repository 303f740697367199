"""Layer 3: where "valid / expired / revoked" is decided. One module per strategy.

| strategy | cookie | per-request check |
|---|---|---|
| ``jwt`` | encrypted JWT (Auth.js v5 JWE) | decrypt + claims + revocation view |
| ``database`` | opaque 256-bit token | one store lookup by SHA-256(token) |
| ``hybrid`` | short access JWS + rotating refresh token | signature + revocation view |
"""

from __future__ import annotations

from ..tokens import KeyRing
from ._base import Context, Outcome, Strategy, Tokens, new_id, new_token, token_hash
from ._revocation import RevocationView
from .database import DatabaseStrategy, SessionLimitReached
from .hybrid import HybridStrategy
from .jwt import JWTStrategy

__all__ = [
    "Context",
    "DatabaseStrategy",
    "HybridStrategy",
    "JWTStrategy",
    "Outcome",
    "RevocationView",
    "SessionLimitReached",
    "Strategy",
    "Tokens",
    "make_strategy",
    "new_id",
    "new_token",
    "token_hash",
]


def make_strategy(ctx: Context, access_ring: KeyRing) -> Strategy:
    """The strategy ``ctx.settings.strategy`` names."""
    name = ctx.settings.strategy
    if name == "jwt":
        return JWTStrategy(ctx)
    if name == "database":
        return DatabaseStrategy(ctx)
    return HybridStrategy(ctx, access_ring, audience=str(ctx.settings.extra.get("audience", "keyfob")))

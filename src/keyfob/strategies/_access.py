"""Hybrid access tokens: what they claim, who verifies them, and the session they carry.

Shared by the hybrid strategy and ``keyfob.Verifier`` (other services), so both accept exactly
the same tokens; ``session_from_claims`` is also the jwt strategy's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from .._session import Session, new_session
from ..errors import InvalidToken
from ..stores import SessionRecord
from ..tokens import JWSVerifier, KeyRing
from ._base import new_id
from ._policy import POLICY_KEY, app_data, policy_of

__all__ = ["ACCESS_TYP", "RESERVED_CLAIMS", "access_claims", "access_identity", "access_verifier",
           "session_from_claims"]

# Claims keyfob manages; app data cannot overwrite them.
RESERVED_CLAIMS = frozenset(
    {"sub", "iat", "exp", "nbf", "jti", "sid", "ver", "auth_time", "ct", "iss", "aud", "_kf", "upd", "ep"}
)

ACCESS_TYP = "at+jwt"  # RFC 9068: an access token is never accepted where another token is expected


def access_verifier(ring: KeyRing, *, audience: str) -> JWSVerifier:
    """The verifier of hybrid access tokens: ``typ`` at+jwt, this audience, the ring's algorithms.

    Shared by the strategy and by ``keyfob.Verifier`` (other services), so both accept exactly
    the same tokens.
    """
    algs = tuple(sorted({k.alg for k in ring.keys}))
    return JWSVerifier(ring, typ=ACCESS_TYP, audience=audience, algorithms=algs)


def access_identity(claims: Mapping[str, Any]) -> tuple[str, str, int]:
    """``(sid, sub, ver)`` of verified access-token claims — what the revocation view checks.

    Raises ``InvalidToken`` unless all three are there with their types (non-empty strings, int).
    """
    sid, sub, ver = claims.get("sid"), claims.get("sub"), claims.get("ver")
    if not isinstance(sid, str) or not isinstance(sub, str) or not sid or not sub or type(ver) is not int:
        raise InvalidToken()
    return sid, sub, ver


def access_claims(rec: SessionRecord, ver: int, *, audience: str, now: float, ttl: float,
                  updated: float | None = None, epoch: str | None = None) -> dict[str, Any]:
    """The claims of a new access token for session ``rec``: app data, then keyfob's own claims
    (its policy under ``_kf``; ``upd``, the last update marker the token reflects; ``ep``, the store
    epoch it was minted under)."""
    ttl = min(ttl, max(1.0, rec.expires_at - now))
    auth = rec.authenticated_at or rec.created_at
    pol = policy_of(rec.data)
    claims = {
        **{k: v for k, v in rec.data.items() if k not in RESERVED_CLAIMS},
        "sub": rec.user_id, "sid": rec.id, "ver": ver, "aud": audience,
        "iat": int(now), "exp": int(now + ttl), "jti": new_id(),
        "auth_time": int(pol.get("auth", auth) if pol is not None else auth), "ct": int(rec.created_at),
    }
    if pol is not None:
        claims[POLICY_KEY] = pol
    if updated is not None:
        claims["upd"] = updated
    if epoch is not None:
        claims["ep"] = epoch
    return claims


def session_from_claims(claims: Mapping[str, Any], strategy: str,
                        on_session: Callable[[dict[str, Any], Mapping[str, Any]], dict[str, Any]] | None
                        ) -> Session:
    """The app's view of verified token claims (``on_session`` shapes the data)."""
    data = {k: v for k, v in claims.items() if k not in RESERVED_CLAIMS}
    if on_session is not None:
        data = on_session(data, claims)
    created = claims.get("ct", claims.get("iat", 0))
    pol = claims.get(POLICY_KEY)
    if isinstance(pol, dict):
        return new_session(str(claims.get("sid") or claims.get("jti") or ""), str(claims["sub"]), data,
                           float(created), float(claims["exp"]), float(claims.get("auth_time", created)),
                           strategy, claims, pol)
    return new_session(str(claims.get("sid") or claims.get("jti") or ""), str(claims["sub"]), data,
                       float(created), float(claims["exp"]), float(claims.get("auth_time", created)),
                       strategy, claims)


def stored_data(claims: Mapping[str, Any]) -> dict[str, Any]:
    """What a row would hold for these claims: the app data, and the policy under ``_kf``."""
    data = {k: v for k, v in claims.items() if k not in RESERVED_CLAIMS}
    pol = claims.get(POLICY_KEY)
    if isinstance(pol, dict):
        data[POLICY_KEY] = pol
    return data


__all__ += ["app_data", "stored_data"]

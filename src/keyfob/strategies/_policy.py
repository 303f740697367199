"""Session policy the strategies share: what a route asks for, and what a session carries beyond app data.

A route's demands travel as one :class:`RouteCheck` (``None`` on the default route, so the default
costs one ``is None``): how stale an answer may be (``max_staleness``), how long a store outage may
be bridged from the revocation view (``outage_grace``), and the request's device (``meta``, for
binding).

A session's own policy is one small dict under :data:`POLICY_KEY` — in the stored row's data
(database, hybrid) and in the token's claims (jwt, hybrid access tokens) — and absent for a plain
sign-in, so a default session costs one dict lookup:

| key | meaning |
|---|---|
| ``amr`` | authentication methods used (RFC 8176 names: ``pwd``, ``otp``, ``hwk``, ``webauthn``, ...) |
| ``lvl`` | assurance level (1 = one factor, 2 = two factor kinds or a phishing-resistant key) |
| ``auth`` | when the user last proved who they are, if not the row's column (elevate, soft binding) |
| ``rem`` | ``False`` for a browser-session ("don't remember me") sign-in; absent = remembered |
| ``imp`` / ``imp_sid`` | the impersonating admin's user id and session id |
| ``bnd`` | the device fingerprint the session is bound to (IP prefix + user-agent family) |
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .._devices import device_label
from .._session import RequestMeta

__all__ = ["POLICY_KEY", "RouteCheck", "app_data", "fingerprint", "level_for", "policy_of"]

POLICY_KEY = "_kf"

# RFC 8176 method names by factor kind; a phishing-resistant authenticator counts as two.
_KNOWLEDGE = frozenset({"pwd", "pin", "kba"})
_POSSESSION = frozenset({"otp", "sms", "tel", "email", "swk", "hwk", "mfa_app", "totp"})
_INHERENCE = frozenset({"fpt", "face", "iris", "retina", "vbm", "bio"})
_STRONG = frozenset({"webauthn", "passkey", "hwk", "sc"})


def level_for(amr: Iterable[str]) -> int:
    """The assurance level of a set of methods: the number of factor kinds used, at most 2
    (Kratos's aal1/aal2); a phishing-resistant key (``webauthn``, ``hwk``) alone is 2."""
    methods = set(amr)
    if methods & _STRONG:
        return 2
    kinds = sum(1 for kind in (_KNOWLEDGE, _POSSESSION, _INHERENCE) if methods & kind)
    return max(1, min(2, kinds))


def fingerprint(meta: RequestMeta) -> str:
    """What binding compares: the IP prefix (/24 IPv4, /48 IPv6) and the user-agent family
    (browser and platform, no version: updates do not break the binding)."""
    prefix = ""
    if meta.ip:
        try:
            addr = ipaddress.ip_address(meta.ip)
            bits = 24 if addr.version == 4 else 48
            prefix = str(ipaddress.ip_network(f"{addr}/{bits}", strict=False))
        except ValueError:
            prefix = meta.ip[:64]
    return f"{prefix}|{device_label(meta.user_agent)}"


def policy_of(data: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The session's policy dict, or None for a plain sign-in (the common case: one lookup)."""
    pol = data.get(POLICY_KEY)
    return pol if isinstance(pol, dict) else None


def app_data(data: Mapping[str, Any]) -> Mapping[str, Any]:
    """The app's own data: ``data`` without the policy key (no copy when there is none)."""
    if POLICY_KEY not in data:
        return data
    return {k: v for k, v in data.items() if k != POLICY_KEY}


@dataclass(frozen=True, slots=True)
class RouteCheck:
    """What one route demands of this request's answer (see ``Keyfob.authenticate``)."""

    max_staleness: float | None = None
    outage_grace: float = 0.0
    meta: RequestMeta | None = None

    @property
    def demands(self) -> bool:
        """Whether the route asks more of the revocation check than the default (staleness or grace).
        A check that only carries ``meta`` (binding) keeps the default, view-only, revocation check."""
        return self.max_staleness is not None or self.outage_grace > 0

    @property
    def confirm(self) -> bool:
        """Whether the store must confirm this request (``max_staleness=0``)."""
        return self.max_staleness is not None and self.max_staleness <= 0

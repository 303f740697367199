"""Layer 5: cookies and CSRF, pure code shared by the engine and every integration.

* :class:`CookieSpec` — one logical cookie: ``__Host-``/``__Secure-`` prefix, attributes,
  Auth.js-compatible chunking (``name.0``, ``name.1``, ...) with reassembly and stale-chunk clearing.
* :class:`SetCookie` — one validated ``Set-Cookie`` header.
* :func:`parse_cookie_header`, :func:`is_local_development` — request-side helpers that never raise.
* :class:`CSRFProtect` — Origin/Referer check plus a signed, session-bound double-submit token.
* :class:`RequestCore`, :class:`RequestView`, :class:`RequestState` — the request lifecycle that
  every framework adapter drives (credential, CSRF, cookies out, cache headers, errors).
"""

from __future__ import annotations

from ._cookies import (
    CHUNK_SIZE,
    MAX_CHUNKS,
    MAX_VALUE_SIZE,
    CookieSpec,
    SetCookie,
    is_local_development,
    parse_cookie_header,
)
from ._request import (
    CSRF_COOKIE,
    CSRF_FIELD,
    CSRF_HEADER,
    MAX_FORM_BYTES,
    Forbidden,
    RequestCore,
    RequestState,
    RequestView,
    error_parts,
    not_signed_in,
)
from ._routes import AuthRoutes
from .csrf import SAFE_METHODS, CSRFProtect

__all__ = [
    "CHUNK_SIZE",
    "CSRF_COOKIE",
    "CSRF_FIELD",
    "CSRF_HEADER",
    "MAX_CHUNKS",
    "MAX_FORM_BYTES",
    "MAX_VALUE_SIZE",
    "SAFE_METHODS",
    "AuthRoutes",
    "CSRFProtect",
    "CookieSpec",
    "Forbidden",
    "RequestCore",
    "RequestState",
    "RequestView",
    "SetCookie",
    "error_parts",
    "is_local_development",
    "not_signed_in",
    "parse_cookie_header",
]

for _name in ("AuthRoutes", "CSRFProtect", "CookieSpec", "Forbidden", "RequestCore", "RequestState",
              "RequestView", "SetCookie", "error_parts", "is_local_development", "not_signed_in",
              "parse_cookie_header"):
    globals()[_name].__module__ = __name__
del _name

"""Layer 1: JOSE on ``cryptography``. Pure, sync, no I/O.

Auth.js-compatible session cookies (JWE ``dir`` + ``A256CBC-HS512``, key from HKDF; v4's
``A256GCM`` read-only), JWS access tokens (HS256, EdDSA), key rings with ``kid``, JWKS.

Functions mirror Auth.js's ``encode``/``decode``; they raise ``InvalidToken`` /
``TokenExpired`` (a ``SessionExpired``) instead of returning None. For the per-request path hold a
``JWECodec`` (or ``JWSVerifier``): keys are derived once, not per call.
"""

from __future__ import annotations

from ._authjs import (
    AUTHJS_V4_COOKIE,
    JWECodec,
    decode,
    decode_v4,
    derive_v4_key,
    derive_v5_key,
    encode,
)
from ._jws import JWSKey, JWSSigner, JWSVerifier, jwks_document
from ._keyring import KeyRing
from ._parse import MAX_TOKEN_BYTES, TokenExpired

__all__ = [
    "AUTHJS_V4_COOKIE",
    "MAX_TOKEN_BYTES",
    "JWECodec",
    "JWSKey",
    "JWSSigner",
    "JWSVerifier",
    "KeyRing",
    "TokenExpired",
    "decode",
    "decode_v4",
    "derive_v4_key",
    "derive_v5_key",
    "encode",
    "jwks_document",
]

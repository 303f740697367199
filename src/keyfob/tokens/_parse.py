"""Strict parsing shared by the JWE and JWS code: base64url, JSON, time claims.

Every check here fails with one opaque :class:`~keyfob.errors.InvalidToken` (never saying
which check failed, never quoting the token) except an expired ``exp``, which raises the JOSE
layer's own :class:`TokenExpired` so callers can tell "sign in again" from "tampered". The
strategies map it to a session-level :class:`~keyfob.errors.SessionExpired` with the reason they
decide; it subclasses ``SessionExpired`` only so that callers of ``keyfob.tokens.decode`` who
catch that keep working.

The checks, in the order a token meets them:

1. the whole token is at most :data:`MAX_TOKEN_BYTES` — before anything else;
2. each segment is canonical unpadded base64url (RFC 7515 §2): ``[A-Za-z0-9_-]``, no ``=``,
   no whitespace, length ``% 4 != 1``, unused trailing bits zero;
3. JSON is UTF-8, one top-level object, no duplicate keys, no ``NaN``/``Infinity``, nesting
   at most ``max_depth`` deep (checked before ``json`` sees it);
4. ``exp``/``nbf``/``iat`` are finite JSON numbers within ±2**53; ``exp`` is required.
"""

from __future__ import annotations

import binascii
import hashlib
import json
import math
import re
from collections.abc import Mapping
from typing import Any, NoReturn

from ..errors import InvalidToken, SessionExpired

__all__ = [
    "MAX_DEPTH",
    "MAX_HEADER_CHARS",
    "MAX_TOKEN_BYTES",
    "TokenExpired",
    "b64url_decode",
    "b64url_decode_strict",
    "b64url_encode",
    "check_claims",
    "fail",
    "jwk_thumbprint",
    "parse_json_object",
]

#: Longest token accepted, in bytes (= characters: tokens are ASCII). Checked before any crypto.
MAX_TOKEN_BYTES = 16 * 1024
#: Longest protected header accepted, in base64url characters (Auth.js's is about 150).
MAX_HEADER_CHARS = 1024
#: Deepest JSON nesting accepted in a header or payload (the top-level object counts as 1).
MAX_DEPTH = 8

_MAX_NUMERIC_DATE = 2.0**53
_INVALID = "the token is not valid"

# Final characters allowed for a segment of length % 4 == 2 (4 unused bits) or == 3 (2 unused
# bits): the unused bits must be zero, otherwise two encodings would decode to the same bytes.
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_LAST_OK = {
    2: frozenset(c for i, c in enumerate(_ALPHABET) if i & 0b1111 == 0),
    3: frozenset(c for i, c in enumerate(_ALPHABET) if i & 0b11 == 0),
}
_B64URL_CHARS = re.compile(r"[A-Za-z0-9_-]*").fullmatch
_TO_STD = bytes.maketrans(b"-_", b"+/")  # bytes.translate is C-fast; str.translate is not
_FROM_STD = bytes.maketrans(b"+/", b"-_")
_PAD = (b"", b"", b"==", b"=")
_a2b = binascii.a2b_base64
_b2a = binascii.b2a_base64


class TokenExpired(SessionExpired):
    """A JOSE token whose ``exp`` (plus leeway) has passed: ``expired_at`` is its ``exp``."""

    def __init__(self, expired_at: float) -> None:
        super().__init__(expired_at=expired_at, reason="max_age")


def fail() -> NoReturn:
    """Raise the one opaque :class:`InvalidToken` (no detail, no token in the message)."""
    raise InvalidToken(_INVALID)


def b64url_encode(data: bytes) -> str:
    """Unpadded base64url (RFC 7515 §2)."""
    return _b2a(data, newline=False).translate(_FROM_STD).rstrip(b"=").decode("ascii")


def jwk_thumbprint(members: Mapping[str, str], hash_name: str = "sha256") -> str:
    """RFC 7638 JWK thumbprint: hash of the required members, sorted, no whitespace; base64url.

    ``members`` are only the required ones (``{"kty", "k"}`` for ``oct``, ``{"kty", "crv",
    "x"}`` for ``OKP``). @auth/core hashes its 64-byte ``oct`` keys with ``"sha512"``.
    """
    canonical = json.dumps(dict(sorted(members.items())), separators=(",", ":"), ensure_ascii=False)
    return b64url_encode(hashlib.new(hash_name, canonical.encode("utf-8")).digest())


def b64url_decode(s: str) -> bytes:
    """Decode canonical unpadded base64url or raise :class:`InvalidToken`.

    Accepts only ``[A-Za-z0-9_-]``: no padding, no whitespace, no standard-alphabet characters;
    rejects lengths ``% 4 == 1`` and encodings whose unused trailing bits are not zero.
    """
    if _B64URL_CHARS(s) is None:
        fail()
    return _b64url_decode_checked(s)


def _b64url_decode_checked(s: str) -> bytes:
    """:func:`b64url_decode` for a string already known to be in the base64url alphabet."""
    rem = len(s) & 3
    if rem:
        if rem == 1 or s[-1] not in _LAST_OK[rem]:
            fail()
    try:
        return _a2b(s.encode("ascii").translate(_TO_STD) + _PAD[rem])
    except binascii.Error:  # pragma: no cover - excluded by the checks above
        fail()


# The strict decoder's table: base64url → standard alphabet, and the standard alphabet's own
# "+", "/" and "=" (never valid in base64url) → "!", which strict ``a2b_base64`` refuses.
_TO_STD_STRICT = bytes.maketrans(b"-_+/=", b"+/!!!")


def b64url_decode_strict(s: str) -> bytes:
    """:func:`b64url_decode` without the regex: the alphabet is enforced by a strict decode.

    Same acceptance as :func:`b64url_decode` (canonical unpadded base64url, nothing else), at
    the cost of the decode alone — the per-request token paths call this one.
    """
    rem = len(s) & 3
    if rem:
        if rem == 1 or s[-1] not in _LAST_OK[rem]:
            fail()
    if not s.isascii():
        fail()
    try:
        return _a2b(s.encode("ascii").translate(_TO_STD_STRICT) + _PAD[rem], strict_mode=True)
    except binascii.Error:
        fail()


def _reject_constant(name: str) -> NoReturn:
    fail()


def _parse_float(s: str) -> float:
    value = float(s)
    if not math.isfinite(value):  # 1e400 would silently become inf
        fail()
    return value


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        fail()
    return obj


_DECODER = json.JSONDecoder(
    object_pairs_hook=_no_duplicates, parse_constant=_reject_constant, parse_float=_parse_float
)
_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS = re.compile(rb"[\[\]{}]")


def _depth_ok(raw: bytes, max_depth: int) -> bool:
    """True when ``raw``'s bracket nesting is at most ``max_depth`` (cheap path first)."""
    if raw.count(b"{") + raw.count(b"[") <= max_depth:
        return True  # fewer openers than the limit: cannot nest deeper
    depth = 0
    for m in _BRACKETS.finditer(_STRINGS.sub(b"", raw)):
        if m.group() in (b"{", b"["):
            depth += 1
            if depth > max_depth:
                return False
        else:
            depth -= 1
    return True


def parse_json_object(raw: bytes, *, max_depth: int = MAX_DEPTH) -> dict[str, Any]:
    """Parse a strict JSON object from UTF-8 ``raw`` or raise :class:`InvalidToken`.

    Rejects: invalid UTF-8, a top level other than an object, duplicate keys at any level,
    ``NaN``/``Infinity`` (and numbers that overflow to infinity), nesting deeper than
    ``max_depth``, and anything before or after the object (even whitespace: no producer we
    accept writes it, and Auth.js's ``JSON.stringify`` never does).
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        fail()
    # A flat object (every token we make) has no "[" and no "{" after its first character: only
    # anything else is measured (``in`` on a str is a memchr scan; bytes.find parses arguments).
    if ("[" in text or "{" in text[1:]) and not _depth_ok(raw, max_depth):
        fail()
    try:
        obj, end = _DECODER.raw_decode(text)  # no whitespace skipped before the value
    except (ValueError, RecursionError):  # no JSON value / hooks
        fail()
    if end != len(text):  # trailing data (our producers and Auth.js never add whitespace)
        fail()
    if type(obj) is not dict:
        fail()
    return obj


def _numeric_date(claims: Mapping[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        if name in claims:  # present but null
            fail()
        return None
    t = type(value)
    if t is int:
        if -_MAX_NUMERIC_DATE <= value <= _MAX_NUMERIC_DATE:
            return float(value)
    elif t is float and math.isfinite(value) and -_MAX_NUMERIC_DATE <= value <= _MAX_NUMERIC_DATE:
        return float(value)
    fail()  # str, bool, list, out of range...


def check_claims(
    claims: Mapping[str, Any], *, now: float, leeway: float = 0, require_exp: bool = True
) -> None:
    """Check the time claims of a decoded token.

    ``exp``/``nbf``/``iat`` must be JSON numbers (not strings, booleans or null), finite and
    within ±2**53. Then, with ``leeway`` seconds of clock skew allowed:

    - missing ``exp`` (when ``require_exp``) → :class:`InvalidToken`;
    - ``nbf > now + leeway`` or ``iat > now + leeway`` → :class:`InvalidToken`;
    - ``exp + leeway <= now`` (jose / Auth.js semantics) →
      :class:`TokenExpired` with ``expired_at=exp``.
    """
    exp = claims.get("exp")
    if type(exp) is int and "nbf" not in claims and -_MAX_NUMERIC_DATE <= exp <= _MAX_NUMERIC_DATE:
        # Fast path for the usual shape (integer exp, integer or no iat, no nbf): same checks.
        iat = claims.get("iat")
        if type(iat) is int and -_MAX_NUMERIC_DATE <= iat <= _MAX_NUMERIC_DATE:
            if iat > now + leeway:
                fail()
            if exp + leeway <= now:
                raise TokenExpired(float(exp))
            return
    exp = _numeric_date(claims, "exp")
    nbf = _numeric_date(claims, "nbf")
    iat = _numeric_date(claims, "iat")
    if exp is None and require_exp:
        fail()
    limit = now + leeway
    if (nbf is not None and nbf > limit) or (iat is not None and iat > limit):
        fail()
    if exp is not None and exp + leeway <= now:
        raise TokenExpired(exp)

"""Auth.js-compatible session cookies: JWE compact, ``dir`` + ``A256CBC-HS512``.

Byte-compatible with ``@auth/core/jwt`` (Auth.js v5, next-auth@5):

- key: HKDF-SHA256(ikm=secret, salt=cookie name, info="Auth.js Generated Encryption Key
  (<salt>)", 64 bytes) — the first 32 bytes are the HMAC-SHA-512 key, the last 32 the AES key
  (RFC 7518 §5.2.2.1);
- ``kid``: the RFC 7638 thumbprint of ``{"kty": "oct", "k": base64url(key)}`` with **SHA-512**
  (``calculateJwkThumbprint(jwk, `sha${key.byteLength << 3}`)`` in @auth/core: 64 bytes → 512),
  so a decoder holding several secrets picks the right one without trying each;
- claims: the caller's, plus ``iat``, ``exp`` (integers) and ``jti`` (a UUID).

Also reads next-auth@4 cookies (:func:`decode_v4`): ``dir`` + ``A256GCM``, 32-byte key from
HKDF-SHA256(secret, salt="", info="NextAuth.js Generated Encryption Key"), no ``kid``.

Everything cryptographic is ``cryptography`` (HKDF, AES) or the standard library (HMAC);
this module only arranges bytes the way RFC 7516 says.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import os
import re
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.padding import PKCS7

from ..errors import ConfigError
from ._parse import (
    MAX_DEPTH,
    MAX_HEADER_CHARS,
    MAX_TOKEN_BYTES,
    _b64url_decode_checked,
    b64url_decode_strict,
    b64url_encode,
    check_claims,
    fail,
    jwk_thumbprint,
    parse_json_object,
)

__all__ = [
    "AUTHJS_V4_COOKIE",
    "DEFAULT_MAX_AGE",
    "JWECodec",
    "authjs_kid",
    "decode",
    "decode_v4",
    "derive_v4_key",
    "derive_v5_key",
    "encode",
]

#: next-auth@4's session cookie name (``__Secure-`` prefixed on https).
AUTHJS_V4_COOKIE = "next-auth.session-token"
#: Auth.js's default session lifetime: 30 days.
DEFAULT_MAX_AGE = 30 * 24 * 60 * 60

_ALG = "dir"
_ENC = "A256CBC-HS512"
_ENC_V4 = "A256GCM"
_HEADER_KEYS = frozenset({"alg", "enc", "kid"})
# header.  . iv . ciphertext . tag  — the encrypted-key segment must be empty for "dir".
_JWE = re.compile(r"([A-Za-z0-9_-]+)\.\.([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)").fullmatch
_SHA512 = hashlib.sha512
_PKCS7 = PKCS7(128)  # the padding scheme (its block size only); each token gets its own (un)padder
_hmac_digest = hmac.digest
_compare = hmac.compare_digest


def _secrets_tuple(secrets: str | Sequence[str]) -> tuple[str, ...]:
    out = (secrets,) if isinstance(secrets, str) else tuple(secrets)
    if not out or not all(isinstance(s, str) and s for s in out):
        raise ConfigError(
            "no usable secret was given",
            hint="set KEYFOB_SECRET (a comma-separated list, newest first; `keyfob secret` makes one)",
        )
    return out


def derive_v5_key(secret: str, salt: str) -> bytes:
    """The 64-byte A256CBC-HS512 key Auth.js v5 derives from ``secret`` for cookie ``salt``."""
    return HKDF(
        algorithm=hashes.SHA256(),
        length=64,
        salt=salt.encode("utf-8"),
        info=f"Auth.js Generated Encryption Key ({salt})".encode(),
    ).derive(secret.encode("utf-8"))


def derive_v4_key(secret: str) -> bytes:
    """The 32-byte A256GCM key next-auth@4 derives from ``secret`` (empty salt)."""
    return HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=b"",
        info=b"NextAuth.js Generated Encryption Key",
    ).derive(secret.encode("utf-8"))


def authjs_kid(key: bytes) -> str:
    """The ``kid`` @auth/core gives a derived key: its RFC 7638 thumbprint, hashed with SHA-(8·len).

    ``calculateJwkThumbprint({kty: "oct", k: base64url(key)}, `sha${key.byteLength << 3}`)``:
    SHA-512 of ``{"k":"<key>","kty":"oct"}`` for the 64-byte A256CBC-HS512 key, base64url.
    """
    return jwk_thumbprint({"kty": "oct", "k": b64url_encode(key)}, f"sha{len(key) * 8}")


def _header_b64(kid: str | None) -> str:
    header: dict[str, str] = {"alg": _ALG, "enc": _ENC}
    if kid is not None:
        header["kid"] = kid
    return b64url_encode(json.dumps(header, separators=(",", ":")).encode("ascii"))


class _V5Key:
    __slots__ = ("aes", "kid", "mac", "mac_key")

    def __init__(self, key: bytes) -> None:
        self.mac_key = key[:32]
        # keyed once: a token's tag is computed on a copy (hmac's copy(), for inputs with a common prefix)
        self.mac = hmac.new(self.mac_key, digestmod=_SHA512)
        self.aes = algorithms.AES(key[32:])
        self.kid = authjs_kid(key)


class JWECodec:
    """Encrypt and decrypt Auth.js v5 session cookies for one cookie name (``salt``).

    ``secrets`` is one secret or a sequence, **newest first**: :meth:`encode` uses the first;
    :meth:`decode` picks the key by the token's ``kid`` (or tries each, in order, for tokens
    without one). Keys are derived once, here; hold one codec per cookie name.

    >>> codec = JWECodec(["new secret", "old secret"], salt="authjs.session-token")
    >>> claims = codec.decode(codec.encode({"sub": "42"}, max_age=60))
    """

    __slots__ = ("_by_header", "_keys", "_salt")

    def __init__(self, secrets: str | Sequence[str], salt: str) -> None:
        self._salt = salt
        self._keys = tuple(_V5Key(derive_v5_key(s, salt)) for s in _secrets_tuple(secrets))
        # Exact header segments we produce (and Auth.js produces) → candidate key indexes, so the
        # common case skips parsing the header; anything else goes through the strict parser.
        by_header: dict[str, tuple[int, ...]] = {_header_b64(None): tuple(range(len(self._keys)))}
        for i, k in enumerate(self._keys):
            by_header.setdefault(_header_b64(k.kid), (i,))
        self._by_header = by_header

    @property
    def salt(self) -> str:
        """The cookie name the keys were derived for."""
        return self._salt

    @property
    def kids(self) -> tuple[str, ...]:
        """The ``kid`` of each secret's key, newest first (public: a SHA-512 thumbprint)."""
        return tuple(k.kid for k in self._keys)

    def __repr__(self) -> str:
        return f"JWECodec(<{len(self._keys)} secret(s)>, salt={self._salt!r})"

    def encode(self, claims: Mapping[str, Any], *, max_age: float, now: float | None = None) -> str:
        """Encrypt ``claims`` with the newest secret, as Auth.js's ``encode`` does.

        Sets ``iat`` = ``int(now)`` and ``exp`` = ``int(now + max_age)``; adds a random UUID
        ``jti`` unless ``claims`` has one. Raises ``ValueError`` if the token would be over
        :data:`MAX_TOKEN_BYTES` (the decoder would refuse it) or ``claims`` is not JSON.
        """
        if now is None:
            now = time.time()
        payload = dict(claims)
        payload["iat"] = int(now)
        payload["exp"] = int(now + max_age)
        if "jti" not in payload:
            payload["jti"] = str(uuid.uuid4())
        plaintext = json.dumps(payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        key = self._keys[0]
        header = _header_b64(key.kid)
        aad = header.encode("ascii")
        iv = os.urandom(16)
        padder = _PKCS7.padder()
        padded = padder.update(plaintext.encode("utf-8")) + padder.finalize()
        encryptor = Cipher(key.aes, modes.CBC(iv)).encryptor()
        ct = encryptor.update(padded) + encryptor.finalize()
        tag = _hmac_digest(key.mac_key, aad + iv + ct + (len(aad) * 8).to_bytes(8, "big"), _SHA512)[:32]
        token = f"{header}..{b64url_encode(iv)}.{b64url_encode(ct)}.{b64url_encode(tag)}"
        if len(token) > MAX_TOKEN_BYTES:
            raise ValueError(
                f"the session token would be {len(token)} bytes, over the {MAX_TOKEN_BYTES}-byte limit; "
                "keep less data in the session"
            )
        return token

    def decode(self, token: str, *, now: float | None = None, leeway: float = 0) -> dict[str, Any]:
        """Decrypt and check an Auth.js v5 cookie; return its claims.

        Raises :class:`~keyfob.errors.InvalidToken` for anything malformed, tampered,
        made with an unknown key or another algorithm, and
        :class:`~keyfob.tokens.TokenExpired` once ``exp + leeway <= now``.
        """
        return self.decode_verbose(token, now=now, leeway=leeway)[0]

    def decode_verbose(
        self, token: str, *, now: float | None = None, leeway: float = 0
    ) -> tuple[dict[str, Any], int]:
        """Like :meth:`decode`, also returning which secret decrypted it (0 = newest)."""
        if type(token) is not str or len(token) > MAX_TOKEN_BYTES or not token.isascii():
            fail()
        # header..iv.ciphertext.tag: five segments, the encrypted key empty ("dir"), the others
        # not; their alphabet is enforced by the strict decodes (a known header is compared whole).
        parts = token.split(".")
        if len(parts) != 5:
            fail()
        header, encrypted_key, iv_b64, ct_b64, tag_b64 = parts
        if encrypted_key or not header or not iv_b64 or not ct_b64 or not tag_b64:
            fail()
        candidates = self._by_header.get(header)
        if candidates is None:
            candidates = self._candidates(header)
        iv = b64url_decode_strict(iv_b64)
        ct = b64url_decode_strict(ct_b64)
        if len(iv) != 16 or not ct or len(ct) & 15:
            fail()
        aad = header.encode("ascii")
        mac_input = aad + iv + ct + (len(aad) * 8).to_bytes(8, "big")
        for index in candidates:
            key = self._keys[index]
            mac = key.mac.copy()
            mac.update(mac_input)
            # the canonical encoding of the right tag is the only tag segment that decodes to it
            if _compare(b64url_encode(mac.digest()[:32]), tag_b64):
                break
        else:
            fail()
        decryptor = Cipher(key.aes, modes.CBC(iv)).decryptor()
        unpadder = _PKCS7.unpadder()
        try:
            plaintext = unpadder.update(decryptor.update(ct) + decryptor.finalize()) + unpadder.finalize()
        except ValueError:  # bad padding under a valid tag: only a broken producer does this
            fail()
        claims = parse_json_object(plaintext, max_depth=MAX_DEPTH)
        check_claims(claims, now=time.time() if now is None else now, leeway=leeway)
        return claims, index

    def _candidates(self, header_b64: str) -> tuple[int, ...]:
        """Strictly parse a protected header we did not produce; return the keys to try."""
        if len(header_b64) > MAX_HEADER_CHARS:
            fail()
        header = parse_json_object(b64url_decode_strict(header_b64), max_depth=1)
        if header.keys() - _HEADER_KEYS or header.get("alg") != _ALG or header.get("enc") != _ENC:
            fail()
        if "kid" not in header:
            return tuple(range(len(self._keys)))
        kid = header["kid"]
        for i, k in enumerate(self._keys):
            if k.kid == kid:
                return (i,)
        fail()


@functools.lru_cache(maxsize=32)
def _codec(secrets: tuple[str, ...], salt: str) -> JWECodec:
    return JWECodec(secrets, salt)


def encode(
    claims: Mapping[str, Any],
    *,
    secret: str | Sequence[str],
    salt: str,
    max_age: float = DEFAULT_MAX_AGE,
    now: float | None = None,
) -> str:
    """Auth.js's ``encode({token, secret, salt, maxAge})``: an encrypted session cookie.

    ``secret`` may be a list, newest first (the newest encrypts). Codecs are cached per
    ``(secrets, salt)``; on a hot path hold a :class:`JWECodec` instead.
    """
    return _codec(_secrets_tuple(secret), salt).encode(claims, max_age=max_age, now=now)


def decode(
    token: str,
    *,
    secret: str | Sequence[str],
    salt: str,
    now: float | None = None,
    leeway: float = 0,
) -> dict[str, Any]:
    """Auth.js's ``decode({token, secret, salt})``, raising instead of returning null.

    Raises :class:`~keyfob.errors.InvalidToken` or :class:`~keyfob.tokens.TokenExpired`.
    """
    return _codec(_secrets_tuple(secret), salt).decode(token, now=now, leeway=leeway)


_V4_HEADERS = frozenset({b64url_encode(b'{"alg":"dir","enc":"A256GCM"}')})


@functools.lru_cache(maxsize=32)
def _v4_keys(secrets: tuple[str, ...]) -> tuple[AESGCM, ...]:
    return tuple(AESGCM(derive_v4_key(s)) for s in secrets)


def decode_v4(
    token: str,
    *,
    secret: str | Sequence[str],
    now: float | None = None,
    leeway: float = 0,
) -> dict[str, Any]:
    """Decrypt and check a next-auth@4 session cookie (``dir`` + ``A256GCM``); read-only.

    ``secret`` may be a list, newest first; each is tried (v4 tokens carry no ``kid``).
    Raises :class:`~keyfob.errors.InvalidToken` or :class:`~keyfob.tokens.TokenExpired`.
    """
    keys = _v4_keys(_secrets_tuple(secret))
    if type(token) is not str or len(token) > MAX_TOKEN_BYTES:
        fail()
    m = _JWE(token)
    if m is None:
        fail()
    header_b64, iv_b64, ct_b64, tag_b64 = m.groups()
    if header_b64 not in _V4_HEADERS:
        if len(header_b64) > MAX_HEADER_CHARS:
            fail()
        header = parse_json_object(_b64url_decode_checked(header_b64), max_depth=1)
        if header.keys() != {"alg", "enc"} or header["alg"] != _ALG or header["enc"] != _ENC_V4:
            fail()
    iv = _b64url_decode_checked(iv_b64)
    ct_and_tag = _b64url_decode_checked(ct_b64) + _b64url_decode_checked(tag_b64)
    if len(iv) != 12 or len(tag_b64) != 22:  # 96-bit IV, 128-bit tag
        fail()
    aad = header_b64.encode("ascii")
    for aesgcm in keys:
        try:
            plaintext = aesgcm.decrypt(iv, ct_and_tag, aad)
            break
        except InvalidTag:
            continue
    else:
        fail()
    claims = parse_json_object(plaintext, max_depth=MAX_DEPTH)
    check_claims(claims, now=time.time() if now is None else now, leeway=leeway)
    return claims

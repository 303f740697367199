"""JWS compact tokens (RFC 7515): HS256 and EdDSA (Ed25519), keys with ``kid``, JWKS.

Policy, not negotiation: a :class:`JWSVerifier` accepts only the algorithms it was built with,
only keys from its ring (by ``kid``, which is required), only the ``typ`` it expects, and only
when the key's own algorithm is the header's — so an HS256 header can never make an Ed25519
public key act as an HMAC secret, and ``alg: none`` is never even considered.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, cast

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

from ..errors import ConfigError
from ._parse import (
    MAX_DEPTH,
    MAX_HEADER_CHARS,
    MAX_TOKEN_BYTES,
    b64url_decode,
    b64url_decode_strict,
    b64url_encode,
    check_claims,
    fail,
    jwk_thumbprint,
    parse_json_object,
)

if TYPE_CHECKING:
    from ._keyring import KeyRing

__all__ = ["Algorithm", "JWSKey", "JWSSigner", "JWSVerifier", "jwks_document"]

Algorithm = Literal["HS256", "EdDSA"]
_ALGORITHMS: frozenset[str] = frozenset({"HS256", "EdDSA"})
_HEADER_KEYS = frozenset({"alg", "kid", "typ"})
_SHA256 = hashlib.sha256
_hmac_digest = hmac.digest
_compare = hmac.compare_digest


def _jwk_bytes(jwk: Mapping[str, Any], name: str) -> bytes:
    value = jwk.get(name)
    if not isinstance(value, str):
        raise ConfigError(f"the JWK has no {name!r} member")
    try:
        return b64url_decode(value)
    except Exception as exc:  # InvalidToken from the strict decoder
        raise ConfigError(f"the JWK's {name!r} member is not base64url") from exc


@dataclass(frozen=True, slots=True)
class JWSKey:
    """One signing/verification key with its ``kid`` and its one algorithm.

    HS256 keys hold a secret (at least 32 bytes); EdDSA keys hold an Ed25519 public key and,
    when they can sign, the private key. Build them with :meth:`hs256`,
    :meth:`generate_ed25519`, :meth:`ed25519`, :meth:`from_jwk` or :meth:`from_private_jwk`;
    the default ``kid`` is the key's RFC 7638 thumbprint. ``repr`` never shows key material.
    """

    kid: str
    alg: Algorithm
    secret: bytes | None = field(default=None, repr=False)
    private_key: Ed25519PrivateKey | None = field(default=None, repr=False, compare=False)
    public_key: Ed25519PublicKey | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.kid, str) or not self.kid:
            raise ConfigError("a JWS key needs a non-empty string kid")
        if self.alg == "HS256":
            if not isinstance(self.secret, bytes) or len(self.secret) < 32:
                raise ConfigError("an HS256 key needs a secret of at least 32 bytes (RFC 7518 §3.2)")
            if self.private_key is not None or self.public_key is not None:
                raise ConfigError("an HS256 key holds a secret only")
        elif self.alg == "EdDSA":
            if self.secret is not None:
                raise ConfigError("an EdDSA key holds Ed25519 keys, not a secret")
            if self.private_key is not None and self.public_key is None:
                object.__setattr__(self, "public_key", self.private_key.public_key())
            if not isinstance(self.public_key, Ed25519PublicKey):
                raise ConfigError("an EdDSA key needs an Ed25519 key")
        else:
            raise ConfigError(f"unsupported JWS algorithm {self.alg!r}; use 'HS256' or 'EdDSA'")

    # -- constructors -------------------------------------------------------------------

    @classmethod
    def hs256(cls, secret: bytes, kid: str | None = None) -> JWSKey:
        """An HS256 key; ``kid`` defaults to the RFC 7638 thumbprint of the ``oct`` JWK."""
        if not isinstance(secret, bytes):
            raise ConfigError(
                "an HS256 key is bytes", hint="derive one from a string secret with KeyRing.from_secrets"
            )
        kid = kid or jwk_thumbprint({"kty": "oct", "k": b64url_encode(secret)})
        return cls(kid=kid, alg="HS256", secret=secret)

    @classmethod
    def ed25519(cls, key: Ed25519PrivateKey | Ed25519PublicKey, kid: str | None = None) -> JWSKey:
        """An EdDSA key from an Ed25519 private key (signs and verifies) or public key (verifies)."""
        if isinstance(key, Ed25519PrivateKey):
            private, public = key, key.public_key()
        elif isinstance(key, Ed25519PublicKey):
            private, public = None, key
        else:
            raise ConfigError("an EdDSA key needs an Ed25519PrivateKey or Ed25519PublicKey")
        x = b64url_encode(public.public_bytes(Encoding.Raw, PublicFormat.Raw))
        kid = kid or jwk_thumbprint({"kty": "OKP", "crv": "Ed25519", "x": x})
        return cls(kid=kid, alg="EdDSA", private_key=private, public_key=public)

    @classmethod
    def generate_ed25519(cls, kid: str | None = None) -> JWSKey:
        """A fresh random Ed25519 key pair; persist it with :meth:`to_private_jwk`."""
        return cls.ed25519(Ed25519PrivateKey.generate(), kid)

    @classmethod
    def from_jwk(cls, jwk: Mapping[str, Any]) -> JWSKey:
        """A verification key from a JWK: ``OKP``/``Ed25519`` (public part only) or ``oct``."""
        return cls._from_jwk(jwk, private=False)

    @classmethod
    def from_private_jwk(cls, jwk: Mapping[str, Any]) -> JWSKey:
        """A signing key from a JWK written by :meth:`to_private_jwk` (``OKP`` with ``d``, or ``oct``)."""
        return cls._from_jwk(jwk, private=True)

    @classmethod
    def _from_jwk(cls, jwk: Mapping[str, Any], *, private: bool) -> JWSKey:
        if not isinstance(jwk, Mapping):
            raise ConfigError("a JWK is a JSON object")
        kid = jwk.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise ConfigError("the JWK's 'kid' must be a string")
        kty, alg = jwk.get("kty"), jwk.get("alg")
        if kty == "oct" and alg in (None, "HS256"):
            return cls.hs256(_jwk_bytes(jwk, "k"), kid)
        if kty == "OKP" and jwk.get("crv") == "Ed25519" and alg in (None, "EdDSA", "Ed25519"):
            x = _jwk_bytes(jwk, "x")
            try:
                public = Ed25519PublicKey.from_public_bytes(x)
                if not private:
                    return cls.ed25519(public, kid)
                key = Ed25519PrivateKey.from_private_bytes(_jwk_bytes(jwk, "d"))
            except ValueError as exc:
                raise ConfigError("the JWK does not hold a valid Ed25519 key") from exc
            if key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw) != x:
                raise ConfigError("the JWK's 'd' and 'x' do not belong to the same Ed25519 key")
            return cls.ed25519(key, kid)
        raise ConfigError("unsupported JWK: use kty 'oct' (HS256) or kty 'OKP' with crv 'Ed25519' (EdDSA)")

    # -- export -------------------------------------------------------------------------

    @property
    def can_sign(self) -> bool:
        """True for HS256 keys and EdDSA keys that hold the private key."""
        return self.alg == "HS256" or self.private_key is not None

    def to_public_jwk(self) -> dict[str, str]:
        """The public JWK (EdDSA only; an HS256 secret has no public half)."""
        if self.public_key is None:
            raise ConfigError("an HS256 key has no public JWK; only EdDSA keys go in a JWKS")
        x = b64url_encode(self.public_key.public_bytes(Encoding.Raw, PublicFormat.Raw))
        return {"kty": "OKP", "crv": "Ed25519", "x": x, "kid": self.kid, "alg": "EdDSA", "use": "sig"}

    def to_private_jwk(self) -> dict[str, str]:
        """A JWK with the secret/private key, for persisting a key; keep it secret."""
        if self.secret is not None:
            return {"kty": "oct", "k": b64url_encode(self.secret), "kid": self.kid, "alg": "HS256"}
        if self.private_key is None:
            raise ConfigError("this EdDSA key holds only the public key")
        jwk = self.to_public_jwk()
        d = self.private_key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        jwk["d"] = b64url_encode(d)
        return jwk


def _dumps(obj: Mapping[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


def _header_b64(alg: str, kid: str, typ: str) -> str:
    return b64url_encode(_dumps({"alg": alg, "kid": kid, "typ": typ}))


class JWSSigner:
    """Signs compact JWS with the ring's current key: header ``{"alg", "kid", "typ"}``."""

    __slots__ = ("_headers", "_key")

    def __init__(self, ring: KeyRing) -> None:
        self._key = ring.current
        if not self._key.can_sign:
            raise ConfigError("the key ring's current key cannot sign (it is a public key only)")
        self._headers: dict[str, str] = {}

    def sign(self, claims: Mapping[str, Any], *, typ: str) -> str:
        """Sign ``claims`` as is (they must include ``exp``; verifiers refuse tokens without it)."""
        if "exp" not in claims:
            raise ValueError("a token needs an 'exp' claim; verifiers refuse tokens without one")
        key = self._key
        header = self._headers.get(typ)
        if header is None:
            header = self._headers[typ] = _header_b64(key.alg, key.kid, typ)
        signing_input = f"{header}.{b64url_encode(_dumps(claims))}"
        data = signing_input.encode("ascii")
        if key.secret is not None:
            signature = _hmac_digest(key.secret, data, _SHA256)
        else:
            signature = cast(Ed25519PrivateKey, key.private_key).sign(data)
        token = f"{signing_input}.{b64url_encode(signature)}"
        if len(token) > MAX_TOKEN_BYTES:
            raise ValueError(f"the token would be over the {MAX_TOKEN_BYTES}-byte limit; put less in it")
        return token


class JWSVerifier:
    """Verifies compact JWS against a key ring, for one ``typ`` (and optionally one audience).

    Only ``algorithms`` are accepted, whatever the header says; the header must carry a
    ``kid`` from the ring whose key's algorithm is the header's ``alg``, and exactly the
    expected ``typ``. When ``audience`` is set, ``aud`` must be it (or a list holding it);
    when it is not, tokens with an ``aud`` are refused.
    """

    __slots__ = ("_algorithms", "_audience", "_by_header", "_by_kid", "_macs", "_typ")

    def __init__(
        self,
        ring: KeyRing,
        *,
        typ: str,
        audience: str | None = None,
        algorithms: Iterable[Algorithm] = ("HS256",),
    ) -> None:
        allowed = frozenset(algorithms)
        if not allowed or not allowed <= _ALGORITHMS:
            raise ConfigError("JWSVerifier algorithms must be a non-empty subset of ('HS256', 'EdDSA')")
        self._algorithms = allowed
        self._typ = typ
        self._audience = audience
        self._by_kid = {k.kid: k for k in ring if k.alg in allowed}
        if not self._by_kid:
            raise ConfigError("none of the key ring's keys uses an allowed algorithm")
        # The exact header segments our signer writes → key: the common case skips header parsing.
        self._by_header = {_header_b64(k.alg, k.kid, typ): k for k in self._by_kid.values()}
        # Each HS256 key's HMAC, keyed once: a request copies it (hmac's copy(), made for inputs that
        # share a prefix, here the key's padded blocks) instead of keying a new HMAC every time.
        self._macs = {k.kid: hmac.new(k.secret, digestmod=_SHA256) for k in self._by_kid.values()
                      if k.secret is not None}

    def verify(self, token: str, *, now: float | None = None, leeway: float = 0) -> dict[str, Any]:
        """Check signature, header and claims; return the claims.

        Raises :class:`~keyfob.errors.InvalidToken` for anything wrong and
        :class:`~keyfob.tokens.TokenExpired` once ``exp + leeway <= now``.
        """
        if type(token) is not str or len(token) > MAX_TOKEN_BYTES or not token.isascii():
            fail()
        # Three non-empty segments; their alphabet is enforced by the strict decodes below (and
        # a known header segment is compared whole), so no regex pass over the token is needed.
        signed, _, signature_b64 = token.rpartition(".")
        header, _, payload_b64 = signed.partition(".")
        if not header or not payload_b64 or not signature_b64 or "." in payload_b64:
            fail()
        key = self._by_header.get(header)
        if key is None:
            key = self._key_from_header(header)
        signing_input = signed.encode("ascii")
        if key.secret is not None:
            mac = self._macs[key.kid].copy()
            mac.update(signing_input)
            # the canonical encoding of the right MAC is the only signature segment that decodes to it
            if not _compare(b64url_encode(mac.digest()), signature_b64):
                fail()
        else:
            try:
                signature = b64url_decode_strict(signature_b64)
                cast(Ed25519PublicKey, key.public_key).verify(signature, signing_input)
            except InvalidSignature:
                fail()
        claims = parse_json_object(b64url_decode_strict(payload_b64), max_depth=MAX_DEPTH)
        audience = self._audience
        if audience is None:
            if "aud" in claims:  # meant for someone in particular, and we were not told who we are
                fail()
        else:
            aud = claims.get("aud")
            if aud != audience and not (type(aud) is list and audience in aud):
                fail()
        check_claims(claims, now=time.time() if now is None else now, leeway=leeway)
        return claims

    def _key_from_header(self, header_b64: str) -> JWSKey:
        """Strictly parse a header we did not write byte for byte; return its key."""
        if len(header_b64) > MAX_HEADER_CHARS:
            fail()
        header = parse_json_object(b64url_decode_strict(header_b64), max_depth=1)
        if header.keys() != _HEADER_KEYS or header["typ"] != self._typ:
            fail()
        alg, kid = header["alg"], header["kid"]
        if type(kid) is not str or type(alg) is not str or alg not in self._algorithms:
            fail()
        key = self._by_kid.get(kid)
        if key is None or key.alg != alg:
            fail()
        return key


def jwks_document(ring: KeyRing) -> dict[str, list[dict[str, str]]]:
    """The ring's public keys as a JWKS (``/.well-known/jwks.json``): EdDSA keys only."""
    return {"keys": [k.to_public_jwk() for k in ring if k.alg == "EdDSA"]}

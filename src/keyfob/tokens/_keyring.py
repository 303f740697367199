"""Key rings: the signing keys of one kind of token, newest first, found by ``kid``.

Rotation is a ring with more than one key (``MultiFernet``'s idea): the first key signs, every
key verifies, and the ``kid`` in a token's header names the key without trying each in turn.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..errors import ConfigError
from ._jws import JWSKey

__all__ = ["KeyRing"]

_KEYRING_SALT = b"keyfob"


class KeyRing:
    """An ordered, immutable set of :class:`JWSKey`, newest first.

    ``current`` (the first key) signs; :meth:`find` looks a key up by ``kid`` for verification.
    Key ids must be unique.
    """

    __slots__ = ("_by_kid", "_keys")

    def __init__(self, keys: Iterable[JWSKey]) -> None:
        self._keys = tuple(keys)
        if not self._keys:
            raise ConfigError(
                "a key ring needs at least one key", hint="pass the signing key(s), newest first"
            )
        for key in self._keys:
            if not isinstance(key, JWSKey):
                raise ConfigError(f"a key ring holds JWSKey objects, not {type(key).__name__}")
        self._by_kid = {k.kid: k for k in self._keys}
        if len(self._by_kid) != len(self._keys):
            raise ConfigError(
                "two keys in the key ring share a kid", hint="remove the duplicate secret or key"
            )

    @classmethod
    def from_secrets(cls, secrets: str | Sequence[str], *, info: str) -> KeyRing:
        """HS256 keys derived from app secrets (newest first), one per secret.

        Each key is HKDF-SHA256(secret, salt=b"keyfob", info=``info``, 32 bytes); use a distinct
        ``info`` per purpose (e.g. ``"keyfob access token"``) so one secret never keys two uses.
        The ``kid`` is the key's RFC 7638 thumbprint.
        """
        return cls(JWSKey.hs256(_derive(s, info)) for s in _secrets(secrets))

    @classmethod
    def from_secrets_ed25519(cls, secrets: str | Sequence[str], *, info: str) -> KeyRing:
        """EdDSA keys derived from app secrets (newest first), one per secret.

        The Ed25519 private key's 32-byte seed is HKDF-SHA256(secret, salt=b"keyfob",
        info=``info``), so every node with the same secrets signs with the same key and publishes
        the same JWKS without sharing key files. The ``kid`` is the RFC 7638 thumbprint of the
        public key. Use an ``info`` distinct from any HS256 ring's.
        """
        return cls(
            JWSKey.ed25519(Ed25519PrivateKey.from_private_bytes(_derive(s, info))) for s in _secrets(secrets)
        )

    @property
    def current(self) -> JWSKey:
        """The newest key: the one that signs."""
        return self._keys[0]

    @property
    def keys(self) -> tuple[JWSKey, ...]:
        """All keys, newest first."""
        return self._keys

    def find(self, kid: str) -> JWSKey | None:
        """The key with this ``kid``, or None."""
        return self._by_kid.get(kid)

    def __iter__(self) -> Iterator[JWSKey]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:
        return f"KeyRing([{', '.join(repr(k) for k in self._keys)}])"


def _secrets(secrets: str | Sequence[str]) -> tuple[str, ...]:
    items = (secrets,) if isinstance(secrets, str) else tuple(secrets)
    if not items or not all(isinstance(s, str) and s for s in items):
        raise ConfigError(
            "no usable secret was given",
            hint="set KEYFOB_SECRET (a comma-separated list, newest first; `keyfob secret` makes one)",
        )
    return items


def _derive(secret: str, info: str) -> bytes:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=_KEYRING_SALT, info=info.encode("utf-8"))
    return hkdf.derive(secret.encode("utf-8"))

"""RFC 7520 (JOSE Cookbook) vectors: what keyfob supports decodes, what it refuses is refused.

The vectors are in ``tests/fixtures/rfc7520/*.json`` (each names its section and source). First,
each one is shown to be the genuine example, decrypted or verified here with ``cryptography``
alone — so a refusal below is keyfob's policy, not a corrupted fixture.

What keyfob supports, and what the cookbook has of it:

* **JWS HS256 — §4.4.** keyfob loads the cookbook's key (§3.5 JWK, with its ``kid``) as an HS256
  key, decodes every segment with its strict base64url decoder, and the MAC under that key is the
  vector's signature. ``JWSVerifier`` then refuses the token *as a session token*, by policy: no
  ``typ`` header (RFC 8725 §3.11 explicit typing) and a payload that is not a claims object.
* **JWS EdDSA** is not in RFC 7520; RFC 8037 §A.4 is checked in
  ``tests/unit/test_tokens_jws.py::test_ed25519_key_from_the_rfc8037_example_has_its_thumbprint_kid_and_signs``.
* **JWE dir + A256CBC-HS512 / dir + A256GCM** are not in RFC 7520 (its only ``dir`` example, §5.6,
  is A128GCM); keyfob's JWE is checked against Auth.js's own output in
  ``tests/unit/test_tokens_authjs.py`` and ``tests/interop/``.

Refused, each by the JWE decoders (v5 and v4), the JWS verifier and every strategy over HTTP (as a
cookie and as a Bearer token): RSA1_5 (§5.1), PBES2 (§5.3, never running its 8192 PBKDF2
rounds), ``dir`` + A128GCM (§5.6), ``zip: DEF`` (§5.9), and §4.4 itself in the cookie slot.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, padding
from cryptography.hazmat.primitives.asymmetric import padding as asym_padding
from cryptography.hazmat.primitives.asymmetric.rsa import (
    RSAPrivateNumbers,
    RSAPublicNumbers,
    rsa_crt_dmp1,
    rsa_crt_dmq1,
    rsa_crt_iqmp,
    rsa_recover_prime_factors,
)
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC
from cryptography.hazmat.primitives.keywrap import aes_key_unwrap

from keyfob import InvalidToken, Keyfob
from keyfob.tokens import JWECodec, JWSKey, JWSVerifier, KeyRing, decode_v4
from keyfob.tokens._parse import b64url_decode

from ._support import SECRET, open_env, timed_request, unb64

pytestmark = pytest.mark.anyio

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "rfc7520"
VECTORS: dict[str, dict[str, Any]] = {
    p.stem: json.loads(p.read_text(encoding="utf-8")) for p in sorted(FIXTURES.glob("*.json"))
}
REFUSED_JWE = ["5_1_rsa1_5", "5_3_pbes2", "5_6_dir_a128gcm", "5_9_zip_def"]
TIME_BOUND = 1.0  # CPU seconds (not wall-clock, which load inflates): a refusal is immediate


def _b64int(s: str) -> int:
    return int.from_bytes(unb64(s), "big")


def _cbc_hs_decrypt(cek: bytes, protected_b64: str, iv: bytes, ct: bytes, tag: bytes) -> bytes:
    """RFC 7518 §5.2.2.2 (A128CBC-HS256 for a 32-byte key), written out independently of keyfob."""
    half = len(cek) // 2
    mac_key, enc_key = cek[:half], cek[half:]
    aad = protected_b64.encode("ascii")
    mac = hmac.new(mac_key, aad + iv + ct + (len(aad) * 8).to_bytes(8, "big"), hashlib.sha256).digest()
    assert hmac.compare_digest(mac[:half], tag)
    dec = Cipher(algorithms.AES(enc_key), modes.CBC(iv)).decryptor()
    unpadder = padding.PKCS7(128).unpadder()
    return unpadder.update(dec.update(ct) + dec.finalize()) + unpadder.finalize()


def _decrypt_independently(v: dict[str, Any]) -> bytes:
    parts = v["compact"].split(".")
    protected_b64 = parts[0]
    ek, iv, ct, tag = (unb64(p) for p in parts[1:])
    alg = v["alg"]
    if alg == "RSA1_5":
        k = v["key"]
        n, e, d = _b64int(k["n"]), _b64int(k["e"]), _b64int(k["d"])
        p, q = rsa_recover_prime_factors(n, e, d)
        key = RSAPrivateNumbers(p, q, d, rsa_crt_dmp1(d, p), rsa_crt_dmq1(d, q), rsa_crt_iqmp(p, q),
                                RSAPublicNumbers(e, n)).private_key()
        cek = key.decrypt(ek, asym_padding.PKCS1v15())
        assert cek == unb64(v["cek"])
        return _cbc_hs_decrypt(cek, protected_b64, iv, ct, tag)
    if alg == "PBES2-HS512+A256KW":
        salt = alg.encode() + b"\x00" + unb64(v["p2s"])
        kek = PBKDF2HMAC(hashes.SHA512(), 32, salt, v["p2c"]).derive(v["password"].encode())
        cek = aes_key_unwrap(kek, ek)
        assert cek == unb64(v["cek"])
        return _cbc_hs_decrypt(cek, protected_b64, iv, ct, tag)
    if alg == "dir":
        return AESGCM(unb64(v["key"]["k"])).decrypt(iv, ct + tag, protected_b64.encode())
    if alg == "A128KW":
        cek = aes_key_unwrap(unb64(v["key"]["k"]), ek)
        assert cek == unb64(v["cek"])
        compressed = AESGCM(cek).decrypt(iv, ct + tag, protected_b64.encode())
        return zlib.decompress(compressed, wbits=-15)  # zip: DEF is raw DEFLATE (RFC 1951)
    raise AssertionError(f"no independent decryption for {alg}")


# -- the fixtures are the genuine cookbook examples ------------------------------------------------------


def test_the_fixtures_hold_the_cookbook_examples() -> None:
    assert set(VECTORS) == {"4_4_hs256", *REFUSED_JWE}
    for name, v in VECTORS.items():
        assert v["source"].startswith(f"RFC 7520 (JOSE Cookbook) §{v['section']}"), name
        header = json.loads(unb64(v["compact"].split(".")[0]))
        assert header["alg"] == v["alg"], name
        assert header.get("enc") == v.get("enc") and header.get("zip") == v.get("zip"), name


@pytest.mark.parametrize("name", REFUSED_JWE)
def test_jwe_vector_decrypts_with_an_independent_implementation(name: str) -> None:
    v = VECTORS[name]
    assert _decrypt_independently(v).decode("utf-8") == v["plaintext"]


def test_hs256_vector_verifies_with_an_independent_implementation() -> None:
    v = VECTORS["4_4_hs256"]
    header, payload, signature = v["compact"].split(".")
    mac = hmac.new(unb64(v["key"]["k"]), f"{header}.{payload}".encode(), hashlib.sha256).digest()
    assert mac == unb64(signature) and unb64(payload).decode("utf-8") == v["payload"]


# -- supported: §4.4 HS256 -------------------------------------------------------------------------------


def test_rfc7520_4_4_hs256_key_and_signature_verify_under_keyfob() -> None:
    v = VECTORS["4_4_hs256"]
    key = JWSKey.from_jwk(v["key"])  # keyfob's JWK loader (kty oct, alg HS256)
    assert key.alg == "HS256" and key.kid == v["key"]["kid"] and key.secret == unb64(v["key"]["k"])
    header_b64, payload_b64, signature_b64 = v["compact"].split(".")
    # keyfob's strict decoder (canonical base64url only) accepts every segment of the vector
    assert json.loads(b64url_decode(header_b64)) == v["protected"]
    assert b64url_decode(payload_b64).decode("utf-8") == v["payload"]
    signature = b64url_decode(signature_b64)
    assert key.secret is not None
    assert hmac.compare_digest(
        hmac.digest(key.secret, f"{header_b64}.{payload_b64}".encode("ascii"), "sha256"), signature
    )
    # One bit off, and the MAC no longer matches.
    tampered = bytes([signature[0] ^ 1]) + signature[1:]
    assert not hmac.compare_digest(
        hmac.digest(key.secret, f"{header_b64}.{payload_b64}".encode("ascii"), "sha256"), tampered
    )


def test_rfc7520_4_4_is_refused_as_a_session_token_by_policy() -> None:
    """Same key, same algorithm: still refused — no explicit ``typ``, no claims object (RFC 8725 §3.11)."""
    v = VECTORS["4_4_hs256"]
    verifier = JWSVerifier(KeyRing([JWSKey.from_jwk(v["key"])]), typ="at+jwt")
    with pytest.raises(InvalidToken):
        verifier.verify(v["compact"], now=time.time())


# -- refused: RSA1_5, PBES2, dir + A128GCM, zip ------------------------------------------------------------

CODEC = JWECodec([SECRET], "keyfob.session-token")
VERIFIER = JWSVerifier(KeyRing.from_secrets([SECRET], info="keyfob access token HS256"), typ="at+jwt",
                       audience="keyfob")


@pytest.mark.parametrize("name", [*REFUSED_JWE, "4_4_hs256"])
def test_rfc7520_vector_is_refused_by_every_decoder(name: str) -> None:
    token = VECTORS[name]["compact"]
    decoders: list[Callable[[], object]] = [
        lambda: CODEC.decode(token, now=time.time()),
        lambda: decode_v4(token, secret=SECRET, now=time.time()),
        lambda: VERIFIER.verify(token, now=time.time()),
    ]
    for decode in decoders:
        start = time.process_time()
        with pytest.raises(InvalidToken):
            decode()
        assert time.process_time() - start < TIME_BOUND


@pytest.mark.parametrize("name", [*REFUSED_JWE, "4_4_hs256"])
@pytest.mark.parametrize("strategy", ["jwt", "database", "hybrid"])
async def test_rfc7520_vector_is_refused_by_authenticate(name: str, strategy: str) -> None:
    fob = Keyfob(strategy=strategy, secret=SECRET, store=f"memory://rfc7520-{strategy}")
    try:
        token = VECTORS[name]["compact"]
        result = await fob.authenticate({"keyfob.session-token": token}, secure=False)
        assert result.session is None and isinstance(result.error, InvalidToken)
        # the refresh cookie is only read by hybrid; elsewhere it is simply not a session
        assert (await fob.authenticate({"keyfob.refresh-token": token}, secure=False)).session is None
        assert (await fob.authenticate_token(token)).session is None
    finally:
        await fob.close()


@pytest.mark.parametrize("name", REFUSED_JWE)
@pytest.mark.parametrize("strategy", ["jwt", "database", "hybrid"])
async def test_rfc7520_vector_gets_401_over_http(name: str, strategy: str, tmp_path: Path) -> None:
    token = VECTORS[name]["compact"].encode()
    async with open_env(strategy, tmp_path) as env:
        cookie = env.session_cookie.encode() + b"=" + token
        for header in ((b"cookie", cookie), (b"authorization", b"Bearer " + token)):
            response, elapsed = await timed_request(env.app, "GET", "/me", headers=[header])
            assert response.status_code == 401, response.text
            assert elapsed < TIME_BOUND

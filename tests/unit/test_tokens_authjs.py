"""keyfob.tokens Auth.js cookies: JWE dir + A256CBC-HS512 (v5) and A256GCM (next-auth@4, read-only).

Vectors in tests/fixtures/authjs_vectors.json were written by the real @auth/core and next-auth@4
(tests/interop/make_vectors.py), so the wire format is pinned here without Node.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import pathlib
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.padding import PKCS7

from keyfob.errors import ConfigError, InvalidToken, SessionExpired
from keyfob.tokens import (
    AUTHJS_V4_COOKIE,
    MAX_TOKEN_BYTES,
    JWECodec,
    decode,
    decode_v4,
    derive_v4_key,
    derive_v5_key,
    encode,
)
from keyfob.tokens._authjs import authjs_kid
from keyfob.tokens._parse import MAX_HEADER_CHARS, b64url_decode, b64url_encode

NOW = 1_800_000_000.0
SECRET = "kf-test-secret-0123456789abcdef0123456789abcdef0123456789ab"
OLD_SECRET = "kf-test-old-secret-fedcba9876543210fedcba9876543210fedcba98"
SALT = "authjs.session-token"
VECTORS: list[dict[str, Any]] = json.loads(
    (pathlib.Path(__file__).parents[1] / "fixtures" / "authjs_vectors.json").read_text("utf-8")
)["vectors"]


def seal_v5(header: bytes, plaintext: bytes, *, secret: str = SECRET, salt: str = SALT) -> str:
    """A JWE A256CBC-HS512 with any header/plaintext bytes, built by hand (to test the decoder)."""
    key = derive_v5_key(secret, salt)
    header_b64 = b64url_encode(header)
    iv = os.urandom(16)
    padder = PKCS7(128).padder()
    enc = Cipher(algorithms.AES(key[32:]), modes.CBC(iv)).encryptor()
    ct = enc.update(padder.update(plaintext) + padder.finalize()) + enc.finalize()
    aad = header_b64.encode()
    tag = hmac.new(key[:32], aad + iv + ct + (len(aad) * 8).to_bytes(8, "big"), hashlib.sha512).digest()[:32]
    return ".".join([header_b64, "", b64url_encode(iv), b64url_encode(ct), b64url_encode(tag)])


def header_for(secret: str = SECRET, salt: str = SALT, **extra: Any) -> bytes:
    h: dict[str, Any] = {"alg": "dir", "enc": "A256CBC-HS512", "kid": authjs_kid(derive_v5_key(secret, salt))}
    h.update(extra)
    return json.dumps({k: v for k, v in h.items() if v is not None}, separators=(",", ":")).encode()


def seal_v4(header: bytes, plaintext: bytes, *, secret: str = SECRET, iv_bytes: int = 12) -> str:
    header_b64 = b64url_encode(header)
    iv = os.urandom(iv_bytes)
    sealed = AESGCM(derive_v4_key(secret)).encrypt(iv, plaintext, header_b64.encode())
    return ".".join(
        [header_b64, "", b64url_encode(iv), b64url_encode(sealed[:-16]), b64url_encode(sealed[-16:])]
    )


@pytest.fixture
def codec() -> JWECodec:
    return JWECodec(SECRET, SALT)


# -- key derivation and kid --------------------------------------------------------------------


def test_v5_key_is_hkdf_sha256_with_the_cookie_name_as_salt() -> None:
    # RFC 5869 HKDF written out with hmac, independent of the implementation under test.
    prk = hmac.new(SALT.encode(), SECRET.encode(), hashlib.sha256).digest()
    info = f"Auth.js Generated Encryption Key ({SALT})".encode()
    okm, block = b"", b""
    for i in range(1, 3):
        block = hmac.new(prk, block + info + bytes([i]), hashlib.sha256).digest()
        okm += block
    assert derive_v5_key(SECRET, SALT) == okm
    assert len(derive_v5_key(SECRET, "__Secure-authjs.session-token")) == 64
    assert derive_v5_key(SECRET, SALT) != derive_v5_key(SECRET, "__Secure-authjs.session-token")


def test_v4_key_is_32_bytes_and_independent_of_v5() -> None:
    assert len(derive_v4_key(SECRET)) == 32
    assert derive_v4_key(SECRET) != derive_v5_key(SECRET, "")[:32]


def test_kid_is_the_sha512_jwk_thumbprint_of_the_oct_key() -> None:
    key = derive_v5_key(SECRET, SALT)
    canonical = json.dumps({"k": b64url_encode(key), "kty": "oct"}, separators=(",", ":")).encode()
    expected = b64url_encode(hashlib.sha512(canonical).digest())
    assert authjs_kid(key) == expected
    assert JWECodec(SECRET, SALT).kids == (expected,)


# -- the real Auth.js vectors ------------------------------------------------------------------


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_authjs_written_vector_decodes_to_the_payload_authjs_reads(vector: dict[str, Any]) -> None:
    if vector["version"] == 5:
        claims = decode(vector["token"], secret=vector["secret"], salt=vector["salt"], now=vector["now"])
    else:
        claims = decode_v4(vector["token"], secret=vector["secret"], now=vector["now"])
    assert claims == vector["payload"]


@pytest.mark.parametrize("vector", [v for v in VECTORS if v["version"] == 5], ids=lambda v: v["name"])
def test_authjs_vector_header_is_byte_identical_to_ours(vector: dict[str, Any]) -> None:
    ours = JWECodec(vector["secret"], vector["salt"]).encode({}, max_age=60, now=NOW)
    assert ours.split(".")[0] == vector["token"].split(".")[0]


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_authjs_vector_is_expired_after_its_exp(vector: dict[str, Any]) -> None:
    exp = vector["payload"]["exp"]
    with pytest.raises(SessionExpired) as info:
        if vector["version"] == 5:
            decode(vector["token"], secret=vector["secret"], salt=vector["salt"], now=exp)
        else:
            decode_v4(vector["token"], secret=vector["secret"], now=exp)
    assert info.value.expired_at == exp


def test_authjs_vector_with_another_cookie_name_is_rejected() -> None:
    v = next(v for v in VECTORS if v["version"] == 5)
    with pytest.raises(InvalidToken):
        decode(v["token"], secret=v["secret"], salt="another.session-token", now=v["now"])


def test_v4_vector_is_not_accepted_as_a_v5_cookie_and_vice_versa() -> None:
    v4 = next(v for v in VECTORS if v["version"] == 4)
    v5 = next(v for v in VECTORS if v["version"] == 5)
    with pytest.raises(InvalidToken):
        decode(v4["token"], secret=v4["secret"], salt=AUTHJS_V4_COOKIE, now=v4["now"])
    with pytest.raises(InvalidToken):
        decode_v4(v5["token"], secret=v5["secret"], now=v5["now"])


# -- encode / decode ---------------------------------------------------------------------------


def test_encode_sets_iat_exp_and_a_uuid_jti_and_keeps_app_claims(codec: JWECodec) -> None:
    token = codec.encode({"sub": "42", "role": "admin", "data": {"x": [1, 2]}}, max_age=3600, now=NOW + 0.9)
    claims = codec.decode(token, now=NOW)
    assert claims["sub"] == "42" and claims["role"] == "admin" and claims["data"] == {"x": [1, 2]}
    assert claims["iat"] == int(NOW) and claims["exp"] == int(NOW) + 3600
    assert isinstance(claims["iat"], int) and isinstance(claims["exp"], int)
    assert len(claims["jti"]) == 36 and claims["jti"].count("-") == 4


def test_encode_keeps_a_jti_the_caller_chose(codec: JWECodec) -> None:
    assert codec.decode(codec.encode({"jti": "sess-1"}, max_age=60, now=NOW), now=NOW)["jti"] == "sess-1"


def test_encode_overrides_caller_iat_and_exp(codec: JWECodec) -> None:
    claims = codec.decode(codec.encode({"iat": 1, "exp": 2}, max_age=60, now=NOW), now=NOW)
    assert (claims["iat"], claims["exp"]) == (int(NOW), int(NOW) + 60)


def test_encoding_twice_gives_different_tokens(codec: JWECodec) -> None:
    assert codec.encode({"jti": "x"}, max_age=60, now=NOW) != codec.encode({"jti": "x"}, max_age=60, now=NOW)


def test_token_is_compact_jwe_with_empty_key_segment_and_authjs_header(codec: JWECodec) -> None:
    token = codec.encode({"sub": "1"}, max_age=60, now=NOW)
    header, key, iv, ct, tag = token.split(".")
    assert key == ""
    assert json.loads(b64url_decode(header)) == {"alg": "dir", "enc": "A256CBC-HS512", "kid": codec.kids[0]}
    assert len(b64url_decode(iv)) == 16 and len(b64url_decode(tag)) == 32 and len(b64url_decode(ct)) % 16 == 0


def test_token_is_valid_until_exp_and_expired_at_exp(codec: JWECodec) -> None:
    token = codec.encode({"sub": "1"}, max_age=60, now=NOW)
    assert codec.decode(token, now=NOW + 59.9)["sub"] == "1"
    with pytest.raises(SessionExpired) as info:
        codec.decode(token, now=NOW + 60)
    assert info.value.expired_at == int(NOW) + 60 and info.value.reason == "max_age"
    assert codec.decode(token, now=NOW + 60, leeway=15)["sub"] == "1"


def test_token_issued_in_the_future_beyond_leeway_is_refused(codec: JWECodec) -> None:
    token = codec.encode({"sub": "1"}, max_age=600, now=NOW + 60)
    with pytest.raises(InvalidToken):
        codec.decode(token, now=NOW)
    assert codec.decode(token, now=NOW, leeway=60)["sub"] == "1"


def test_module_level_encode_decode_match_authjs_shape() -> None:
    token = encode({"sub": "7"}, secret=SECRET, salt=SALT, now=NOW)
    claims = decode(token, secret=[SECRET], salt=SALT, now=NOW)
    assert claims["exp"] - claims["iat"] == 30 * 86400


def test_unicode_claims_round_trip(codec: JWECodec) -> None:
    claims = codec.decode(codec.encode({"name": "Zoë 🔑", "k": "\u2028"}, max_age=60, now=NOW), now=NOW)
    assert claims["name"] == "Zoë 🔑" and claims["k"] == "\u2028"


def test_encode_refuses_claims_that_would_exceed_the_size_limit(codec: JWECodec) -> None:
    with pytest.raises(ValueError, match="limit"):
        codec.encode({"blob": "x" * MAX_TOKEN_BYTES}, max_age=60, now=NOW)


def test_encode_refuses_non_finite_numbers(codec: JWECodec) -> None:
    with pytest.raises(ValueError):
        codec.encode({"score": float("nan")}, max_age=60, now=NOW)


@pytest.mark.parametrize("secrets", [[], "", [""], [SECRET, ""]])
def test_codec_without_a_usable_secret_is_a_config_error(secrets: Any) -> None:
    with pytest.raises(ConfigError):
        JWECodec(secrets, SALT)


def test_codec_repr_shows_no_secret() -> None:
    assert SECRET not in repr(JWECodec([SECRET, OLD_SECRET], SALT))


# -- rotation ----------------------------------------------------------------------------------


def test_rotation_token_from_old_secret_decodes_with_new_secret_list_and_reports_its_index() -> None:
    old = JWECodec(OLD_SECRET, SALT).encode({"sub": "1"}, max_age=60, now=NOW)
    rotated = JWECodec([SECRET, OLD_SECRET], SALT)
    claims, index = rotated.decode_verbose(old, now=NOW)
    assert claims["sub"] == "1" and index == 1
    new = rotated.encode({"sub": "2"}, max_age=60, now=NOW)
    assert rotated.decode_verbose(new, now=NOW)[1] == 0
    with pytest.raises(InvalidToken):
        JWECodec(OLD_SECRET, SALT).decode(new, now=NOW)


def test_rotation_after_the_old_secret_is_dropped_rejects_its_tokens() -> None:
    old = JWECodec(OLD_SECRET, SALT).encode({"sub": "1"}, max_age=60, now=NOW)
    with pytest.raises(InvalidToken):
        JWECodec([SECRET], SALT).decode(old, now=NOW)


def test_token_without_kid_is_tried_against_every_secret_in_order() -> None:
    plaintext = json.dumps({"sub": "1", "exp": NOW + 60}).encode()
    token = seal_v5(header_for(kid=None), plaintext, secret=OLD_SECRET)
    assert JWECodec([SECRET, OLD_SECRET], SALT).decode_verbose(token, now=NOW) == (
        {"sub": "1", "exp": NOW + 60},
        1,
    )


def test_token_with_an_unknown_kid_is_rejected_without_trying_keys() -> None:
    plaintext = json.dumps({"sub": "1", "exp": NOW + 60}).encode()
    token = seal_v5(header_for(kid="unknown-kid"), plaintext)
    with pytest.raises(InvalidToken):
        JWECodec(SECRET, SALT).decode(token, now=NOW)


def test_token_whose_kid_names_another_of_our_keys_is_rejected() -> None:
    plaintext = json.dumps({"sub": "1", "exp": NOW + 60}).encode()
    token = seal_v5(header_for(secret=OLD_SECRET), plaintext, secret=SECRET)
    with pytest.raises(InvalidToken):
        JWECodec([SECRET, OLD_SECRET], SALT).decode(token, now=NOW)


# -- strictness: headers -----------------------------------------------------------------------


def test_header_with_reordered_members_is_parsed_strictly_and_accepted() -> None:
    kid = JWECodec(SECRET, SALT).kids[0]
    header = json.dumps({"kid": kid, "enc": "A256CBC-HS512", "alg": "dir"}).encode()
    token = seal_v5(header, json.dumps({"exp": NOW + 60}).encode())
    assert JWECodec(SECRET, SALT).decode(token, now=NOW) == {"exp": NOW + 60}


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param({"alg": "A256KW"}, id="alg-other"),
        pytest.param({"alg": "none"}, id="alg-none"),
        pytest.param({"alg": None}, id="alg-missing"),
        pytest.param({"enc": "A256GCM"}, id="enc-gcm"),
        pytest.param({"enc": "A128CBC-HS256"}, id="enc-a128"),
        pytest.param({"enc": None}, id="enc-missing"),
        pytest.param({"zip": "DEF"}, id="zip"),
        pytest.param({"crit": ["exp"]}, id="crit"),
        pytest.param({"jku": "https://evil.example/jwks"}, id="jku"),
        pytest.param({"jwk": {"kty": "oct", "k": "AAAA"}}, id="jwk"),
        pytest.param({"x5u": "https://evil.example/cert"}, id="x5u"),
        pytest.param({"p2c": 100000000}, id="p2c"),
        pytest.param({"typ": "JWT"}, id="unexpected-typ"),
        pytest.param({"kid": 1}, id="kid-not-a-string"),
        pytest.param({"alg": ["dir"]}, id="alg-as-list"),
    ],
)
def test_token_with_a_header_outside_policy_is_rejected(extra: dict[str, Any]) -> None:
    token = seal_v5(header_for(**extra), json.dumps({"exp": NOW + 60}).encode())
    with pytest.raises(InvalidToken):
        JWECodec(SECRET, SALT).decode(token, now=NOW)


@pytest.mark.parametrize(
    "header",
    [
        pytest.param(b'{"alg":"dir","alg":"dir","enc":"A256CBC-HS512"}', id="duplicate-header-key"),
        pytest.param(b'{"alg":"dir","enc":"A256CBC-HS512","kid":{"a":{}}}', id="nested-header"),
        pytest.param(b"[]", id="header-array"),
        pytest.param(b"not json", id="header-not-json"),
        pytest.param(b'{"alg":"dir","enc":"A256CBC-HS512","x":"' + b"a" * 1000 + b'"}', id="header-too-big"),
    ],
)
def test_token_with_a_malformed_header_is_rejected(header: bytes) -> None:
    token = seal_v5(header, json.dumps({"exp": NOW + 60}).encode())
    with pytest.raises(InvalidToken):
        JWECodec(SECRET, SALT).decode(token, now=NOW)


# -- strictness: payloads ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "plaintext",
    [
        pytest.param(b'{"sub":"1","sub":"2","exp":1900000000}', id="duplicate-claim-keys"),
        pytest.param(b'{"sub":"1"}', id="no-exp"),
        pytest.param(b'{"exp":"1900000000"}', id="exp-string"),
        pytest.param(b'{"exp":true}', id="exp-bool"),
        pytest.param(b'{"exp":null}', id="exp-null"),
        pytest.param(b'{"exp":Infinity}', id="exp-infinity"),
        pytest.param(b'{"exp":NaN}', id="exp-nan"),
        pytest.param(b'{"exp":1900000000,"nbf":"0"}', id="nbf-string"),
        pytest.param(b'{"exp":1900000000,"iat":null}', id="iat-null"),
        pytest.param(b'{"exp":1900000000,"nbf":1900000000}', id="nbf-in-future"),
        pytest.param(b'{"exp":1900000000,"iat":1900000000}', id="iat-in-future"),
        pytest.param(b'{"exp":1900000000,"d":' + b"[" * 20 + b"]" * 20 + b"}", id="too-deep"),
        pytest.param(b"[1900000000]", id="payload-array"),
        pytest.param(b'{"exp":1900000000,"n":"\xff"}', id="payload-not-utf8"),
        pytest.param(b"", id="payload-empty"),
    ],
)
def test_token_with_a_bad_payload_is_rejected(plaintext: bytes) -> None:
    token = seal_v5(header_for(), plaintext)
    with pytest.raises(InvalidToken):
        JWECodec(SECRET, SALT).decode(token, now=NOW)


def test_token_with_duplicate_claim_keys_is_rejected() -> None:
    token = seal_v5(header_for(), b'{"sub":"user","sub":"admin","exp":1900000000}')
    with pytest.raises(InvalidToken):
        JWECodec(SECRET, SALT).decode(token, now=NOW)


# -- strictness: the compact serialization and tampering -----------------------------------------


def _flip(segment: str, index: int) -> str:
    ch = segment[index]
    return segment[:index] + ("A" if ch != "A" else "B") + segment[index + 1 :]


def _tamper(token: str, how: str) -> str:
    h, k, iv, ct, tag = token.split(".")
    table: dict[str, Callable[[], str]] = {
        "flip-header": lambda: ".".join([_flip(h, 5), k, iv, ct, tag]),
        "flip-iv": lambda: ".".join([h, k, _flip(iv, 0), ct, tag]),
        "flip-ciphertext-first": lambda: ".".join([h, k, iv, _flip(ct, 0), tag]),
        "flip-ciphertext-last-block": lambda: ".".join([h, k, iv, _flip(ct, -20), tag]),
        "flip-tag": lambda: ".".join([h, k, iv, ct, _flip(tag, 3)]),
        "truncate-tag": lambda: ".".join([h, k, iv, ct, b64url_encode(b64url_decode(tag)[:-1])]),
        "drop-tag": lambda: ".".join([h, k, iv, ct]),
        "empty-tag": lambda: ".".join([h, k, iv, ct, ""]),
        "extra-segment": lambda: token + ".AAAA",
        "encrypted-key-present": lambda: ".".join([h, "AAAA", iv, ct, tag]),
        "truncate-ciphertext-block": lambda: ".".join([h, k, iv, ct[:-22], tag]),
        "swap-iv-and-tag": lambda: ".".join([h, k, tag, ct, iv]),
        "padding": lambda: ".".join([h, k, iv + "==", ct, tag]),
        "whitespace": lambda: token + " ",
        "newline-inside": lambda: ".".join([h, k, iv, ct[:10] + "\n" + ct[10:], tag]),
        "standard-base64": lambda: ".".join([h, k, iv, ct.replace("-", "+").replace("_", "/"), tag]),
        "non-canonical-tag-tail": lambda: ".".join([h, k, iv, ct, tag[:-1] + chr(ord(tag[-1]) + 1)]),
        "empty": lambda: "",
        "dots-only": lambda: "....",
        "jws-shaped": lambda: ".".join([h, ct, tag]),
        "non-ascii": lambda: token.replace(token[10], "é", 1),
    }
    return table[how]()


TAMPERINGS = [
    "flip-header", "flip-iv", "flip-ciphertext-first", "flip-ciphertext-last-block", "flip-tag",
    "truncate-tag", "drop-tag", "empty-tag", "extra-segment", "encrypted-key-present",
    "truncate-ciphertext-block", "swap-iv-and-tag", "padding", "whitespace", "newline-inside",
    "standard-base64", "non-canonical-tag-tail", "empty", "dots-only", "jws-shaped", "non-ascii",
]  # fmt: skip


@pytest.mark.parametrize("how", TAMPERINGS)
def test_tampered_or_malformed_token_is_rejected(codec: JWECodec, how: str) -> None:
    token = codec.encode({"sub": "1", "role": "user", "pad": "x" * 40}, max_age=60, now=NOW)
    bad = _tamper(token, how)
    assert bad != token
    with pytest.raises(InvalidToken) as info:
        codec.decode(bad, now=NOW)
    assert str(info.value) == "the token is not valid (sign in again)"  # opaque: no detail, no token


def test_token_made_with_another_secret_is_rejected(codec: JWECodec) -> None:
    token = JWECodec(OLD_SECRET, SALT).encode({"sub": "1"}, max_age=60, now=NOW)
    with pytest.raises(InvalidToken):
        codec.decode(token, now=NOW)


def test_token_over_16_kb_is_rejected_before_any_crypto(
    codec: JWECodec, monkeypatch: pytest.MonkeyPatch
) -> None:
    import keyfob.tokens._authjs as authjs

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("crypto was attempted")

    monkeypatch.setattr(authjs, "_hmac_digest", boom)
    monkeypatch.setattr(authjs, "_JWE", boom)
    with pytest.raises(InvalidToken):
        codec.decode("A" * (MAX_TOKEN_BYTES + 1), now=NOW)


@pytest.mark.parametrize("token", [None, b"bytes", 42])
def test_non_string_token_is_rejected(codec: JWECodec, token: Any) -> None:
    with pytest.raises(InvalidToken):
        codec.decode(token, now=NOW)


# -- next-auth@4 -----------------------------------------------------------------------------


def test_v4_token_decodes_with_a_rotation_list() -> None:
    token = seal_v4(
        b'{"alg":"dir","enc":"A256GCM"}',
        json.dumps({"sub": "9", "exp": NOW + 60}).encode(),
        secret=OLD_SECRET,
    )
    assert decode_v4(token, secret=[SECRET, OLD_SECRET], now=NOW) == {"sub": "9", "exp": NOW + 60}
    with pytest.raises(InvalidToken):
        decode_v4(token, secret=SECRET, now=NOW)


@pytest.mark.parametrize(
    "header",
    [
        pytest.param(b'{"alg":"dir","enc":"A256CBC-HS512"}', id="enc-cbc"),
        pytest.param(b'{"alg":"dir","enc":"A256GCM","kid":"x"}', id="kid"),
        pytest.param(b'{"alg":"dir","enc":"A256GCM","zip":"DEF"}', id="zip"),
        pytest.param(b'{"alg":"A256KW","enc":"A256GCM"}', id="alg"),
        pytest.param(b'{"alg":"dir","enc":"A256GCM","enc":"A256GCM"}', id="duplicate"),
    ],
)
def test_v4_token_with_a_header_outside_policy_is_rejected(header: bytes) -> None:
    token = seal_v4(header, json.dumps({"exp": NOW + 60}).encode())
    with pytest.raises(InvalidToken):
        decode_v4(token, secret=SECRET, now=NOW)


def test_v4_header_with_reordered_members_is_accepted() -> None:
    token = seal_v4(b'{"enc":"A256GCM","alg":"dir"}', json.dumps({"exp": NOW + 60}).encode())
    assert decode_v4(token, secret=SECRET, now=NOW) == {"exp": NOW + 60}


@pytest.mark.parametrize("how", ["flip-iv", "flip-ciphertext-first", "flip-tag", "truncate-tag", "padding"])
def test_v4_tampered_token_is_rejected(how: str) -> None:
    token = seal_v4(b'{"alg":"dir","enc":"A256GCM"}', json.dumps({"exp": NOW + 60, "pad": "x" * 40}).encode())
    with pytest.raises(InvalidToken):
        decode_v4(_tamper(token, how), secret=SECRET, now=NOW)


def test_v4_token_without_exp_or_with_duplicate_keys_is_rejected() -> None:
    for plaintext in (b'{"sub":"1"}', b'{"exp":1900000000,"sub":"1","sub":"2"}'):
        with pytest.raises(InvalidToken):
            decode_v4(seal_v4(b'{"alg":"dir","enc":"A256GCM"}', plaintext), secret=SECRET, now=NOW)


# -- the decoder's edges (each one a mutant tools/mutate.py showed surviving, issue 9) --------------------


def padded_header(members: bytes, b64_chars: int) -> bytes:
    """The JSON object ``{members}`` with spaces before its ``}``, ``b64_chars`` long in base64url."""
    assert b64_chars % 4 != 1
    n = b64_chars * 3 // 4
    header = b"{" + members + b" " * (n - len(members) - 2) + b"}"
    assert len(b64url_encode(header)) == b64_chars
    return header


def test_codec_salt_is_the_cookie_name_its_keys_were_derived_for(codec: JWECodec) -> None:
    assert codec.salt == SALT


def test_header_without_kid_in_another_member_order_is_tried_against_every_secret() -> None:
    """Another producer's kid-less header (not byte-identical to ours) still gets every key, in order."""
    plaintext = json.dumps({"sub": "7", "exp": NOW + 60}).encode()
    token = seal_v5(b'{"enc":"A256CBC-HS512","alg":"dir"}', plaintext, secret=OLD_SECRET)
    claims, index = JWECodec([SECRET, OLD_SECRET], SALT).decode_verbose(token, now=NOW)
    assert claims == {"sub": "7", "exp": NOW + 60} and index == 1


def test_header_of_exactly_the_header_limit_is_accepted_and_a_longer_one_refused(codec: JWECodec) -> None:
    members = header_for()[1:-1]
    payload = json.dumps({"exp": NOW + 60}).encode()
    at_limit = seal_v5(padded_header(members, MAX_HEADER_CHARS), payload)
    assert codec.decode(at_limit, now=NOW) == {"exp": NOW + 60}
    with pytest.raises(InvalidToken):
        codec.decode(seal_v5(padded_header(members, MAX_HEADER_CHARS + 3), payload), now=NOW)


def test_token_of_exactly_the_size_limit_decodes(codec: JWECodec) -> None:
    """16 KiB is the largest token accepted, not the first refused (the header's padding hits it exactly)."""
    members = header_for()[1:-1]
    for pad in range(15_000, 12_000, -1):
        plaintext = json.dumps({"exp": NOW + 60, "pad": "x" * pad}).encode()
        ct_chars = len(b64url_encode(b"\0" * (len(plaintext) // 16 * 16 + 16)))
        header_chars = MAX_TOKEN_BYTES - ct_chars - 69  # "..", 22 (iv), ".", ".", 43 (tag)
        if header_chars % 4 != 1 and len(b64url_encode(header_for())) <= header_chars <= MAX_HEADER_CHARS:
            break
    token = seal_v5(padded_header(members, header_chars), plaintext)
    assert len(token) == MAX_TOKEN_BYTES
    assert codec.decode(token, now=NOW)["pad"] == "x" * pad


def test_token_with_a_short_iv_under_a_valid_tag_is_an_invalid_token(codec: JWECodec) -> None:
    """A 96-bit IV (GCM's size) authenticated by the right key is refused, never handed to CBC (a 500)."""
    key = derive_v5_key(SECRET, SALT)
    header_b64 = b64url_encode(header_for())
    iv, ct = os.urandom(12), os.urandom(32)
    aad = header_b64.encode()
    tag = hmac.new(key[:32], aad + iv + ct + (len(aad) * 8).to_bytes(8, "big"), hashlib.sha512).digest()[:32]
    token = ".".join([header_b64, "", b64url_encode(iv), b64url_encode(ct), b64url_encode(tag)])
    with pytest.raises(InvalidToken):
        codec.decode(token, now=NOW)


@pytest.mark.parametrize("token", [None, b"bytes", 42])
def test_v4_non_string_token_is_rejected(token: Any) -> None:
    with pytest.raises(InvalidToken):
        decode_v4(token, secret=SECRET, now=NOW)


def test_v4_header_of_exactly_the_header_limit_is_accepted_and_a_longer_one_refused() -> None:
    members = b'"alg":"dir","enc":"A256GCM"'
    payload = json.dumps({"exp": NOW + 60}).encode()
    assert decode_v4(seal_v4(padded_header(members, MAX_HEADER_CHARS), payload), secret=SECRET, now=NOW) == {
        "exp": NOW + 60}
    with pytest.raises(InvalidToken):
        decode_v4(seal_v4(padded_header(members, MAX_HEADER_CHARS + 3), payload), secret=SECRET, now=NOW)


def test_v4_token_with_a_128_bit_iv_is_refused_even_when_it_decrypts() -> None:
    """next-auth@4 writes 96-bit IVs; AES-GCM would take a longer one, the decoder does not."""
    token = seal_v4(b'{"alg":"dir","enc":"A256GCM"}', json.dumps({"exp": NOW + 60}).encode(), iv_bytes=16)
    with pytest.raises(InvalidToken):
        decode_v4(token, secret=SECRET, now=NOW)


def test_v4_token_of_exactly_the_size_limit_decodes() -> None:
    header = b'{"alg":"dir","enc":"A256GCM"}'
    for pad in range(13_000, 11_000, -1):
        plaintext = json.dumps({"exp": NOW + 60, "pad": "x" * pad}).encode()
        if len(seal_v4(header, plaintext)) == MAX_TOKEN_BYTES:  # the length does not depend on the key
            break
    token = seal_v4(header, plaintext)
    assert len(token) == MAX_TOKEN_BYTES
    assert decode_v4(token, secret=SECRET, now=NOW)["pad"] == "x" * pad

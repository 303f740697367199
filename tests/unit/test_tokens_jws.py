"""keyfob.tokens JWS: HS256/EdDSA signing and verification, key rings with kid rotation, JWKS."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from typing import Any

import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from jwt.types import Options

from keyfob.errors import ConfigError, InvalidToken, SessionExpired
from keyfob.tokens import MAX_TOKEN_BYTES, JWSKey, JWSSigner, JWSVerifier, KeyRing, jwks_document
from keyfob.tokens._parse import MAX_HEADER_CHARS, b64url_decode, b64url_encode

NOW = 1_800_000_000.0
SECRET = "kf-test-secret-0123456789abcdef0123456789abcdef0123456789ab"
OLD_SECRET = "kf-test-old-secret-fedcba9876543210fedcba9876543210fedcba98"
INFO = "keyfob access token"
TYP = "at+jwt"
# PyJWT checks times against the real clock; these tests run at NOW.
NO_TIME_CHECKS: Options = {"verify_exp": False, "verify_iat": False}


def claims(**extra: Any) -> dict[str, Any]:
    return {"sub": "user-1", "sid": "s-1", "iat": int(NOW), "exp": int(NOW) + 600, **extra}


def forge_hs256(header: dict[str, Any] | bytes, payload: dict[str, Any] | bytes, key: bytes) -> str:
    """A JWS with any header/payload, HMAC-signed by hand (to test the verifier, not the signer)."""
    h = header if isinstance(header, bytes) else json.dumps(header).encode()
    p = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    signing_input = f"{b64url_encode(h)}.{b64url_encode(p)}"
    sig = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url_encode(sig)}"


def forge_eddsa(header: dict[str, Any], payload: dict[str, Any], key: Ed25519PrivateKey) -> str:
    signing_input = (
        f"{b64url_encode(json.dumps(header).encode())}.{b64url_encode(json.dumps(payload).encode())}"
    )
    return f"{signing_input}.{b64url_encode(key.sign(signing_input.encode()))}"


@pytest.fixture
def hs_ring() -> KeyRing:
    return KeyRing.from_secrets([SECRET], info=INFO)


@pytest.fixture
def ed_key() -> JWSKey:
    return JWSKey.generate_ed25519()


@pytest.fixture
def ed_ring(ed_key: JWSKey) -> KeyRing:
    return KeyRing([ed_key])


def hs_secret(ring: KeyRing) -> bytes:
    secret = ring.current.secret
    assert secret is not None
    return secret


# -- round trips ---------------------------------------------------------------------------------


def test_hs256_token_signed_by_the_ring_verifies(hs_ring: KeyRing) -> None:
    token = JWSSigner(hs_ring).sign(claims(role="admin"), typ=TYP)
    assert JWSVerifier(hs_ring, typ=TYP).verify(token, now=NOW) == claims(role="admin")


def test_eddsa_token_signed_by_the_ring_verifies_with_only_the_public_key(
    ed_ring: KeyRing, ed_key: JWSKey
) -> None:
    token = JWSSigner(ed_ring).sign(claims(), typ=TYP)
    public_ring = KeyRing([JWSKey.from_jwk(ed_key.to_public_jwk())])
    assert JWSVerifier(public_ring, typ=TYP, algorithms=("EdDSA",)).verify(token, now=NOW) == claims()


def test_header_is_alg_kid_typ(hs_ring: KeyRing) -> None:
    token = JWSSigner(hs_ring).sign(claims(), typ=TYP)
    header = json.loads(b64url_decode(token.split(".")[0]))
    assert header == {"alg": "HS256", "kid": hs_ring.current.kid, "typ": TYP}


def test_hs256_token_is_standard_jws_that_pyjwt_verifies(hs_ring: KeyRing) -> None:
    token = JWSSigner(hs_ring).sign(claims(), typ=TYP)
    decoded = pyjwt.decode(token, hs_secret(hs_ring), algorithms=["HS256"], options=NO_TIME_CHECKS)
    assert decoded == claims()


def test_pyjwt_token_with_our_header_members_verifies(hs_ring: KeyRing) -> None:
    token = pyjwt.encode(
        claims(), hs_secret(hs_ring), algorithm="HS256", headers={"kid": hs_ring.current.kid, "typ": TYP}
    )
    assert JWSVerifier(hs_ring, typ=TYP).verify(token, now=NOW) == claims()


def test_eddsa_token_is_standard_jws_that_pyjwt_verifies(ed_ring: KeyRing, ed_key: JWSKey) -> None:
    token = JWSSigner(ed_ring).sign(claims(), typ=TYP)
    assert ed_key.public_key is not None
    decoded = pyjwt.decode(token, ed_key.public_key, algorithms=["EdDSA"], options=NO_TIME_CHECKS)
    assert decoded == claims()


def test_signer_refuses_claims_without_exp(hs_ring: KeyRing) -> None:
    with pytest.raises(ValueError, match="exp"):
        JWSSigner(hs_ring).sign({"sub": "1"}, typ=TYP)


def test_signer_refuses_claims_over_the_size_limit(hs_ring: KeyRing) -> None:
    with pytest.raises(ValueError, match="limit"):
        JWSSigner(hs_ring).sign(claims(blob="x" * MAX_TOKEN_BYTES), typ=TYP)


def test_signer_needs_a_key_that_can_sign(ed_key: JWSKey) -> None:
    with pytest.raises(ConfigError):
        JWSSigner(KeyRing([JWSKey.from_jwk(ed_key.to_public_jwk())]))


# -- expiry and time claims ------------------------------------------------------------------------


def test_token_is_valid_before_exp_and_expired_from_exp(hs_ring: KeyRing) -> None:
    token = JWSSigner(hs_ring).sign(claims(), typ=TYP)
    verifier = JWSVerifier(hs_ring, typ=TYP)
    assert verifier.verify(token, now=NOW + 599)
    with pytest.raises(SessionExpired) as info:
        verifier.verify(token, now=NOW + 600)
    assert info.value.expired_at == int(NOW) + 600
    assert verifier.verify(token, now=NOW + 600, leeway=5)


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param({"sub": "1"}, id="no-exp"),
        pytest.param({"exp": str(int(NOW) + 60)}, id="exp-string"),
        pytest.param({"exp": True}, id="exp-bool"),
        pytest.param({"exp": None}, id="exp-null"),
        pytest.param({"exp": NOW + 60, "nbf": NOW + 30}, id="nbf-future"),
        pytest.param({"exp": NOW + 60, "iat": NOW + 30}, id="iat-future"),
        pytest.param(b'{"exp":1900000000,"exp":1900000001}', id="duplicate-exp"),
        pytest.param(b'{"exp":Infinity}', id="exp-infinity"),
        pytest.param(b'{"exp":1900000000,"sub":"a","sub":"b"}', id="duplicate-sub"),
        pytest.param(b'{"exp":1900000000,"x":' + b"[" * 10 + b"]" * 10 + b"}", id="too-deep"),
    ],
)
def test_token_with_bad_claims_is_rejected(hs_ring: KeyRing, payload: dict[str, Any] | bytes) -> None:
    header = {"alg": "HS256", "kid": hs_ring.current.kid, "typ": TYP}
    with pytest.raises(InvalidToken):
        JWSVerifier(hs_ring, typ=TYP).verify(forge_hs256(header, payload, hs_secret(hs_ring)), now=NOW)


# -- algorithm confusion and header policy --------------------------------------------------------


def test_hs256_token_is_rejected_where_eddsa_is_expected(hs_ring: KeyRing, ed_ring: KeyRing) -> None:
    token = JWSSigner(hs_ring).sign(claims(), typ=TYP)
    both = KeyRing([*ed_ring, *hs_ring])
    with pytest.raises(InvalidToken):
        JWSVerifier(both, typ=TYP, algorithms=("EdDSA",)).verify(token, now=NOW)


def test_eddsa_token_is_rejected_where_hs256_is_expected(hs_ring: KeyRing, ed_ring: KeyRing) -> None:
    token = JWSSigner(ed_ring).sign(claims(), typ=TYP)
    both = KeyRing([*hs_ring, *ed_ring])
    with pytest.raises(InvalidToken):
        JWSVerifier(both, typ=TYP, algorithms=("HS256",)).verify(token, now=NOW)


def test_hs256_header_naming_an_eddsa_kid_cannot_use_the_public_key_as_hmac_secret(ed_key: JWSKey) -> None:
    public_jwk = ed_key.to_public_jwk()
    ring = KeyRing([JWSKey.from_jwk(public_jwk)])
    header = {"alg": "HS256", "kid": ed_key.kid, "typ": TYP}
    for secret in (b64url_decode(public_jwk["x"]), json.dumps(public_jwk).encode(), public_jwk["x"].encode()):
        token = forge_hs256(header, claims(), secret)
        with pytest.raises(InvalidToken):
            JWSVerifier(ring, typ=TYP, algorithms=("HS256", "EdDSA")).verify(token, now=NOW)


def test_eddsa_header_naming_an_hs256_kid_is_rejected(hs_ring: KeyRing) -> None:
    other = Ed25519PrivateKey.generate()
    token = forge_eddsa({"alg": "EdDSA", "kid": hs_ring.current.kid, "typ": TYP}, claims(), other)
    with pytest.raises(InvalidToken):
        JWSVerifier(hs_ring, typ=TYP, algorithms=("HS256", "EdDSA")).verify(token, now=NOW)


@pytest.mark.parametrize(
    "alg", ["none", "None", "NONE", "", "HS384", "HS512", "RS256", "ES256", "Ed25519", None, 1]
)
def test_token_with_an_algorithm_outside_the_allow_list_is_rejected(hs_ring: KeyRing, alg: Any) -> None:
    header = {"alg": alg, "kid": hs_ring.current.kid, "typ": TYP}
    token = forge_hs256(header, claims(), hs_secret(hs_ring))
    with pytest.raises(InvalidToken):
        JWSVerifier(hs_ring, typ=TYP, algorithms=("HS256", "EdDSA")).verify(token, now=NOW)


def test_unsigned_alg_none_token_is_rejected(hs_ring: KeyRing) -> None:
    header = b64url_encode(json.dumps({"alg": "none", "kid": hs_ring.current.kid, "typ": TYP}).encode())
    payload = b64url_encode(json.dumps(claims()).encode())
    for token in (f"{header}.{payload}.", f"{header}.{payload}"):
        with pytest.raises(InvalidToken):
            JWSVerifier(hs_ring, typ=TYP).verify(token, now=NOW)


def test_token_with_an_unknown_kid_is_rejected(hs_ring: KeyRing) -> None:
    token = forge_hs256({"alg": "HS256", "kid": "unknown", "typ": TYP}, claims(), hs_secret(hs_ring))
    with pytest.raises(InvalidToken):
        JWSVerifier(hs_ring, typ=TYP).verify(token, now=NOW)


def test_token_without_a_kid_is_rejected(hs_ring: KeyRing) -> None:
    token = forge_hs256({"alg": "HS256", "typ": TYP}, claims(), hs_secret(hs_ring))
    with pytest.raises(InvalidToken):
        JWSVerifier(hs_ring, typ=TYP).verify(token, now=NOW)


@pytest.mark.parametrize("typ", ["JWT", "refresh+jwt", "AT+JWT", "application/at+jwt", None, ""])
def test_token_with_another_typ_is_rejected(hs_ring: KeyRing, typ: str | None) -> None:
    header: dict[str, Any] = {"alg": "HS256", "kid": hs_ring.current.kid}
    if typ is not None:
        header["typ"] = typ
    token = forge_hs256(header, claims(), hs_secret(hs_ring))
    with pytest.raises(InvalidToken):
        JWSVerifier(hs_ring, typ=TYP).verify(token, now=NOW)


def test_token_signed_for_one_typ_is_rejected_by_a_verifier_of_another(hs_ring: KeyRing) -> None:
    token = JWSSigner(hs_ring).sign(claims(), typ="refresh+jwt")
    with pytest.raises(InvalidToken):
        JWSVerifier(hs_ring, typ=TYP).verify(token, now=NOW)


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param({"crit": ["exp"]}, id="crit"),
        pytest.param({"jku": "https://evil.example/jwks"}, id="jku"),
        pytest.param({"jwk": {"kty": "oct", "k": "AAAA"}}, id="jwk"),
        pytest.param({"x5u": "https://evil.example/x"}, id="x5u"),
        pytest.param({"zip": "DEF"}, id="zip"),
        pytest.param({"b64": False}, id="b64"),
    ],
)
def test_token_with_extra_header_members_is_rejected(hs_ring: KeyRing, extra: dict[str, Any]) -> None:
    header = {"alg": "HS256", "kid": hs_ring.current.kid, "typ": TYP, **extra}
    with pytest.raises(InvalidToken):
        JWSVerifier(hs_ring, typ=TYP).verify(forge_hs256(header, claims(), hs_secret(hs_ring)), now=NOW)


def test_token_with_duplicate_header_keys_is_rejected(hs_ring: KeyRing) -> None:
    kid = hs_ring.current.kid
    header = f'{{"alg":"none","alg":"HS256","kid":"{kid}","typ":"{TYP}"}}'.encode()
    with pytest.raises(InvalidToken):
        JWSVerifier(hs_ring, typ=TYP).verify(forge_hs256(header, claims(), hs_secret(hs_ring)), now=NOW)


# -- audience --------------------------------------------------------------------------------------


def test_audience_must_match_when_configured(hs_ring: KeyRing) -> None:
    signer = JWSSigner(hs_ring)
    verifier = JWSVerifier(hs_ring, typ=TYP, audience="api")
    assert verifier.verify(signer.sign(claims(aud="api"), typ=TYP), now=NOW)["aud"] == "api"
    assert verifier.verify(signer.sign(claims(aud=["other", "api"]), typ=TYP), now=NOW)
    for aud in ("other", ["other"], None, 1, ""):
        with pytest.raises(InvalidToken):
            verifier.verify(signer.sign(claims(aud=aud), typ=TYP), now=NOW)
    with pytest.raises(InvalidToken):
        verifier.verify(signer.sign(claims(), typ=TYP), now=NOW)


def test_token_with_an_audience_is_rejected_by_a_verifier_without_one(hs_ring: KeyRing) -> None:
    token = JWSSigner(hs_ring).sign(claims(aud="api"), typ=TYP)
    with pytest.raises(InvalidToken):
        JWSVerifier(hs_ring, typ=TYP).verify(token, now=NOW)


# -- tampering -------------------------------------------------------------------------------------


def _tamper(token: str, how: str) -> str:
    h, p, s = token.split(".")
    payload = json.loads(b64url_decode(p))
    table: dict[str, Callable[[], str]] = {
        "raise-role": lambda: f"{h}.{b64url_encode(json.dumps({**payload, 'role': 'admin'}).encode())}.{s}",
        "flip-signature": lambda: f"{h}.{p}.{s[:5]}{'A' if s[5] != 'A' else 'B'}{s[6:]}",
        "truncate-signature": lambda: f"{h}.{p}.{b64url_encode(b64url_decode(s)[:-1])}",
        "empty-signature": lambda: f"{h}.{p}.",
        "drop-signature": lambda: f"{h}.{p}",
        "extra-segment": lambda: f"{token}.{s}",
        "padding": lambda: f"{h}.{p}.{s}=",
        "whitespace": lambda: f" {token}",
        "standard-base64": lambda: (
            f"{h}.{p}.{s.replace('-', '+').replace('_', '/')}"
            if ("-" in s or "_" in s)
            else f"{h}.{p}.{s[:-1]}+"
        ),
        "non-canonical-tail": lambda: f"{h}.{p}.{s[:-1]}{chr(ord(s[-1]) + 1)}",
        "swap-header-payload": lambda: f"{p}.{h}.{s}",
        "non-ascii": lambda: f"{h}.{p}.{s[:-1]}é",
    }
    return table[how]()


TAMPERINGS = [
    "raise-role", "flip-signature", "truncate-signature", "empty-signature", "drop-signature",
    "extra-segment", "padding", "whitespace", "standard-base64", "non-canonical-tail",
    "swap-header-payload", "non-ascii",
]  # fmt: skip


@pytest.mark.parametrize("how", TAMPERINGS)
@pytest.mark.parametrize("alg", ["HS256", "EdDSA"])
def test_tampered_token_is_rejected(hs_ring: KeyRing, ed_ring: KeyRing, alg: str, how: str) -> None:
    ring = hs_ring if alg == "HS256" else ed_ring
    token = JWSSigner(ring).sign(claims(role="user"), typ=TYP)
    bad = _tamper(token, how)
    assert bad != token
    with pytest.raises(InvalidToken) as info:
        JWSVerifier(ring, typ=TYP, algorithms=(alg,)).verify(bad, now=NOW)  # type: ignore[arg-type]
    assert str(info.value) == "the token is not valid (sign in again)"


def test_token_over_16_kb_is_rejected(hs_ring: KeyRing) -> None:
    with pytest.raises(InvalidToken):
        JWSVerifier(hs_ring, typ=TYP).verify("a" * (MAX_TOKEN_BYTES + 1), now=NOW)


# -- key rings and rotation ------------------------------------------------------------------------


def test_rotation_new_ring_verifies_tokens_of_the_old_key_and_signs_with_the_new() -> None:
    old_ring = KeyRing.from_secrets(OLD_SECRET, info=INFO)
    rotated = KeyRing.from_secrets([SECRET, OLD_SECRET], info=INFO)
    old_token = JWSSigner(old_ring).sign(claims(), typ=TYP)
    assert JWSVerifier(rotated, typ=TYP).verify(old_token, now=NOW) == claims()
    new_token = JWSSigner(rotated).sign(claims(), typ=TYP)
    assert (
        json.loads(b64url_decode(new_token.split(".")[0]))["kid"]
        == rotated.current.kid
        != old_ring.current.kid
    )
    with pytest.raises(InvalidToken):
        JWSVerifier(old_ring, typ=TYP).verify(new_token, now=NOW)


def test_mixed_ring_verifies_both_algorithms_when_both_are_allowed(
    hs_ring: KeyRing, ed_ring: KeyRing
) -> None:
    ring = KeyRing([*ed_ring, *hs_ring])
    verifier = JWSVerifier(ring, typ=TYP, algorithms=("EdDSA", "HS256"))
    assert verifier.verify(JWSSigner(ed_ring).sign(claims(), typ=TYP), now=NOW)
    assert verifier.verify(JWSSigner(hs_ring).sign(claims(), typ=TYP), now=NOW)


def test_ring_from_secrets_is_deterministic_and_purpose_bound() -> None:
    a = KeyRing.from_secrets(SECRET, info=INFO)
    assert a.current.secret == KeyRing.from_secrets([SECRET], info=INFO).current.secret
    assert a.current.secret != KeyRing.from_secrets(SECRET, info="keyfob csrf").current.secret
    assert len(hs_secret(a)) == 32


def test_ring_find_and_order(hs_ring: KeyRing, ed_key: JWSKey) -> None:
    ring = KeyRing([ed_key, *hs_ring])
    assert ring.current is ed_key and len(ring) == 2 and list(ring) == [ed_key, hs_ring.current]
    assert ring.find(hs_ring.current.kid) is hs_ring.current
    assert ring.find("nope") is None


@pytest.mark.parametrize("bad", [[], [""], ""])
def test_ring_without_keys_or_secrets_is_a_config_error(bad: Any) -> None:
    with pytest.raises(ConfigError):
        KeyRing.from_secrets(bad, info=INFO)
    if isinstance(bad, list) and not bad:
        with pytest.raises(ConfigError):
            KeyRing(bad)


def test_ring_with_duplicate_kids_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        KeyRing.from_secrets([SECRET, SECRET], info=INFO)


def test_verifier_with_no_usable_algorithm_is_a_config_error(hs_ring: KeyRing) -> None:
    with pytest.raises(ConfigError):
        JWSVerifier(hs_ring, typ=TYP, algorithms=("none",))  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        JWSVerifier(hs_ring, typ=TYP, algorithms=("EdDSA",))


# -- keys, JWKs and JWKS ---------------------------------------------------------------------------


def test_hs256_key_kid_is_the_rfc7638_thumbprint() -> None:
    secret = bytes(range(32))
    expected = b64url_encode(
        hashlib.sha256(f'{{"k":"{b64url_encode(secret)}","kty":"oct"}}'.encode()).digest()
    )
    assert JWSKey.hs256(secret).kid == expected
    assert JWSKey.hs256(secret, kid="mine").kid == "mine"


def test_ed25519_key_from_the_rfc8037_example_has_its_thumbprint_kid_and_signs() -> None:
    # RFC 8037 Appendix A.1 / A.3
    jwk = {
        "kty": "OKP",
        "crv": "Ed25519",
        "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo",
        "d": "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A",
    }
    key = JWSKey.from_private_jwk(jwk)
    assert key.kid == "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
    token = JWSSigner(KeyRing([key])).sign({"exp": NOW + 1}, typ=TYP)
    assert JWSVerifier(KeyRing([key]), typ=TYP, algorithms=("EdDSA",)).verify(token, now=NOW)


def test_key_repr_shows_no_key_material(ed_key: JWSKey, hs_ring: KeyRing) -> None:
    secret = hs_secret(hs_ring)
    assert b64url_encode(secret) not in repr(hs_ring) and repr(secret) not in repr(hs_ring)
    assert ed_key.to_private_jwk()["d"] not in repr(ed_key)


def test_public_jwk_has_the_jwks_shape(ed_key: JWSKey) -> None:
    jwk = ed_key.to_public_jwk()
    assert set(jwk) == {"kty", "crv", "x", "kid", "alg", "use"}
    assert (jwk["kty"], jwk["crv"], jwk["alg"], jwk["use"], jwk["kid"]) == (
        "OKP",
        "Ed25519",
        "EdDSA",
        "sig",
        ed_key.kid,
    )
    assert len(b64url_decode(jwk["x"])) == 32


def test_private_jwk_round_trips_and_signs(ed_key: JWSKey) -> None:
    restored = JWSKey.from_private_jwk(ed_key.to_private_jwk())
    assert restored.kid == ed_key.kid and restored.can_sign
    token = JWSSigner(KeyRing([restored])).sign(claims(), typ=TYP)
    assert JWSVerifier(KeyRing([ed_key]), typ=TYP, algorithms=("EdDSA",)).verify(token, now=NOW)


def test_hs256_private_jwk_round_trips(hs_ring: KeyRing) -> None:
    jwk = hs_ring.current.to_private_jwk()
    assert JWSKey.from_private_jwk(jwk) == hs_ring.current
    assert JWSKey.from_jwk(jwk) == hs_ring.current


def test_public_jwk_loads_as_verify_only(ed_key: JWSKey) -> None:
    assert not JWSKey.from_jwk(ed_key.to_private_jwk()).can_sign  # from_jwk takes the public half only
    with pytest.raises(ConfigError):
        JWSKey.from_jwk(ed_key.to_public_jwk()).to_private_jwk()


def test_hs256_key_has_no_public_jwk(hs_ring: KeyRing) -> None:
    with pytest.raises(ConfigError):
        hs_ring.current.to_public_jwk()


@pytest.mark.parametrize(
    "jwk",
    [
        pytest.param({"kty": "RSA", "n": "AQAB", "e": "AQAB"}, id="rsa"),
        pytest.param(
            {"kty": "OKP", "crv": "X25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}, id="x25519"
        ),
        pytest.param({"kty": "OKP", "crv": "Ed25519", "x": "AAAA"}, id="short-x"),
        pytest.param({"kty": "OKP", "crv": "Ed25519"}, id="no-x"),
        pytest.param({"kty": "oct", "k": "AAAA"}, id="short-oct"),
        pytest.param({"kty": "oct", "k": "A" * 43 + "="}, id="padded-oct"),
        pytest.param({"kty": "oct", "k": "A" * 43, "alg": "HS512"}, id="oct-other-alg"),
        pytest.param(
            {
                "kty": "OKP",
                "crv": "Ed25519",
                "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo",
                "alg": "HS256",
            },
            id="okp-alg-hs256",
        ),
        pytest.param({"kty": "oct", "k": "A" * 43, "kid": 5}, id="kid-not-string"),
    ],
)
def test_unsupported_or_malformed_jwk_is_a_config_error(jwk: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        JWSKey.from_jwk(jwk)


def test_private_jwk_whose_d_and_x_disagree_is_a_config_error(ed_key: JWSKey) -> None:
    jwk = ed_key.to_private_jwk()
    jwk["x"] = JWSKey.generate_ed25519().to_public_jwk()["x"]
    with pytest.raises(ConfigError):
        JWSKey.from_private_jwk(jwk)


def test_jwks_document_lists_only_public_eddsa_keys(hs_ring: KeyRing) -> None:
    a, b = JWSKey.generate_ed25519(), JWSKey.generate_ed25519()
    doc = jwks_document(KeyRing([a, *hs_ring, b]))
    assert doc == {"keys": [a.to_public_jwk(), b.to_public_jwk()]}
    assert all("d" not in k and "k" not in k for k in doc["keys"])
    json.dumps(doc)


def test_jwks_document_keys_verify_tokens_via_pyjwt(ed_key: JWSKey) -> None:
    token = JWSSigner(KeyRing([ed_key])).sign(claims(), typ=TYP)
    jwk = pyjwt.PyJWK(jwks_document(KeyRing([ed_key]))["keys"][0])
    assert pyjwt.decode(token, jwk, algorithms=["EdDSA"], options=NO_TIME_CHECKS) == claims()


def test_ed25519_ring_from_secrets_is_deterministic_and_signs_eddsa() -> None:
    a = KeyRing.from_secrets_ed25519([SECRET, OLD_SECRET], info="keyfob access token EdDSA")
    b = KeyRing.from_secrets_ed25519([SECRET, OLD_SECRET], info="keyfob access token EdDSA")
    assert [k.kid for k in a] == [k.kid for k in b] and len(a) == 2
    assert jwks_document(a) == jwks_document(b)
    assert a.current.alg == "EdDSA" and a.current.can_sign
    other = KeyRing.from_secrets_ed25519(SECRET, info="another purpose")
    assert other.current.kid != a.current.kid
    token = JWSSigner(b).sign(claims(), typ=TYP)
    public = KeyRing([JWSKey.from_jwk(jwk) for jwk in jwks_document(a)["keys"]])
    assert JWSVerifier(public, typ=TYP, algorithms=("EdDSA",)).verify(token, now=NOW) == claims()
    with pytest.raises(ConfigError):
        KeyRing.from_secrets_ed25519([], info="x")


# -- the edges of keys and the verifier (each one a mutant tools/mutate.py showed surviving, issue 9) -----


def spaced_header(header: dict[str, Any], b64_chars: int) -> bytes:
    """``header`` as JSON with spaces before its ``}``, ``b64_chars`` long in base64url."""
    compact = json.dumps(header, separators=(",", ":")).encode()
    n = b64_chars * 3 // 4
    out = compact[:-1] + b" " * (n - len(compact)) + b"}"
    assert len(b64url_encode(out)) == b64_chars
    return out


def test_header_in_another_member_order_verifies(hs_ring: KeyRing, ed_ring: KeyRing, ed_key: JWSKey) -> None:
    """A header another library wrote (not byte for byte ours) is parsed strictly, then accepted."""
    header = {"typ": TYP, "kid": hs_ring.current.kid, "alg": "HS256"}
    token = forge_hs256(json.dumps(header).encode(), claims(), hs_secret(hs_ring))
    assert JWSVerifier(hs_ring, typ=TYP).verify(token, now=NOW) == claims()
    assert ed_key.private_key is not None
    ed_token = forge_eddsa({"typ": TYP, "alg": "EdDSA", "kid": ed_key.kid}, claims(), ed_key.private_key)
    assert JWSVerifier(ed_ring, typ=TYP, algorithms=("EdDSA",)).verify(ed_token, now=NOW) == claims()


def test_header_of_exactly_the_header_limit_verifies_and_a_longer_one_is_refused(hs_ring: KeyRing) -> None:
    header = {"alg": "HS256", "kid": hs_ring.current.kid, "typ": TYP}
    verifier = JWSVerifier(hs_ring, typ=TYP)
    at_limit = forge_hs256(spaced_header(header, MAX_HEADER_CHARS), claims(), hs_secret(hs_ring))
    assert verifier.verify(at_limit, now=NOW) == claims()
    with pytest.raises(InvalidToken):
        too_long = spaced_header(header, MAX_HEADER_CHARS + 3)
        verifier.verify(forge_hs256(too_long, claims(), hs_secret(hs_ring)), now=NOW)


@pytest.mark.parametrize("kid", [5, None, True, ["k"], {"k": 1}],
                         ids=["number", "null", "bool", "list", "object"])
def test_header_whose_kid_is_not_a_string_is_rejected(hs_ring: KeyRing, kid: Any) -> None:
    token = forge_hs256({"alg": "HS256", "kid": kid, "typ": TYP}, claims(), hs_secret(hs_ring))
    with pytest.raises(InvalidToken):
        JWSVerifier(hs_ring, typ=TYP).verify(token, now=NOW)


def test_token_of_exactly_the_size_limit_is_signed_and_verifies(hs_ring: KeyRing) -> None:
    """16 KiB is the largest token signed and accepted, not the first refused."""
    signer = JWSSigner(hs_ring)

    def exact(typ: str) -> str | None:
        near = (MAX_TOKEN_BYTES - len(signer.sign(claims(blob=""), typ=typ))) * 3 // 4
        for extra in range(near - 4, near + 4):
            try:
                token = signer.sign(claims(blob="x" * extra), typ=typ)
            except ValueError:
                return None
            if len(token) == MAX_TOKEN_BYTES:
                return token
        return None

    # base64url has no length 4n+1: one of two header lengths lets the payload end exactly on the limit
    typ, token = next((t, tok) for t in (TYP, TYP + "x") if (tok := exact(t)) is not None)
    assert len(token) == MAX_TOKEN_BYTES
    assert JWSVerifier(hs_ring, typ=typ).verify(token, now=NOW)["sub"] == "user-1"


@pytest.mark.parametrize("token", [None, b"a.b.c", 42])
def test_non_string_token_is_rejected(hs_ring: KeyRing, token: Any) -> None:
    with pytest.raises(InvalidToken):
        JWSVerifier(hs_ring, typ=TYP).verify(token, now=NOW)


def test_verifier_algorithms_outside_hs256_and_eddsa_are_a_config_error(hs_ring: KeyRing) -> None:
    with pytest.raises(ConfigError, match="subset"):
        JWSVerifier(hs_ring, typ=TYP, algorithms=("HS256", "RS256"))  # type: ignore[arg-type]


def test_eddsa_key_from_a_private_key_alone_derives_its_public_key(ed_key: JWSKey) -> None:
    assert ed_key.private_key is not None
    key = JWSKey(kid="k1", alg="EdDSA", private_key=ed_key.private_key)
    assert key.public_key is not None and key.to_public_jwk()["x"] == ed_key.to_public_jwk()["x"]
    ring = KeyRing([key])
    assert JWSVerifier(ring, typ=TYP, algorithms=("EdDSA",)).verify(
        JWSSigner(ring).sign(claims(), typ=TYP), now=NOW) == claims()


_SECRET32 = b"s" * 32


@pytest.mark.parametrize(("build", "names"), [
    pytest.param(lambda: JWSKey(kid="", alg="HS256", secret=_SECRET32), "kid", id="empty-kid"),
    pytest.param(lambda: JWSKey(kid=5, alg="HS256", secret=_SECRET32), "kid", id="kid-not-string"),  # type: ignore[arg-type]
    pytest.param(lambda: JWSKey(kid="k", alg="HS256", secret=_SECRET32,
                                public_key=Ed25519PrivateKey.generate().public_key()), "secret only",
                 id="hs256-with-an-ed25519-key"),
    pytest.param(lambda: JWSKey(kid="k", alg="EdDSA", secret=_SECRET32), "not a secret",
                 id="eddsa-with-a-secret"),
    pytest.param(lambda: JWSKey(kid="k", alg="EdDSA"), "Ed25519 key", id="eddsa-without-a-key"),
    pytest.param(lambda: JWSKey(kid="k", alg="EdDSA", public_key="x"), "Ed25519 key",  # type: ignore[arg-type]
                 id="eddsa-key-not-ed25519"),
    pytest.param(lambda: JWSKey(kid="k", alg="RS256", secret=_SECRET32), "RS256",  # type: ignore[arg-type]
                 id="other-algorithm"),
    pytest.param(lambda: JWSKey.hs256("a string secret"), "bytes", id="hs256-secret-not-bytes"),  # type: ignore[arg-type]
    pytest.param(lambda: JWSKey.ed25519(object()), "Ed25519", id="ed25519-not-a-key"),  # type: ignore[arg-type]
    pytest.param(lambda: JWSKey.from_jwk([("kty", "oct")]), "JSON object", id="jwk-not-an-object"),  # type: ignore[arg-type]
    pytest.param(lambda: JWSKey.from_jwk({"kty": "oct", "k": "A" * 43, "kid": 5}), "'kid'",
                 id="jwk-kid-number"),
    pytest.param(lambda: JWSKey.from_jwk({"kty": "oct"}), "no 'k' member", id="jwk-without-k"),
    pytest.param(lambda: JWSKey.from_jwk({"kty": "oct", "k": "A" * 43 + "="}), "'k' member is not base64url",
                 id="jwk-k-not-base64url"),
    pytest.param(lambda: JWSKey.from_jwk({"kty": "OKP", "crv": "Ed25519", "x": "!!!!"}),
                 "'x' member is not base64url", id="jwk-x-not-base64url"),
])
def test_a_malformed_key_is_a_config_error_that_says_what_is_wrong(
        build: Callable[[], Any], names: str) -> None:
    with pytest.raises(ConfigError, match=names):
        build()

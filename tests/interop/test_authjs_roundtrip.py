"""keyfob.tokens against the real Auth.js packages (@auth/core v5 and next-auth@4), through Node.

tests/interop/authjs.mjs calls @auth/core/jwt's ``encode``/``decode`` and next-auth/jwt's
``encode``; each test sends it a batch of requests on stdin. Set up with
``npm ci --prefix tests/interop``; without Node these tests skip (fail under CI=true).
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import time
from typing import Any

import pytest

from keyfob.errors import InvalidToken, SessionExpired
from keyfob.tokens import JWECodec, decode, decode_v4, derive_v5_key, encode
from keyfob.tokens._authjs import authjs_kid
from keyfob.tokens._parse import b64url_encode
from tests.conftest import require_node

pytestmark = pytest.mark.node

SCRIPT = pathlib.Path(__file__).with_name("authjs.mjs")
NEW = "kf-interop-new-secret-0123456789abcdef0123456789"
OLD = "kf-interop-old-secret-fedcba9876543210fedcba9876"
SALTS = [
    "authjs.session-token",
    "__Secure-authjs.session-token",
    "__Host-authjs.session-token",
    "my-app.session",
]
CLAIMS = {"sub": "user-42", "name": "Zoë Ørsted", "email": "zoe@example.com", "roles": ["admin"], "n": 1.5}


def authjs(requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Run a batch of requests through the real Auth.js packages."""
    done = subprocess.run(
        ["node", str(SCRIPT)],
        input=json.dumps(requests),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    out: list[dict[str, Any]] = json.loads(done.stdout)
    return out


def test_authjs_encoded_cookie_decodes_in_keyfob_for_every_cookie_name_and_secret() -> None:
    require_node()
    cases = [(secret, salt) for salt in SALTS for secret in (NEW, "short", "ünïcødé sécret 🔑")]
    out = authjs(
        [{"op": "encode", "payload": CLAIMS, "secret": s, "salt": salt, "maxAge": 3600} for s, salt in cases]
    )
    now = time.time()
    for (secret, salt), res in zip(cases, out, strict=True):
        claims = decode(res["token"], secret=secret, salt=salt, now=now, leeway=15)
        assert {k: claims[k] for k in CLAIMS} == CLAIMS
        assert claims["exp"] - claims["iat"] == 3600 and abs(claims["iat"] - now) < 60
        assert isinstance(claims["jti"], str)
        with pytest.raises(InvalidToken):
            decode(res["token"], secret=OLD, salt=salt, now=now)
        with pytest.raises(InvalidToken):
            decode(res["token"], secret=secret, salt=salt + "x", now=now)


def test_authjs_kid_is_the_thumbprint_keyfob_computes() -> None:
    require_node()
    keys = [derive_v5_key(s, salt) for salt in SALTS for s in (NEW, OLD)]
    out = authjs([{"op": "thumbprint", "key": b64url_encode(k), "hash": "sha512"} for k in keys])
    assert [r["thumbprint"] for r in out] == [authjs_kid(k) for k in keys]
    token = authjs([{"op": "encode", "payload": {}, "secret": NEW, "salt": SALTS[1], "maxAge": 60}])[0][
        "token"
    ]
    assert token.split(".")[0] == JWECodec(NEW, SALTS[1]).encode({}, max_age=60).split(".")[0]


def test_rotation_authjs_tokens_from_both_secrets_decode_with_the_list_newest_first() -> None:
    require_node()
    salt = "__Secure-authjs.session-token"
    out = authjs(
        [
            {"op": "encode", "payload": {"sub": "new"}, "secret": [NEW, OLD], "salt": salt, "maxAge": 60},
            {"op": "encode", "payload": {"sub": "old"}, "secret": OLD, "salt": salt, "maxAge": 60},
        ]
    )
    codec = JWECodec([NEW, OLD], salt)
    now = time.time()
    new_claims, new_index = codec.decode_verbose(out[0]["token"], now=now, leeway=15)
    old_claims, old_index = codec.decode_verbose(out[1]["token"], now=now, leeway=15)
    assert (new_claims["sub"], new_index) == ("new", 0)
    assert (old_claims["sub"], old_index) == ("old", 1)
    with pytest.raises(InvalidToken):
        JWECodec(NEW, salt).decode(out[1]["token"], now=now)


def test_keyfob_encoded_cookie_decodes_in_authjs() -> None:
    require_node()
    now = time.time()
    cases = [(secret, salt) for salt in SALTS for secret in (NEW, "ünïcødé sécret 🔑")]
    tokens = [encode(CLAIMS, secret=s, salt=salt, max_age=3600, now=now) for s, salt in cases]
    out = authjs(
        [
            {"op": "decode", "token": t, "secret": s, "salt": salt}
            for t, (s, salt) in zip(tokens, cases, strict=True)
        ]
    )
    for token, (secret, salt), res in zip(tokens, cases, out, strict=True):
        assert "error" not in res, res
        payload = res["payload"]
        assert payload == decode(token, secret=secret, salt=salt, now=now)
        assert {k: payload[k] for k in CLAIMS} == CLAIMS
        assert payload["iat"] == int(now) and payload["exp"] == int(now) + 3600


def test_rotation_authjs_decodes_keyfob_cookies_from_old_and_new_secrets() -> None:
    require_node()
    salt = "authjs.session-token"
    now = time.time()
    old_token = encode({"sub": "old"}, secret=OLD, salt=salt, max_age=60, now=now)
    new_token = JWECodec([NEW, OLD], salt).encode({"sub": "new"}, max_age=60, now=now)
    out = authjs(
        [
            {"op": "decode", "token": old_token, "secret": [NEW, OLD], "salt": salt},
            {"op": "decode", "token": new_token, "secret": [NEW, OLD], "salt": salt},
            {"op": "decode", "token": new_token, "secret": OLD, "salt": salt},
        ]
    )
    assert out[0]["payload"]["sub"] == "old"
    assert out[1]["payload"]["sub"] == "new"
    assert "error" in out[2]


def test_authjs_rejects_a_tampered_keyfob_cookie() -> None:
    require_node()
    salt = "authjs.session-token"
    token = encode({"sub": "1"}, secret=NEW, salt=salt, max_age=60)
    h, k, iv, ct, tag = token.split(".")
    bad = ".".join([h, k, iv, ct, ("A" if tag[0] != "A" else "B") + tag[1:]])
    (res,) = authjs([{"op": "decode", "token": bad, "secret": NEW, "salt": salt}])
    assert "error" in res


def test_authjs_cookie_past_its_exp_is_expired_in_keyfob() -> None:
    require_node()
    salt = "authjs.session-token"
    (res,) = authjs([{"op": "encode", "payload": {"sub": "1"}, "secret": NEW, "salt": salt, "maxAge": -120}])
    with pytest.raises(SessionExpired) as info:
        decode(res["token"], secret=NEW, salt=salt, now=time.time())
    assert info.value.reason == "max_age"


def test_next_auth_v4_cookie_decodes_in_keyfob() -> None:
    require_node()
    secrets = [NEW, "short", "ünïcødé sécret 🔑"]
    out = authjs([{"op": "encode_v4", "payload": CLAIMS, "secret": s, "maxAge": 3600} for s in secrets])
    now = time.time()
    for secret, res in zip(secrets, out, strict=True):
        claims = decode_v4(res["token"], secret=secret, now=now, leeway=15)
        assert {k: claims[k] for k in CLAIMS} == CLAIMS and claims["exp"] - claims["iat"] == 3600
        assert decode_v4(res["token"], secret=[OLD, secret], now=now, leeway=15) == claims
        with pytest.raises(InvalidToken):
            decode_v4(res["token"], secret=OLD, now=now)
        with pytest.raises(InvalidToken):  # a v4 cookie is not a v5 cookie
            decode(res["token"], secret=secret, salt="next-auth.session-token", now=now)

"""The attack corpus, as data: one named case per attack, each a builder of the hostile request.

A builder gets an :class:`~tests.security._support.Env` (the app for one strategy, a signed-in
capable browser, the app's keys) and returns the :class:`Attack` to send. Where an attack needs
the real key — a correctly MAC'd token whose only defect is its header, say — the builder uses
it, so each case isolates one defect. ``test_attack_corpus.py`` sends every case over HTTP to
each strategy it applies to and asserts: the expected 401/403 (never 5xx), within a time bound.
"""

from __future__ import annotations

import urllib.parse
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from keyfob.tokens import KeyRing

from ._support import (
    DROP,
    ORIGIN,
    ROTATED_OUT_SECRET,
    SECRET,
    STRATEGIES,
    Env,
    authjs_key,
    b64,
    cookie_header,
    csrf_headers,
    dumps,
    jwe_cbc_hs512,
    jws_eddsa,
    jws_hs256,
    jws_unsigned,
    raw_json,
    unb64,
)

Headers = list[tuple[bytes, bytes]]
Check = Callable[[Env, httpx.Response], Awaitable[None]]


@dataclass(frozen=True)
class Attack:
    """The hostile request: raw headers (the Cookie header exactly as given), method, path, body."""

    headers: Headers
    method: str = "GET"
    path: str = "/me"
    content: bytes | None = None
    expect: frozenset[int] = frozenset({401})
    check: Check | None = None  # runs after the response: e.g. "the planted session is dead"


Builder = Callable[[Env], Awaitable[Attack]]


@dataclass(frozen=True)
class Case:
    id: str
    build: Builder
    strategies: tuple[str, ...] = STRATEGIES
    options: dict[str, Any] = field(default_factory=dict)


CASES: list[Case] = []
JOSE = ("jwt", "hybrid")  # strategies whose cookie is a JOSE token


def case(
    id: str, *, strategies: tuple[str, ...] = STRATEGIES, **options: Any
) -> Callable[[Builder], Builder]:
    def register(build: Builder) -> Builder:
        assert id not in {c.id for c in CASES}, id
        CASES.append(Case(id, build, strategies, options))
        return build

    return register


# -- helpers --


def send_cookie(env: Env, value: str | bytes, *, name: str | None = None, **kw: Any) -> Attack:
    """GET /me carrying only the session cookie ``value`` (bytes are sent as is)."""
    name_b = (name or env.session_cookie).encode()
    raw = value if isinstance(value, bytes) else value.encode("latin-1")
    return Attack(headers=[(b"cookie", name_b + b"=" + raw)], **kw)


def send_cookies(pairs: list[tuple[str, str]] | dict[str, str], **kw: Any) -> Attack:
    return Attack(headers=[(b"cookie", cookie_header(pairs).encode("latin-1"))], **kw)


def keyed(
    header_jws: dict[str, Any] | None = None, header_jwe: dict[str, Any] | None = None, **claims: Any
) -> Builder:
    """A token under the real key whose only defect is in its header and/or claims."""

    async def build(env: Env) -> Attack:
        if env.strategy == "jwt":
            header = env.jwe_header(**(header_jwe or {}))
        else:
            header = env.jws_header(**(header_jws or {}))
        return send_cookie(env, env.token(header=header, claims=env.claims(**claims)))

    return build


def keyed_raw(
    jws_header: str | None = None, jwe_header: str | None = None, payload: bytes | str | None = None
) -> Builder:
    """Hand-written header/payload JSON (duplicate keys, NaN, ...) under the real key.

    ``{kid}`` and ``{now}`` in the texts are filled in.
    """

    async def build(env: Env) -> Attack:
        kid = env.jwe_kid() if env.strategy == "jwt" else env.access_kid()
        fill = {"kid": kid, "now": env.now(), "exp": env.now() + 300}
        text = jwe_header if env.strategy == "jwt" else jws_header
        header = raw_json(text.format(**fill)) if text is not None else None
        if isinstance(payload, str):
            body: bytes | None = raw_json(payload.format(**fill))
        else:
            body = payload
        return send_cookie(env, env.token(raw_header=header, raw_claims=body))

    return build


async def real_token(env: Env, user: str = "victim", role: str = "user") -> str:
    cookies = await env.login(user, role)
    return cookies[env.session_cookie]


def with_real(mutate: Callable[[str], str | bytes], **kw: Any) -> Builder:
    """A genuine session token from a real sign-in, mutated."""

    async def build(env: Env) -> Attack:
        return send_cookie(env, mutate(await real_token(env)), **kw)

    return build


def valid_claims_payload(env: Env) -> str:
    now = env.now()
    aud = ',"aud":"keyfob"' if env.strategy == "hybrid" else ""
    return f'"sid":"AAAAAAAAAAAAAAAAAAAAAA","ver":0,"iat":{now},"jti":"j"{aud}'


# -- 1. algorithm confusion --


@case("alg-none-unsigned")
async def _alg_none_unsigned(env: Env) -> Attack:
    if env.strategy == "jwt":
        header = {"alg": "none", "enc": "A256CBC-HS512"}
        return send_cookie(env, f"{b64(dumps(header))}..{b64(dumps(env.claims()))}..")
    return send_cookie(env, jws_unsigned(env.jws_header(alg="none"), env.claims()))


@case("alg-none-with-valid-mac")
async def _alg_none_mac(env: Env) -> Attack:
    return await keyed({"alg": "none"}, {"alg": "none"})(env)


case("alg-None-mixed-case")(keyed({"alg": "None"}, {"alg": "None"}))
case("alg-empty-string")(keyed({"alg": ""}, {"alg": ""}))
case("alg-HS512-not-allowlisted")(keyed({"alg": "HS512"}, {"enc": "A256GCM"}))
case("alg-RS256-header")(keyed({"alg": "RS256"}, {"alg": "RSA-OAEP"}))
case("alg-as-array")(keyed({"alg": ["HS256"]}, {"alg": ["dir"]}))


@case("eddsa-header-on-hs256-key", strategies=("hybrid", "database"))
async def _eddsa_on_hs(env: Env) -> Attack:
    attacker = Ed25519PrivateKey.generate()
    return send_cookie(env, jws_eddsa(env.jws_header(alg="EdDSA"), env.claims(), attacker))


def _eddsa_public(env: Env) -> tuple[str, Any]:
    key = env.fob.access_ring.current
    assert key.alg == "EdDSA" and key.public_key is not None
    return key.kid, key.public_key


@case("hs256-keyed-with-eddsa-public-key-raw", strategies=("hybrid",), jwks=True)
async def _hs_conf_raw(env: Env) -> Attack:
    kid, pub = _eddsa_public(env)
    secret = pub.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return send_cookie(env, jws_hs256({"alg": "HS256", "kid": kid, "typ": "at+jwt"}, env.claims(), secret))


@case("hs256-keyed-with-eddsa-public-jwk", strategies=("hybrid",), jwks=True)
async def _hs_conf_jwk(env: Env) -> Attack:
    kid, _ = _eddsa_public(env)
    jwk = env.fob.jwks()["keys"][0]
    secret = dumps(jwk)
    return send_cookie(env, jws_hs256({"alg": "HS256", "kid": kid, "typ": "at+jwt"}, env.claims(), secret))


@case("hs256-keyed-with-eddsa-public-pem", strategies=("hybrid",), jwks=True)
async def _hs_conf_pem(env: Env) -> Attack:
    kid, pub = _eddsa_public(env)
    secret = pub.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    return send_cookie(env, jws_hs256({"alg": "HS256", "kid": kid, "typ": "at+jwt"}, env.claims(), secret))


@case("eddsa-signed-by-attacker-with-real-kid", strategies=("hybrid",), jwks=True)
async def _eddsa_attacker(env: Env) -> Attack:
    kid, _ = _eddsa_public(env)
    token = jws_eddsa(
        {"alg": "EdDSA", "kid": kid, "typ": "at+jwt"}, env.claims(), Ed25519PrivateKey.generate()
    )
    return send_cookie(env, token)


# -- 2. kid --

case("kid-path-traversal")(
    keyed({"kid": "../../../../../../dev/null"}, {"kid": "../../../../../../dev/null"})
)
case("kid-sql-injection")(keyed({"kid": "x' UNION SELECT 'k' --"}, {"kid": "x' UNION SELECT 'k' --"}))
case("kid-null")(keyed({"kid": None}, {"kid": None}))
case("kid-integer")(keyed({"kid": 0}, {"kid": 0}))
case("kid-array")(keyed({"kid": ["a"]}, {"kid": ["a"]}))
case("kid-empty")(keyed({"kid": ""}, {"kid": ""}))
case("kid-nul-byte")(keyed({"kid": "k\x00"}, {"kid": "k\x00"}))
case("kid-missing", strategies=("hybrid", "database"))(keyed({"kid": DROP}))


@case("kid-of-rotated-out-key", strategies=JOSE)
async def _kid_rotated(env: Env) -> Attack:
    if env.strategy == "jwt":
        from keyfob.tokens import JWECodec

        kid = JWECodec([ROTATED_OUT_SECRET], env.session_cookie).kids[0]
        return await keyed(header_jwe={"kid": kid})(env)
    kid = KeyRing.from_secrets([ROTATED_OUT_SECRET], info="keyfob access token HS256").current.kid
    return await keyed({"kid": kid})(env)


# -- 3. header-supplied keys and unknown extensions --

case("jku-header")(
    keyed({"jku": "https://evil.example/jwks.json"}, {"jku": "https://evil.example/jwks.json"})
)
case("x5u-header")(keyed({"x5u": "https://evil.example/cert.pem"}, {"x5u": "https://evil.example/cert.pem"}))
case("x5c-header")(keyed({"x5c": ["MIIB"]}, {"x5c": ["MIIB"]}))


@case("jwk-header-embedded-attacker-key")
async def _jwk_embedded(env: Env) -> Attack:
    attacker = Ed25519PrivateKey.generate()
    x = b64(attacker.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))
    header = {"alg": "EdDSA", "typ": "at+jwt", "jwk": {"kty": "OKP", "crv": "Ed25519", "x": x}}
    if env.strategy == "jwt":
        return await keyed(header_jwe={"jwk": header["jwk"]})(env)
    return send_cookie(env, jws_eddsa(header, env.claims(), attacker))


case("crit-unknown-extension")(keyed({"crit": ["x-kf"], "x-kf": 1}, {"crit": ["x-kf"], "x-kf": 1}))
case("crit-b64-false")(keyed({"crit": ["b64"], "b64": False}, {"crit": ["b64"], "b64": False}))
case("cty-nested-jwt")(keyed({"cty": "JWT"}, {"cty": "JWT"}))
case("typ-wrong")(keyed({"typ": "JWT"}, {"typ": "JWT"}))
case("typ-missing", strategies=("hybrid", "database"))(keyed({"typ": DROP}))


@case("zip-def-bomb")
async def _zip_bomb(env: Env) -> Attack:
    # 8 MB of claims deflated to a few KB: a decoder that honours zip would inflate it.
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    body = c.compress(b'{"sub":"victim","pad":"' + b"0" * 8_000_000 + b'"}') + c.flush()
    if env.strategy == "jwt":
        return send_cookie(env, jwe_cbc_hs512(env.jwe_header(zip="DEF"), body, env.jwe_key()))
    return send_cookie(env, jws_hs256(env.jws_header(zip="DEF"), body, env.access_key()))


# The header of Tervoort's PBES2 DoS (Black Hat 2023): p2c = 2**31 - 1.
PBES2_DOS = (
    "eyJhbGciOiJQQkVTMi1IUzUxMitBMjU2S1ciLCJwMnMiOiI4UTFTemluYXNSM3hjaFl6NlpaY0hBIiwicDJjIjoyMTQ3NDgzNjQ3"
    "LCJlbmMiOiJBMTI4Q0JDLUhTMjU2In0.YKbKLsEoyw_JoNvhtuHo9aaeRNSEhhAW2OVHcuF_HLqS0n6hA_fgCA.VBiCzVHNoLiR3F4V"
    "82uoTQ.23i-Tb1AV4n0WKVSSgcQrdg6GRqsUKxjruHXYsTHAJLZ2nsnGIX86vMXqIi6IRsfywCRFzLxEcZBRnTvG3nhzPk0GDD7FMyX"
    "hUHpDjEYCNA_XOmzg8yZR9oyjo6lTF6si4q9FZ2EhzgFQCLO_6h5EVg3vR75_hkBsnuoqoM3dwejXBtIodN84PeqMb6asmas_dpSsz"
    "7H10fC5ni9xIz424givB1YLldF6exVmL93R3fOoOJbmk2GBQZL_SEGllv2cQsBgeprARsaQ7Bq99tT80coH8ItBjgV08AtzXFFsx9"
    ".0HlwodAhOCILG5SQ2LQ9dg"
)


@case("pbes2-p2c-huge-public-token")
async def _pbes2_public(env: Env) -> Attack:
    return send_cookie(env, PBES2_DOS)


@case("pbes2-p2c-huge-keyed", strategies=JOSE)
async def _pbes2_keyed(env: Env) -> Attack:
    pbes = {"alg": "PBES2-HS512+A256KW", "p2s": "8Q1SzinasR3xchYz6ZZcHA", "p2c": 2**31 - 1}
    return await keyed({**pbes, "alg": "PBES2-HS512+A256KW"}, {**pbes, "kid": DROP})(env)


# -- 4. header JSON --

case("header-duplicate-alg")(
    keyed_raw(
        '{{"alg":"HS256","kid":"{kid}","typ":"at+jwt","alg":"none"}}',
        '{{"alg":"dir","enc":"A256CBC-HS512","kid":"{kid}","enc":"A128GCM"}}',
    )
)
case("header-duplicate-kid")(
    keyed_raw(
        '{{"alg":"HS256","kid":"{kid}","typ":"at+jwt","kid":"other"}}',
        '{{"alg":"dir","enc":"A256CBC-HS512","kid":"{kid}","kid":"other"}}',
    )
)
case("header-not-an-object")(keyed_raw('["HS256","{kid}"]', '["dir","{kid}"]'))
case("header-trailing-garbage")(
    keyed_raw(
        '{{"alg":"HS256","kid":"{kid}","typ":"at+jwt"}} x',
        '{{"alg":"dir","enc":"A256CBC-HS512","kid":"{kid}"}} x',
    )
)
case("header-oversized")(keyed({"x": "a" * 2000}, {"x": "a" * 2000}))


@case("header-deeply-nested")
async def _header_nested(env: Env) -> Attack:
    deep: Any = 1
    for _ in range(64):
        deep = [deep]
    return await keyed({"x": deep}, {"x": deep})(env)


# -- 5. structure and base64 --

case("segments-truncated")(with_real(lambda t: t.rsplit(".", 1)[0] if "." in t else t[:-1]))
case("segments-extra")(with_real(lambda t: t + ".e30"))
case("segments-only-dots")(with_real(lambda t: "...."))
case("segments-empty-cookie")(with_real(lambda t: ""))
case("b64-padding-added")(with_real(lambda t: t.replace(".", "=.", 1) if "." in t else t + "="))
case("b64-space-inside")(with_real(lambda t: t[:10] + " " + t[10:]))
case("b64-tab-inside")(with_real(lambda t: t[:10] + "\t" + t[10:]))
case("b64-non-ascii-byte")(with_real(lambda t: t[:10].encode() + b"\xe9" + t[10:].encode()))
case("b64-utf8-lookalike")(with_real(lambda t: (t[:10] + "\u0410" + t[11:]).encode("utf-8")))
case("b64-standard-alphabet")(
    with_real(lambda t: t.translate(str.maketrans("-_", "+/")) if ("-" in t or "_" in t) else "+" + t[1:])
)
case("b64-length-mod4-is-1")(with_real(lambda t: t + "A" * ((1 - len(t.rsplit(".", 1)[-1])) % 4 or 4)))
case("percent-encoded-token")(with_real(lambda t: "".join(f"%{ord(ch):02X}" for ch in t)))


def _noncanonical(t: str) -> str:
    """Same bytes, different text: set the unused low bits of the last base64url character."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    head, _, last = t.rpartition(".")
    rem = len(last) % 4
    unused = {2: 0b1111, 3: 0b11}.get(rem, 0)
    i = alphabet.index(last[-1])
    j = (i | unused) if unused else (i ^ 1)
    if j == i:
        j = i & ~unused
    last = last[:-1] + alphabet[j]
    return f"{head}.{last}" if head else last


case("b64-noncanonical-trailing-bits")(with_real(_noncanonical))

# -- 6. payload JSON --

case("payload-duplicate-sub", strategies=JOSE)(
    keyed_raw(
        payload='{{"sub":"victim","sub":"admin","exp":{exp},'
        + '"sid":"AAAAAAAAAAAAAAAAAAAAAA","ver":0,"iat":{now},'
        '"aud":"keyfob"}}'
    )
)
case("payload-duplicate-exp", strategies=JOSE)(
    keyed_raw(
        payload='{{"sub":"victim","exp":1,"exp":{exp},"sid":"AAAAAAAAAAAAAAAAAAAAAA","ver":0,"iat":{now},'
        '"aud":"keyfob"}}'
    )
)
case("payload-not-an-object")(keyed_raw(payload='["victim",{exp}]'))
case("payload-invalid-utf8")(keyed_raw(payload=b'{"sub":"\xff\xfe","exp":9999999999}'))
case("payload-nan-exp")(keyed_raw(payload='{{"sub":"victim","exp":NaN,"aud":"keyfob"}}'))
case("payload-infinity-exp")(keyed_raw(payload='{{"sub":"victim","exp":Infinity,"aud":"keyfob"}}'))
case("payload-overflowing-float-exp")(keyed_raw(payload='{{"sub":"victim","exp":1e400,"aud":"keyfob"}}'))
case("payload-trailing-garbage")(keyed_raw(payload='{{"sub":"victim","exp":{exp},"aud":"keyfob"}}garbage'))
case("payload-utf8-bom")(keyed_raw(payload=b'\xef\xbb\xbf{"sub":"victim","exp":9999999999,"aud":"keyfob"}'))


@case("payload-depth-bomb")
async def _depth_bomb(env: Env) -> Attack:
    body = b'{"sub":"victim","exp":9999999999,"aud":"keyfob","x":' + b"[" * 3000 + b"]" * 3000 + b"}"
    return send_cookie(env, env.token(raw_claims=body))


# -- 7. claims of the wrong type or time --

case("exp-as-string")(keyed(exp="9999999999"))
case("exp-null")(keyed(exp=None))
case("exp-bool")(keyed(exp=True))
case("exp-huge-int")(keyed(exp=2**64))
case("exp-array")(keyed(exp=[9999999999]))
case("exp-object")(keyed(exp={"$gt": 0}))
case("exp-missing")(keyed(exp=DROP))
case("exp-negative")(keyed(exp=-1))
case("nbf-as-string")(keyed(nbf="0"))
case("iat-as-string")(keyed(iat="0"))
case("sub-missing", strategies=JOSE)(keyed(sub=DROP))
case("sub-integer", strategies=JOSE)(keyed(sub=42))
case("sub-empty", strategies=JOSE)(keyed(sub=""))
case("ver-as-string", strategies=JOSE)(keyed(ver="0"))
case("ver-bool", strategies=JOSE)(keyed(ver=False))
case("sid-integer", strategies=("hybrid",))(keyed(sid=7))
case("aud-other-service", strategies=("hybrid",))(keyed(aud="billing-service"))
case("aud-missing", strategies=("hybrid",))(keyed(aud=DROP))


@case("exp-float-expired-by-half-second", strategies=JOSE)
async def _exp_float(env: Env) -> Attack:
    skew = env.fob.settings.clock_skew if env.strategy == "jwt" else 0
    return await keyed(exp=env.now() - skew - 0.5, iat=env.now() - 100)(env)


@case("nbf-in-future-beyond-skew", strategies=JOSE)
async def _nbf_future(env: Env) -> Attack:
    return await keyed(nbf=env.now() + env.fob.settings.clock_skew + 60)(env)


@case("iat-in-future-beyond-skew", strategies=JOSE)
async def _iat_future(env: Env) -> Attack:
    return await keyed(iat=env.now() + env.fob.settings.clock_skew + 60)(env)


@case("expired-by-1s")
async def _expired_1s(env: Env) -> Attack:
    if env.strategy == "database":  # the stored session: advance past max_age by one second
        token = await real_token(env)
        env.clock.advance(env.fob.settings.max_age + 1)
        return send_cookie(env, token)
    skew = env.fob.settings.clock_skew if env.strategy == "jwt" else 0  # hybrid access tokens: no leeway
    return await keyed(exp=env.now() - skew - 1, iat=env.now() - 3600)(env)


@case("absolute-timeout-passed", absolute_timeout=3600)
async def _absolute(env: Env) -> Attack:
    cookies = await env.login()
    env.clock.advance(3601)
    return send_cookies(cookies)


@case("idle-timeout-passed", idle_timeout=900)
async def _idle(env: Env) -> Attack:
    cookies = await env.login()
    env.clock.advance(901)
    return send_cookies(cookies)


@case("payload-tampered-role")
async def _tampered(env: Env) -> Attack:
    token = await real_token(env, role="user")
    if env.strategy == "hybrid":
        h, p, s = token.split(".")
        claims = __import__("json").loads(unb64(p))
        claims["role"] = "admin"
        token = f"{h}.{b64(dumps(claims))}.{s}"
    elif env.strategy == "jwt":
        parts = token.split(".")
        ct = bytearray(unb64(parts[3]))
        ct[-17] ^= 1  # flip a bit in the second-to-last block: CBC malleability must hit the MAC
        parts[3] = b64(bytes(ct))
        token = ".".join(parts)
    else:
        token = token[:-1] + ("A" if token[-1] != "A" else "B")
    return send_cookie(env, token, path="/admin")


# -- 8. keys: other cookie names, rotated-out and foreign secrets --


@case("jwe-for-another-cookie-name-authjs", strategies=("jwt",))
async def _salt_authjs(env: Env) -> Attack:
    return send_cookie(
        env,
        jwe_cbc_hs512(
            {"alg": "dir", "enc": "A256CBC-HS512"},
            dumps(env.claims()),
            authjs_key(SECRET, "authjs.session-token"),
        ),
    )


@case("jwe-for-the-refresh-cookie-name", strategies=("jwt",))
async def _salt_refresh(env: Env) -> Attack:
    return send_cookie(
        env,
        jwe_cbc_hs512(
            {"alg": "dir", "enc": "A256CBC-HS512"},
            dumps(env.claims()),
            authjs_key(SECRET, "keyfob.refresh-token"),
        ),
    )


@case("jwe-for-the-host-prefixed-name", strategies=("jwt",))
async def _salt_host(env: Env) -> Attack:
    return send_cookie(
        env,
        jwe_cbc_hs512(
            {"alg": "dir", "enc": "A256CBC-HS512"},
            dumps(env.claims()),
            authjs_key(SECRET, "__Host-keyfob.session-token"),
        ),
    )


@case("token-from-rotated-out-secret", strategies=JOSE)
async def _rotated_out(env: Env) -> Attack:
    # Issued for real by a node that still had the old secret, then the secret was retired.
    from keyfob import Keyfob

    old = Keyfob(
        strategy=env.strategy, secret=[ROTATED_OUT_SECRET], store=env.fob.store, feed=None, clock=env.clock
    )
    issued = await old.create("victim", {"role": "admin"}, secure=False)
    token = next(c.value for c in issued.cookies if c.name == env.session_cookie)
    return send_cookie(env, token)


@case("token-from-attacker-secret-with-real-kid", strategies=JOSE)
async def _attacker_secret(env: Env) -> Attack:
    attacker = "attacker-secret-0123456789abcdef0123456789abcdef0123456789abcdef"
    if env.strategy == "jwt":
        return send_cookie(
            env,
            jwe_cbc_hs512(env.jwe_header(), dumps(env.claims()), authjs_key(attacker, env.session_cookie)),
        )
    return send_cookie(env, jws_hs256(env.jws_header(), env.claims(), b"k" * 32))


@case("jwe-nextauth-v4-a256gcm", strategies=("jwt",))
async def _v4(env: Env) -> Attack:
    from keyfob.tokens import derive_v4_key

    header = b64(dumps({"alg": "dir", "enc": "A256GCM"}))
    iv = b"\x01" * 12
    sealed = AESGCM(derive_v4_key(SECRET)).encrypt(iv, dumps(env.claims()), header.encode())
    return send_cookie(env, f"{header}..{b64(iv)}.{b64(sealed[:-16])}.{b64(sealed[-16:])}")


case("jwe-alg-a256kw", strategies=("jwt",))(keyed(header_jwe={"alg": "A256KW"}))
case("jwe-enc-a128cbc-hs256", strategies=("jwt",))(keyed(header_jwe={"enc": "A128CBC-HS256"}))


@case("jwe-nonempty-encrypted-key", strategies=("jwt",))
async def _jwe_ek(env: Env) -> Attack:
    return send_cookie(
        env,
        jwe_cbc_hs512(
            env.jwe_header(), dumps(env.claims()), env.jwe_key(), encrypted_key="AAAAAAAAAAAAAAAAAAAAAA"
        ),
    )


@case("jwe-bad-padding-under-valid-mac", strategies=("jwt",))
async def _jwe_padding(env: Env) -> Attack:
    # The classic padding-oracle probe: a correct tag over a plaintext whose PKCS#7 padding is wrong.
    return send_cookie(env, jwe_cbc_hs512(env.jwe_header(), b"A" * 31 + b"\x00", env.jwe_key(), pad=False))


@case("jwe-tag-truncated-to-16-bytes", strategies=("jwt",))
async def _jwe_tag16(env: Env) -> Attack:
    return send_cookie(env, jwe_cbc_hs512(env.jwe_header(), dumps(env.claims()), env.jwe_key(), tag_len=16))


@case("jwe-iv-8-bytes", strategies=("jwt",))
async def _jwe_iv8(env: Env) -> Attack:
    token = jwe_cbc_hs512(env.jwe_header(), dumps(env.claims()), env.jwe_key())
    parts = token.split(".")
    parts[2] = b64(unb64(parts[2])[:8])
    return send_cookie(env, ".".join(parts))


@case("jws-signature-truncated", strategies=("hybrid", "database"))
async def _jws_trunc(env: Env) -> Attack:
    token = env.token()
    h, p, s = token.split(".")
    return send_cookie(env, f"{h}.{p}.{b64(unb64(s)[:16])}")


@case("jws-signature-from-other-key-same-kid", strategies=("hybrid",))
async def _jws_other_key(env: Env) -> Attack:
    return send_cookie(env, jws_hs256(env.jws_header(), env.claims(), b"\x00" * 32))


# -- 9. cookie transport: size, chunks, control characters, injection --


@case("cookie-1mb-value")
async def _cookie_1mb(env: Env) -> Attack:
    return send_cookie(env, "A" * 1_000_000)


@case("cookie-header-1mb-of-pairs")
async def _cookie_many_pairs(env: Env) -> Attack:
    token = await real_token(env)
    return Attack(
        headers=[(b"cookie", (b"x=y; " * 200_000) + f"{env.session_cookie}={token}".encode())],
        expect=frozenset({401}),
    )


@case("cookie-5000-chunks")
async def _many_chunks(env: Env) -> Attack:
    return send_cookies([(f"{env.session_cookie}.{i}", "QUFB") for i in range(5000)])


@case("cookie-chunk-gap")
async def _chunk_gap(env: Env) -> Attack:
    token = await real_token(env)
    half = len(token) // 2
    return send_cookies(
        [(f"{env.session_cookie}.0", token[:half]), (f"{env.session_cookie}.2", token[half:])]
    )


@case("cookie-chunk-beyond-max-index")
async def _chunk_max(env: Env) -> Attack:
    token = await real_token(env)
    return send_cookies([(f"{env.session_cookie}.0", token), (f"{env.session_cookie}.16", "QQ")])


@case("cookie-chunk-empty-member")
async def _chunk_empty(env: Env) -> Attack:
    token = await real_token(env)
    return send_cookies([(f"{env.session_cookie}.0", token), (f"{env.session_cookie}.1", "")])


@case("cookie-chunk-noncanonical-index")
async def _chunk_index(env: Env) -> Attack:
    token = await real_token(env)
    half = len(token) // 2
    return send_cookies(
        [(f"{env.session_cookie}.0", token[:half]), (f"{env.session_cookie}.01", token[half:])]
    )


case("cookie-nul-byte-in-value")(with_real(lambda t: t[:10] + "\x00" + t[10:]))


@case("cookie-nul-byte-in-name")
async def _nul_name(env: Env) -> Attack:
    token = await real_token(env)
    return Attack(headers=[(b"cookie", env.session_cookie.encode() + b"\x00=" + token.encode())])


@case("cookie-header-crlf-injection")
async def _crlf(env: Env) -> Attack:
    return Attack(
        headers=[(b"cookie", env.session_cookie.encode() + b"=abc\r\nset-cookie: evil=1")],
        check=_no_evil_cookie,
    )


async def _no_evil_cookie(env: Env, r: httpx.Response) -> None:
    assert not any("evil" in v for v in r.headers.get_list("set-cookie"))


@case("cookie-duplicate-name-garbage-first")
async def _dup_name(env: Env) -> Attack:
    token = await real_token(env)
    return send_cookies([(env.session_cookie, "garbage"), (env.session_cookie, token)])


@case("cookie-name-case-variant")
async def _name_case(env: Env) -> Attack:
    # Cookie names are case-sensitive: a look-alike name must not be read as the session.
    token = await real_token(env)
    return send_cookies([(env.session_cookie.upper(), token)])


@case("login-with-crlf-in-user-id-injects-no-header")
async def _crlf_user(env: Env) -> Attack:
    from ._support import PASSWORD

    headers = await csrf_headers(env.browser)
    body = dumps({"user": "mallory\r\nset-cookie: evil=1", "password": PASSWORD})
    cookie = cookie_header(dict(env.browser.cookies.items())).encode()
    raw = [
        (b"cookie", cookie),
        (b"content-type", b"application/json"),
        *((k.encode(), v.encode()) for k, v in headers.items()),
    ]
    return Attack(
        headers=raw,
        method="POST",
        path="/login",
        content=body,
        expect=frozenset({200}),
        check=_no_evil_cookie,
    )


# -- 10. bearer tokens --


@case("bearer-garbage")
async def _bearer_garbage(env: Env) -> Attack:
    return Attack(headers=[(b"authorization", b"Bearer not.a.token")])


@case("bearer-alg-none")
async def _bearer_none(env: Env) -> Attack:
    token = jws_unsigned({"alg": "none", "typ": "at+jwt"}, env.claims())
    return Attack(headers=[(b"authorization", b"Bearer " + token.encode())])


@case("bearer-garbage-does-not-bypass-csrf-for-cookie-session")
async def _bearer_csrf(env: Env) -> Attack:
    cookies = await env.login()
    return Attack(
        headers=[(b"authorization", b"Bearer junk"), (b"cookie", cookie_header(cookies).encode())],
        method="POST",
        path="/action",
        expect=frozenset({401, 403}),
    )


@case("bearer-refresh-token-as-access-token", strategies=("hybrid",))
async def _bearer_refresh(env: Env) -> Attack:
    cookies = await env.login()
    return Attack(headers=[(b"authorization", b"Bearer " + cookies[env.refresh_cookie].encode())])


# -- 11. session lifecycle: fixation, replay, revocation --


@case("session-fixation-planted-attacker-session")
async def _fixation_valid(env: Env) -> Attack:
    attacker_cookies = await env.login("mallory")  # the attacker's own, genuine session...
    planted = dict(attacker_cookies)
    env.browser.cookies.clear()
    for k, v in planted.items():  # ...planted in the victim's browser (cookie tossing, shared computer)
        env.browser.cookies.set(k, v, domain="localhost.local")
    victim = await env.login("victim")
    assert victim[env.session_cookie] != planted[env.session_cookie]
    me = (await env.browser.get("/me")).json()
    assert me["user"] == "victim"
    session_only = {env.session_cookie: planted[env.session_cookie]}
    return send_cookies(session_only)  # the planted token died at sign-in


@case("session-fixation-planted-unknown-token")
async def _fixation_unknown(env: Env) -> Attack:
    planted = "A" * 43
    env.browser.cookies.set(env.session_cookie, planted, domain="localhost.local")
    victim = await env.login("victim")
    assert victim[env.session_cookie] != planted, "a session id chosen by the client was kept"
    return send_cookie(env, planted)


@case("refresh-replay-after-grace", strategies=("hybrid",))
async def _refresh_replay(env: Env) -> Attack:
    cookies = await env.login()
    r0 = cookies[env.refresh_cookie]
    env.browser.cookies.clear()
    first = await env.browser.post("/auth/refresh", json={"refresh_token": r0})
    assert first.status_code == 200, first.text
    env.notes["r1"] = first.json()["refresh_token"]
    env.notes["a1"] = first.json()["access_token"]
    env.browser.cookies.clear()
    env.clock.advance(env.fob.settings.refresh_grace + 1)
    return Attack(
        headers=[(b"content-type", b"application/json")],
        method="POST",
        path="/auth/refresh",
        content=dumps({"refresh_token": r0}),
        check=_family_dead,
    )


async def _family_dead(env: Env, r: httpx.Response) -> None:
    assert r.json()["error"] == "token_reuse_detected"
    env.browser.cookies.clear()
    again = await env.browser.post("/auth/refresh", json={"refresh_token": env.notes["r1"]})
    assert again.status_code == 401, "the rotated-to refresh token survived a detected replay"
    me = await env.browser.get("/me", headers={"authorization": f"Bearer {env.notes['a1']}"})
    assert me.status_code == 401, "the family's access token survived a detected replay"


@case("refresh-replay-via-cookie-after-grace", strategies=("hybrid",))
async def _refresh_replay_cookie(env: Env) -> Attack:
    cookies = await env.login()
    env.browser.cookies.clear()
    assert (
        await env.browser.post("/auth/refresh", json={"refresh_token": cookies[env.refresh_cookie]})
    ).status_code == 200
    env.clock.advance(env.fob.settings.refresh_grace + 1)
    return send_cookies({env.refresh_cookie: cookies[env.refresh_cookie]})


@case("refresh-with-access-token", strategies=("hybrid",))
async def _refresh_with_access(env: Env) -> Attack:
    cookies = await env.login()
    return Attack(
        headers=[(b"content-type", b"application/json")],
        method="POST",
        path="/auth/refresh",
        content=dumps({"refresh_token": cookies[env.session_cookie]}),
    )


@case("refresh-with-garbage", strategies=("hybrid",))
async def _refresh_garbage(env: Env) -> Attack:
    return Attack(
        headers=[(b"content-type", b"application/json")],
        method="POST",
        path="/auth/refresh",
        content=dumps({"refresh_token": "A" * 43}),
    )


@case("revoked-session-use")
async def _revoked(env: Env) -> Attack:
    cookies = await env.login()
    sid = (await env.browser.get("/me")).json()["sid"]
    await env.fob.revoke(sid)
    return send_cookies(cookies)


@case("signed-out-session-replay")
async def _signed_out(env: Env) -> Attack:
    cookies = await env.login()
    r = await env.browser.post("/auth/signout", headers=await csrf_headers(env.browser))
    assert r.status_code == 200
    return send_cookies(cookies)


@case("user-version-bumped-session-use")
async def _bumped(env: Env) -> Attack:
    cookies = await env.login()
    await env.fob.bump_user_version("victim")
    return send_cookies(cookies)


@case("rotated-away-token-use")
async def _rotated_away(env: Env) -> Attack:
    cookies = await env.login()
    await env.fob.rotate(cookies, data={"role": "admin"}, secure=False)  # privilege change: new token
    return send_cookies(cookies, path="/admin")


@case("delete-another-users-session", strategies=("database", "hybrid"))
async def _idor(env: Env) -> Attack:
    other = await env.fob.create("someone-else", {}, secure=False)
    env.notes["other"] = other
    cookies = await env.login()
    headers = await csrf_headers(env.browser)
    raw = [
        (b"cookie", cookie_header(dict(env.browser.cookies.items())).encode()),
        *((k.encode(), v.encode()) for k, v in headers.items()),
    ]
    del cookies
    return Attack(
        headers=raw,
        method="DELETE",
        path=f"/auth/sessions/{other.session.id}",
        expect=frozenset({404}),
        check=_other_alive,
    )


async def _other_alive(env: Env, r: httpx.Response) -> None:
    other = env.notes["other"]
    assert (await env.fob.authenticate({c.name: c.value for c in other.cookies}, secure=False)).session


# -- 12. CSRF --


def csrf_case(
    id: str,
    *,
    origin: str | None = ORIGIN,
    referer: str | None = None,
    token: str = "valid",
    form: bool = False,
    method: str = "POST",
    path: str = "/action",
) -> None:
    async def build(env: Env) -> Attack:
        await env.login()
        good = (await env.browser.get("/auth/csrf")).json()["csrfToken"]
        cookies = dict(env.browser.cookies.items())
        if token == "valid":
            submitted: str | None = good
        elif token == "attacker":  # the attacker's own token, from their own browser
            from ._support import BASE_URL

            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=env.app), base_url=BASE_URL) as c:
                submitted = (await c.get("/auth/csrf")).json()["csrfToken"]
        elif token == "forged-cookie":
            cookies["keyfob.csrf-token"] = "forged.c2lnbmF0dXJl"
            submitted = "forged"
        elif token == "none":
            submitted = None
        else:
            submitted = token
        headers: Headers = [(b"cookie", cookie_header(cookies).encode())]
        if origin is not None:
            headers.append((b"origin", origin.encode()))
        if referer is not None:
            headers.append((b"referer", referer.encode()))
        content = None
        if form:
            headers.append((b"content-type", b"application/x-www-form-urlencoded"))
            content = urllib.parse.urlencode({"csrf_token": submitted or ""}).encode()
        elif submitted is not None:
            headers.append((b"x-csrf-token", submitted.encode()))
        return Attack(
            headers=headers,
            method=method,
            path=path,
            content=content,
            expect=frozenset({403}),
            check=_still_signed_in,
        )

    case(id)(build)


async def _still_signed_in(env: Env, r: httpx.Response) -> None:
    assert r.json()["error"] == "csrf_failed"
    assert (await env.browser.get("/me")).status_code == 200, "a refused forged request ended the session"


csrf_case("csrf-no-origin-no-token", origin=None, token="none")
csrf_case("csrf-no-origin-wrong-token", origin=None, token="wrong")
csrf_case("csrf-same-origin-no-token", token="none")
csrf_case("csrf-foreign-origin-valid-token", origin="https://evil.example")
csrf_case("csrf-origin-null-valid-token", origin="null")
csrf_case("csrf-foreign-referer-no-origin-valid-token", origin=None, referer="https://evil.example/page")
csrf_case("csrf-origin-other-port", origin="http://localhost:8080")
csrf_case("csrf-origin-https-instead-of-http", origin="https://localhost")
csrf_case("csrf-origin-suffix-lookalike", origin="http://localhost.evil.example")
csrf_case("csrf-origin-userinfo-trick", origin="http://localhost@evil.example")
csrf_case("csrf-attackers-own-token", token="attacker")
csrf_case("csrf-forged-unsigned-cookie", token="forged-cookie")
csrf_case("csrf-form-field-wrong-token", token="wrong", form=True)
csrf_case("csrf-signout-without-token", token="none", path="/auth/signout")
csrf_case(
    "csrf-revoke-others-foreign-origin", origin="https://evil.example", path="/auth/sessions/revoke-others"
)


@case("login-csrf-foreign-origin-without-cookies")
async def _login_csrf(env: Env) -> Attack:
    from ._support import PASSWORD

    return Attack(
        headers=[(b"origin", b"https://evil.example"), (b"content-type", b"application/json")],
        method="POST",
        path="/login",
        content=dumps({"user": "mallory", "password": PASSWORD}),
        expect=frozenset({403}),
    )

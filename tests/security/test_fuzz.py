"""Property tests: hostile cookie values and token segments never crash anything.

* ``keyfob.tokens`` decoders raise only ``InvalidToken`` / ``SessionExpired`` for any input, and a
  one-character change to a genuine token never verifies.
* ``Keyfob.authenticate`` never raises (only ``StoreUnavailable`` may escape, and the memory store
  never is), never authenticates garbage, and never reaches its "bug" fallback (an ERROR log).

Profiles (``tests/security/conftest.py``): 200 examples per property by default, 700 with
``KEYFOB_FUZZ_PROFILE=slow`` (CI: 11 200 in all), 10 000 with ``KEYFOB_FUZZ_PROFILE=deep``.
"""

from __future__ import annotations

import asyncio
import logging
import string
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keyfob import FakeClock, InvalidToken, Keyfob, SessionExpired
from keyfob.tokens import JWECodec, JWSSigner, JWSVerifier, KeyRing, decode_v4
from keyfob.tokens._parse import b64url_decode, check_claims, parse_json_object

from ._support import SECRET, b64, dumps, jwe_cbc_hs512, jws_hs256
from .conftest import counted, fuzz_settings

NOW = 1_800_000_000.0
SALT = "keyfob.session-token"
CODEC = JWECodec([SECRET], SALT)
RING = KeyRing.from_secrets([SECRET], info="keyfob access token HS256")
VERIFIER = JWSVerifier(RING, typ="at+jwt", audience="keyfob")
CLAIMS = {"sub": "u1", "sid": "s1", "ver": 0, "aud": "keyfob", "exp": int(NOW) + 600, "iat": int(NOW)}
VALID_JWE = CODEC.encode({"sub": "u1", "sid": "s1", "ver": 0}, max_age=600, now=NOW)
VALID_JWS = JWSSigner(RING).sign(CLAIMS, typ="at+jwt")
ALLOWED = (InvalidToken, SessionExpired)
B64URL = string.ascii_letters + string.digits + "-_"

# -- input strategies -------------------------------------------------------------------------------------

segment = st.binary(max_size=96).map(b64)
any_text = st.text(max_size=300)
b64ish = st.text(alphabet=B64URL + ".=+/ \t%\x00", max_size=400)
jose_shaped = st.one_of(
    st.lists(segment, min_size=1, max_size=7).map(".".join),
    st.tuples(segment, segment, segment).map(".".join),
    st.tuples(segment, st.just(""), segment, segment, segment).map(".".join),
)


@st.composite
def mutated(draw: st.DrawFn, token: str) -> str:
    """A genuine token with one edit: replace, insert or delete a character, or cut it short."""
    i = draw(st.integers(0, len(token) - 1))
    kind = draw(st.sampled_from(["replace", "insert", "delete", "truncate"]))
    ch = draw(st.sampled_from(B64URL + ".=+/ \x00\u00e9"))
    if kind == "replace":
        return token[:i] + ch + token[i + 1 :]
    if kind == "insert":
        return token[:i] + ch + token[i:]
    if kind == "delete":
        return token[:i] + token[i + 1 :]
    return token[:i]


json_value = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
header_keys = st.sampled_from(["alg", "enc", "kid", "typ", "zip", "crit", "jku", "jwk", "x5u", "cty", "p2c"])
header_values = st.one_of(
    json_value,
    st.sampled_from(
        ["dir", "A256CBC-HS512", "HS256", "EdDSA", "none", "at+jwt", "DEF", CODEC.kids[0], RING.current.kid]
    ),
)
random_header = st.dictionaries(header_keys, header_values, max_size=5)
claims_values = st.one_of(
    json_value,
    st.integers(-(2**70), 2**70),
    st.floats(),
    st.sampled_from([NOW, NOW + 600, NOW - 600, "u1", "s1", "keyfob", 0]),
)
random_claims = st.dictionaries(
    st.sampled_from(["sub", "sid", "ver", "aud", "exp", "nbf", "iat", "jti", "x"]), claims_values, max_size=8
)


def _only_keyfob_errors(fn: Any, *args: Any, **kw: Any) -> Any:
    try:
        return fn(*args, **kw)
    except ALLOWED:
        return None


# -- tokens layer -----------------------------------------------------------------------------------------


@fuzz_settings
@given(st.one_of(any_text, b64ish, jose_shaped, mutated(VALID_JWE)))
@counted
def test_jwe_decode_raises_only_keyfob_errors(token: str) -> None:
    claims = _only_keyfob_errors(CODEC.decode, token, now=NOW, leeway=30)
    assert claims is None or token == VALID_JWE


@fuzz_settings
@given(st.one_of(any_text, b64ish, jose_shaped, mutated(VALID_JWS)))
@counted
def test_jws_verify_raises_only_keyfob_errors(token: str) -> None:
    claims = _only_keyfob_errors(VERIFIER.verify, token, now=NOW)
    assert claims is None or token == VALID_JWS


@fuzz_settings
@given(st.one_of(any_text, b64ish, jose_shaped))
@counted
def test_decode_v4_raises_only_keyfob_errors(token: str) -> None:
    assert _only_keyfob_errors(decode_v4, token, secret=SECRET, now=NOW) is None


@fuzz_settings
@given(mutated(VALID_JWE))
@counted
def test_one_edit_to_a_genuine_jwe_never_decodes(token: str) -> None:
    if token != VALID_JWE:
        with pytest.raises(InvalidToken):
            CODEC.decode(token, now=NOW)


@fuzz_settings
@given(mutated(VALID_JWS))
@counted
def test_one_edit_to_a_genuine_jws_never_verifies(token: str) -> None:
    if token != VALID_JWS:
        with pytest.raises(InvalidToken):
            VERIFIER.verify(token, now=NOW)


@fuzz_settings
@given(random_header, random_claims)
@counted
def test_correctly_keyed_jwe_with_any_header_and_claims(
    header: dict[str, Any], claims: dict[str, Any]
) -> None:
    """Even under the real key, only the exact allowed header and well-typed claims get through."""
    try:
        body = dumps(claims)
    except (ValueError, OverflowError):
        return
    from ._support import authjs_key

    token = jwe_cbc_hs512(header, body, authjs_key(SECRET, SALT))
    out = _only_keyfob_errors(CODEC.decode, token, now=NOW)
    if out is not None:
        assert header.get("alg") == "dir" and header.get("enc") == "A256CBC-HS512"
        assert set(header) <= {"alg", "enc", "kid"}
        assert isinstance(out.get("exp"), int | float) and not isinstance(out.get("exp"), bool)


@fuzz_settings
@given(random_header, random_claims)
@counted
def test_correctly_keyed_jws_with_any_header_and_claims(
    header: dict[str, Any], claims: dict[str, Any]
) -> None:
    try:
        body = dumps(claims)
    except (ValueError, OverflowError):
        return
    secret = RING.current.secret
    assert secret is not None
    out = _only_keyfob_errors(VERIFIER.verify, jws_hs256(header, body, secret), now=NOW)
    if out is not None:
        assert header == {"alg": "HS256", "kid": RING.current.kid, "typ": "at+jwt"}
        assert out.get("aud") == "keyfob" or (isinstance(out.get("aud"), list) and "keyfob" in out["aud"])


@fuzz_settings
@given(st.one_of(any_text, b64ish))
@counted
def test_b64url_decode_raises_only_invalid_token(s: str) -> None:
    try:
        out = b64url_decode(s)
    except InvalidToken:
        return
    assert b64(out) == s  # only canonical encodings decode


@fuzz_settings
@given(
    st.one_of(
        st.binary(max_size=300),
        json_value.map(lambda v: dumps(v) if _dumpable(v) else b"{}"),
        st.integers(0, 40).map(lambda n: b"[" * n + b"]" * n),
        st.integers(0, 40).map(lambda n: b'{"a":' * n + b"1" + b"}" * n),
    )
)
@counted
def test_parse_json_object_raises_only_invalid_token(raw: bytes) -> None:
    try:
        out = parse_json_object(raw)
    except InvalidToken:
        return
    assert type(out) is dict


@fuzz_settings
@given(random_claims)
@counted
def test_check_claims_raises_only_keyfob_errors(claims: dict[str, Any]) -> None:
    _only_keyfob_errors(check_claims, claims, now=NOW, leeway=30)


def _dumpable(v: Any) -> bool:
    try:
        dumps(v)
    except (ValueError, OverflowError):
        return False
    return True


# -- the engine, per strategy -------------------------------------------------------------------------------


class _Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(scope="module")
def engines() -> Iterator[tuple[asyncio.Runner, dict[str, tuple[Keyfob, dict[str, str]]]]]:
    """One memory-store Keyfob per strategy (with a genuine session each), on one event loop."""
    runner = asyncio.Runner()
    out: dict[str, tuple[Keyfob, dict[str, str]]] = {}

    async def setup() -> None:
        for strategy in ("jwt", "database", "hybrid"):
            fob = Keyfob(
                strategy=strategy, secret=SECRET, store=f"memory://fuzz-{strategy}", clock=FakeClock(NOW)
            )
            issued = await fob.create("u1", {"role": "user"}, secure=False)
            out[strategy] = (fob, {c.name: c.value for c in issued.cookies})

    runner.run(setup())
    yield runner, out
    for fob, _ in out.values():
        runner.run(fob.close())
    runner.close()


@pytest.fixture
def error_log() -> Iterator[_Errors]:
    handler = _Errors()
    logger = logging.getLogger("keyfob")
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


cookie_names = st.sampled_from(
    [
        "keyfob.session-token",
        "keyfob.refresh-token",
        "keyfob.session-token.0",
        "keyfob.session-token.1",
        "keyfob.session-token.16",
        "keyfob.refresh-token.0",
    ]
)
cookie_value = st.one_of(
    any_text,
    b64ish,
    jose_shaped,
    st.just(VALID_JWE),
    st.just(VALID_JWS),
    mutated(VALID_JWE),
    mutated(VALID_JWS),
    st.text(alphabet=B64URL, min_size=43, max_size=43),
)
cookie_jar = st.dictionaries(st.one_of(cookie_names, st.text(max_size=30)), cookie_value, max_size=6)


@pytest.mark.parametrize("strategy", ["jwt", "database", "hybrid"])
def test_authenticate_never_raises_and_never_accepts_garbage(
    strategy: str,
    engines: tuple[asyncio.Runner, dict[str, tuple[Keyfob, dict[str, str]]]],
    error_log: _Errors,
) -> None:
    runner, fobs = engines
    fob, genuine = fobs[strategy]

    @fuzz_settings
    @given(cookie_jar)
    @counted
    def prop(cookies: dict[str, str]) -> None:
        result = runner.run(fob.authenticate(cookies, secure=False))  # StoreUnavailable would escape
        if result.session is not None:  # only possible if a genuine token was drawn
            forged_here = {"jwt": VALID_JWE, "hybrid": VALID_JWS}.get(strategy)  # same secret, so genuine
            assert any(v in genuine.values() or v == forged_here for v in cookies.values()), cookies

    prop()
    assert not error_log.records, [r.getMessage() for r in error_log.records]


@pytest.mark.parametrize("strategy", ["jwt", "database", "hybrid"])
def test_one_edit_to_a_genuine_cookie_never_authenticates(
    strategy: str, engines: tuple[asyncio.Runner, dict[str, tuple[Keyfob, dict[str, str]]]]
) -> None:
    runner, fobs = engines
    fob, genuine = fobs[strategy]
    name = "keyfob.session-token"
    token = genuine[name]

    @fuzz_settings
    @given(mutated(token))
    @counted
    def prop(value: str) -> None:
        if value == token:
            return
        result = runner.run(fob.authenticate({name: value}, secure=False))
        assert result.session is None

    prop()

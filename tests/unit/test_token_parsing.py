"""Strict token parsing: every malformed input is one opaque InvalidToken, never another exception."""

from __future__ import annotations

import pytest

from keyfob import InvalidToken, SessionExpired
from keyfob.tokens._parse import (
    b64url_decode,
    b64url_decode_strict,
    b64url_encode,
    check_claims,
    parse_json_object,
)

DECODERS = [b64url_decode, b64url_decode_strict]


@pytest.mark.parametrize("decode", DECODERS)
@pytest.mark.parametrize("text", ["éééé", "AAA\u00e9", "AAAAAAA\u0100", "\uff21\uff21\uff21\uff21", "AA==",
                                  "AA AA", "AAAAA", "AB", "AAB", "A+/A", "AA\nA"])
def test_non_canonical_base64url_is_invalid_token(decode: object, text: str) -> None:
    with pytest.raises(InvalidToken):
        decode(text)  # type: ignore[operator]


@pytest.mark.parametrize("decode", DECODERS)
@pytest.mark.parametrize("data", [b"", b"\x00", b"\xff\xfe", b"abc", b"abcd", b"\xfb\xff"])
def test_canonical_base64url_round_trips(decode: object, data: bytes) -> None:
    assert decode(b64url_encode(data)) == data  # type: ignore[operator]


@pytest.mark.parametrize("raw", [b'{"a":1,"a":2}', b"[1]", b'{"a":NaN}', b'{"a":1e400}', b' {"a":1}',
                                 b'{"a":1} ', b'{"a":1}x', b"\xff", b"", b'{"a":' * 9 + b"1" + b"}" * 9])
def test_malformed_json_is_invalid_token(raw: bytes) -> None:
    with pytest.raises(InvalidToken):
        parse_json_object(raw)


def test_json_nesting_at_the_limit_is_accepted() -> None:
    raw = b'{"a":' * 7 + b"1" + b"}" * 7
    assert parse_json_object(raw, max_depth=7)["a"]
    with pytest.raises(InvalidToken):
        parse_json_object(raw, max_depth=6)


@pytest.mark.parametrize("claims", [{"exp": 100}, {"exp": 100.0, "iat": 50.0}, {"exp": 100, "nbf": 0}])
def test_exp_is_exclusive_with_leeway(claims: dict[str, float]) -> None:
    check_claims(claims, now=99, leeway=0)
    check_claims(claims, now=104, leeway=5)
    with pytest.raises(SessionExpired) as info:
        check_claims(claims, now=105, leeway=5)
    assert info.value.expired_at == 100 and info.value.reason == "max_age"


@pytest.mark.parametrize("name", ["iat", "nbf"])
def test_a_token_from_the_future_is_invalid_beyond_the_leeway(name: str) -> None:
    for claims in ({"exp": 1000, name: 105}, {"exp": 1000.0, name: 105.0}):
        check_claims(claims, now=100, leeway=5)
        with pytest.raises(InvalidToken):
            check_claims(claims, now=99.5, leeway=5)


@pytest.mark.parametrize("claims", [{}, {"exp": None}, {"exp": "100"}, {"exp": True}, {"exp": float("inf")},
                                    {"exp": 2**54}, {"exp": 100, "iat": "1"}, {"exp": 100, "nbf": None}])
def test_bad_time_claims_are_invalid_token(claims: dict[str, object]) -> None:
    with pytest.raises(InvalidToken):
        check_claims(claims, now=0)


def test_exp_may_be_optional() -> None:
    check_claims({}, now=0, require_exp=False)

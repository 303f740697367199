"""keyfob.tokens._parse: the strict base64url / JSON / time-claim checks every token goes through."""

from __future__ import annotations

import base64
import math
from typing import Any

import pytest

from keyfob.errors import InvalidToken, SessionExpired
from keyfob.tokens._parse import (
    MAX_DEPTH,
    b64url_decode,
    b64url_encode,
    check_claims,
    jwk_thumbprint,
    parse_json_object,
)

NOW = 1_800_000_000.0


# -- base64url ------------------------------------------------------------------------------


@pytest.mark.parametrize("data", [b"", b"f", b"fo", b"foo", b"foob", b"\xfb\xff\xfe", bytes(range(256))])
def test_b64url_round_trips_and_matches_the_stdlib_without_padding(data: bytes) -> None:
    encoded = b64url_encode(data)
    assert encoded == base64.urlsafe_b64encode(data).decode().rstrip("=")
    assert b64url_decode(encoded) == data


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("Zm9v=", id="padding"),
        pytest.param("Zm8=", id="padding-2"),
        pytest.param("Zm 9v", id="inner-space"),
        pytest.param("Zm9v\n", id="trailing-newline"),
        pytest.param(" Zm9v", id="leading-space"),
        pytest.param("+/8A", id="standard-alphabet"),
        pytest.param("Zm9vY", id="length-mod-4-is-1"),
        pytest.param("Zm9=v", id="padding-inside"),
        pytest.param("Zh", id="non-canonical-4-unused-bits"),
        pytest.param("Zm9", id="non-canonical-2-unused-bits"),
        pytest.param("Zm9vé", id="non-ascii"),
        pytest.param("Zm9v\x00", id="nul"),
    ],
)
def test_non_canonical_or_foreign_base64url_is_rejected(text: str) -> None:
    with pytest.raises(InvalidToken):
        b64url_decode(text)


def test_canonical_short_tails_are_accepted() -> None:
    assert b64url_decode("Zg") == b"f"
    assert b64url_decode("Zm8") == b"fo"


# -- JSON -------------------------------------------------------------------------------------


def test_a_plain_object_parses() -> None:
    assert parse_json_object(b'{"a":1,"b":[1,{"c":null}],"d":"x"}') == {
        "a": 1,
        "b": [1, {"c": None}],
        "d": "x",
    }


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b'{"a":1,"a":2}', id="duplicate-top-level-key"),
        pytest.param(b'{"o":{"k":1,"k":1}}', id="duplicate-nested-key"),
        pytest.param(b'{"exp":NaN}', id="nan"),
        pytest.param(b'{"exp":Infinity}', id="infinity"),
        pytest.param(b'{"exp":-Infinity}', id="minus-infinity"),
        pytest.param(b'{"exp":1e400}', id="float-overflowing-to-infinity"),
        pytest.param(b"[1,2]", id="top-level-array"),
        pytest.param(b'"x"', id="top-level-string"),
        pytest.param(b"null", id="top-level-null"),
        pytest.param(b"", id="empty"),
        pytest.param(b'{"a":1}{"b":2}', id="two-objects"),
        pytest.param(b'{"a":1} ', id="trailing-space"),
        pytest.param(b' {"a":1}', id="leading-space"),
        pytest.param(b'{"a":"\xff"}', id="invalid-utf8"),
        pytest.param('{"a":"é"}'.encode("utf-16"), id="utf16"),
        pytest.param(b"\xef\xbb\xbf{}", id="utf8-bom"),
        pytest.param(b'{"a":1,}', id="trailing-comma"),
        pytest.param(b"{'a':1}", id="single-quotes"),
        pytest.param(b'{"n":' + b"9" * 5000 + b"}", id="huge-integer"),
    ],
)
def test_malformed_or_ambiguous_json_is_rejected(raw: bytes) -> None:
    with pytest.raises(InvalidToken):
        parse_json_object(raw)


def test_nesting_up_to_the_limit_is_accepted() -> None:
    raw = b'{"a":' * (MAX_DEPTH - 1) + b"[]" + b"}" * (MAX_DEPTH - 1)
    assert parse_json_object(raw)


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b'{"a":' * MAX_DEPTH + b"[]" + b"}" * MAX_DEPTH, id="objects-and-array"),
        pytest.param(b'{"a":' + b"[" * 5000 + b"]" * 5000 + b"}", id="deep-arrays"),
        pytest.param(b'{"a":' + b"[" * 100_000, id="deep-and-unterminated"),
    ],
)
def test_json_nested_deeper_than_the_limit_is_rejected_before_parsing(raw: bytes) -> None:
    with pytest.raises(InvalidToken):
        parse_json_object(raw)


def test_many_siblings_nested_exactly_to_the_limit_are_accepted() -> None:
    raw = b'{"a":{"b":1},"c":{"d":2},"e":{}}'  # four openers, depth 2 at most
    assert parse_json_object(raw, max_depth=2)["c"] == {"d": 2}
    with pytest.raises(InvalidToken):
        parse_json_object(raw, max_depth=1)


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    raw = b'{"a":"' + b"[{" * 50 + b'\\"[[[", "b":[[1]]}'
    assert parse_json_object(raw)["b"] == [[1]]


# -- time claims -------------------------------------------------------------------------------


def test_a_token_without_exp_is_refused() -> None:
    with pytest.raises(InvalidToken):
        check_claims({"sub": "1"}, now=NOW)


def test_exp_is_optional_only_when_not_required() -> None:
    check_claims({"sub": "1"}, now=NOW, require_exp=False)


@pytest.mark.parametrize("exp", [NOW + 1, NOW + 0.5, int(NOW) + 10])
def test_an_exp_in_the_future_passes(exp: float) -> None:
    check_claims({"exp": exp}, now=NOW)


@pytest.mark.parametrize("exp", [NOW, NOW - 1, 0])
def test_a_token_whose_exp_is_now_or_past_has_expired(exp: float) -> None:
    with pytest.raises(SessionExpired) as info:
        check_claims({"exp": exp}, now=NOW)
    assert info.value.expired_at == exp
    assert info.value.reason == "max_age"


def test_leeway_extends_exp_like_jose_clock_tolerance() -> None:
    check_claims({"exp": NOW - 10}, now=NOW, leeway=15)
    with pytest.raises(SessionExpired):
        check_claims({"exp": NOW - 15}, now=NOW, leeway=15)


@pytest.mark.parametrize("claim", ["nbf", "iat"])
def test_nbf_or_iat_beyond_the_skew_in_the_future_is_refused(claim: str) -> None:
    check_claims({"exp": NOW + 100, claim: NOW + 5}, now=NOW, leeway=5)
    with pytest.raises(InvalidToken):
        check_claims({"exp": NOW + 100, claim: NOW + 5.5}, now=NOW, leeway=5)


@pytest.mark.parametrize("claim", ["exp", "nbf", "iat"])
@pytest.mark.parametrize(
    "value",
    [
        pytest.param(str(int(NOW + 100)), id="string"),
        pytest.param(True, id="true"),
        pytest.param(False, id="false"),
        pytest.param(None, id="null"),
        pytest.param(math.inf, id="inf"),
        pytest.param(math.nan, id="nan"),
        pytest.param(2**53 + 1, id="beyond-2-53"),
        pytest.param(-(2**53) - 1, id="below-minus-2-53"),
        pytest.param([NOW + 100], id="list"),
        pytest.param({"t": NOW + 100}, id="object"),
    ],
)
def test_time_claims_must_be_finite_json_numbers(claim: str, value: Any) -> None:
    claims = {"exp": NOW + 100, claim: value}
    with pytest.raises(InvalidToken):
        check_claims(claims, now=NOW)


@pytest.mark.parametrize("value", [2**53, 2.0**53], ids=["int", "float"])
def test_time_claims_at_plus_or_minus_2_53_are_accepted(value: float) -> None:
    check_claims({"exp": value, "nbf": -value, "iat": -value}, now=NOW)


@pytest.mark.parametrize("exp", [str(int(NOW + 100)), None, [int(NOW + 100)]])
def test_a_malformed_exp_beside_an_integer_iat_is_refused(exp: Any) -> None:
    with pytest.raises(InvalidToken):
        check_claims({"exp": exp, "iat": int(NOW)}, now=NOW)


def test_a_future_nbf_is_refused_beside_integer_exp_and_iat() -> None:
    with pytest.raises(InvalidToken):
        check_claims({"exp": int(NOW) + 100, "iat": int(NOW), "nbf": int(NOW) + 50}, now=NOW)


def test_invalid_token_message_is_opaque() -> None:
    with pytest.raises(InvalidToken) as info:
        b64url_decode("secret-looking-token=")
    assert "secret-looking-token" not in str(info.value)
    assert str(info.value) == "the token is not valid (sign in again)"


def test_jwk_thumbprint_matches_rfc7638_example() -> None:
    # RFC 7638 §3.1
    jwk = {
        "kty": "RSA",
        "e": "AQAB",
        "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECP"
        "ebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368"
        "QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2"
        "NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
    }
    assert jwk_thumbprint(jwk) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"

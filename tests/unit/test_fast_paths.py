"""The per-request shortcuts build exactly what the plain code builds."""

from __future__ import annotations

import dataclasses
import pickle
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keyfob._frozen import fast_constructor
from keyfob._session import Session
from keyfob.engine import AuthResult
from keyfob.stores import SessionRecord
from keyfob.web._cookies import (
    _CONTROL_RE,
    _COOKIE_VALUE_RE,
    _valid_value,
    parse_cookie_bytes,
    parse_cookie_header,
)


@pytest.mark.parametrize("cls", [SessionRecord, Session, AuthResult])  # the per-request builds
def test_fast_constructor_is_used_and_builds_the_real_class(cls: type[Any]) -> None:
    make = fast_constructor(cls)
    assert make is not cls  # the layouts are compatible: the shortcut is active
    args: list[Any] = [f"v{i}" for i, f in enumerate(dataclasses.fields(cls)) if
                       f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    fast, plain = make(*args), cls(*args)
    assert type(fast) is cls
    assert fast == plain and repr(fast) == repr(plain)
    assert pickle.loads(pickle.dumps(fast)) == plain
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.__setattr__(dataclasses.fields(cls)[0].name, "changed")


def test_session_positional_order_is_pinned() -> None:
    # strategies build Session positionally: (id, user_id, data, created_at, expires_at, authenticated_at,
    # strategy, claims, policy) — a reordering of the dataclass must fail here, not silently swap values.
    assert [f.name for f in dataclasses.fields(Session)] == [
        "id", "user_id", "data", "created_at", "expires_at", "authenticated_at", "strategy", "claims",
        "policy",
    ]


def test_the_per_request_builders_are_the_shortcuts() -> None:
    from keyfob._session import new_auth_result, new_session

    assert new_session is not Session and new_auth_result is not AuthResult
    s = new_session("sid", "u", {"role": "a"}, 1.0, 2.0, 1.5, "jwt")
    assert type(s) is Session and s == Session("sid", "u", {"role": "a"}, 1.0, 2.0, 1.5, "jwt")
    assert s.claims == {} and s.policy == {}
    assert s.claims is not new_session("x", "u", {}, 1, 2, 1, "jwt").claims  # a fresh default each time
    r = new_auth_result(s)
    assert type(r) is AuthResult and r == AuthResult(s) and r.cookies == [] and r.reason is None


def test_fast_constructor_defaults_are_fresh() -> None:
    make = fast_constructor(AuthResult)
    assert make(None).cookies is not make(None).cookies


def test_fast_constructor_leaves_other_classes_alone() -> None:
    @dataclasses.dataclass(frozen=True, slots=True)
    class Checked:
        x: int

        def __post_init__(self) -> None:
            if self.x < 0:
                raise ValueError("x")

    assert fast_constructor(Checked) is Checked

    @dataclasses.dataclass
    class Mutable:
        x: int

    assert fast_constructor(Mutable) is Mutable


def test_cookie_value_check_matches_the_regex() -> None:
    for code in range(0x180):
        for value in (chr(code), f"ab{chr(code)}cd"):
            assert _valid_value(value) == bool(_COOKIE_VALUE_RE.fullmatch(value))


def test_cookie_header_control_characters_still_drop_only_their_pair() -> None:
    got = parse_cookie_header('a=1; b="2"; c=x\x01y; d\x7f=4; e=é; f=5')
    assert got == {"a": "1", "b": "2", "e": "é", "f": "5"}


def _parse_pair_by_pair(header: str) -> dict[str, str]:
    """parse_cookie_header's documented rules, written plainly: a regex search in every pair."""
    cookies: dict[str, str] = {}
    for pair in header[: 64 * 1024].split(";"):
        name, sep, value = pair.partition("=")
        name, value = name.strip(" \t"), value.strip(" \t")
        if not sep or not name or name in cookies or _CONTROL_RE.search(name + value):
            continue
        cookies[name] = value[1:-1] if len(value) >= 2 and value[0] == value[-1] == '"' else value
    return cookies


# Every place a character can sit in a pair: name, value, their edges (TAB is stripped there, other
# control characters are not), inside quotes, and a first occurrence that is dropped for it.
_SHAPES = ("a=1; b{c}=2; c=3", "a=1; b=x{c}y; c=3", "a={c}1; b=2", "a=1{c}", "{c}a=1", "a=1;{c}b=2",
           'a="{c}"', "a=1{c}; a=2", "a{c}=1; a=2", "{c}", "a{c}", "a={c}")


def test_cookie_header_fast_control_check_matches_the_pair_by_pair_rules() -> None:
    for code in range(0x180):
        for shape in _SHAPES:
            header = shape.format(c=chr(code))
            expected = _parse_pair_by_pair(header)
            assert parse_cookie_header(header) == expected, (code, shape)
            if code < 0x100:  # the ASGI adapter's bytes, read as latin-1
                assert parse_cookie_bytes(header.encode("latin-1")) == expected, (code, shape)


@settings(max_examples=300, deadline=None)
@given(header=st.text(st.sampled_from("ab=; \t\"\x00\x01\x09\x0a\x1f\x7f\x80\xe9\u0100"), max_size=40))
def test_cookie_header_parse_matches_the_pair_by_pair_rules(header: str) -> None:
    assert parse_cookie_header(header) == _parse_pair_by_pair(header)


@settings(max_examples=300, deadline=None)
@given(raw=st.binary(max_size=60))
def test_cookie_bytes_parse_as_their_latin1_text(raw: bytes) -> None:
    assert parse_cookie_bytes(raw) == parse_cookie_header(raw.decode("latin-1"))


def test_cookie_bytes_are_cut_at_64_kb_like_the_text() -> None:
    for raw in (b"a=" + b"x" * 70_000, b"a=1; " + b"b" * (64 * 1024 - 7) + b"=2\x00", b"b=\x01" * 20_000):
        assert parse_cookie_bytes(raw) == parse_cookie_header(raw.decode("latin-1"))


@pytest.mark.parametrize("text", ['{"role":"admin","n":[1,2,{"x":null}]}', ' {"a":1} ', '{"a": "é"}\n',
                                  '[1]', '"s"', "1", '{"a":1}x', "nope", "{", "", "{}"])
def test_sql_data_codec_reads_like_json_loads(text: str) -> None:
    # _loads decodes with JSONDecoder.raw_decode and leaves anything else to json.loads
    import json

    from keyfob.stores.sql._statements import _loads

    try:
        want: Any = json.loads(text) if text else {}
    except ValueError as exc:
        with pytest.raises(type(exc)):
            _loads(text)
        return
    assert _loads(text) == (want if isinstance(want, dict) else {})

"""keyfob.web cookies: Set-Cookie serialisation, prefixes, Auth.js chunking, parsing."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from email.utils import parsedate_to_datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keyfob.web import (
    CHUNK_SIZE,
    MAX_CHUNKS,
    MAX_VALUE_SIZE,
    CookieSpec,
    SetCookie,
    is_local_development,
    parse_cookie_header,
)
from keyfob.web._cookies import parse_joined_cookie_header

NOW = 1_800_000_000.0  # Fri, 15 Jan 2027 08:00:00 GMT
# Characters a token may hold (RFC 6265 cookie-octets); JWE/JWS use the base64url subset.
COOKIE_OCTETS = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in '",;\\')


def spec(**kwargs: object) -> CookieSpec:
    options: dict[str, object] = {"secure": True}
    options.update(kwargs)
    return CookieSpec("kf.session", **options)  # type: ignore[arg-type]


def browser(jar: Mapping[str, str], set_cookies: Iterable[SetCookie]) -> dict[str, str]:
    """What a browser's jar holds after applying these Set-Cookie headers, in order."""
    out = dict(jar)
    for c in set_cookies:
        if c.deletes:
            out.pop(c.name, None)
        else:
            out[c.name] = c.value
    return out


# --- SetCookie.header -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cookie", "expected"),
    [
        pytest.param(
            SetCookie("sid", "abc", max_age=60),
            "sid=abc; Path=/; Max-Age=60; Expires=Fri, 15 Jan 2027 08:01:00 GMT; "
            "HttpOnly; Secure; SameSite=Lax",
            id="defaults",
        ),
        pytest.param(
            SetCookie("sid", "abc", max_age=None, secure=False, httponly=False, samesite="strict"),
            "sid=abc; Path=/; SameSite=Strict",
            id="browser-session-cookie-without-expiry",
        ),
        pytest.param(
            SetCookie("sid", "", max_age=0, domain="example.com", path="/app"),
            "sid=; Path=/app; Domain=example.com; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT; "
            "HttpOnly; Secure; SameSite=Lax",
            id="deletion-expires-in-the-past",
        ),
        pytest.param(
            SetCookie("sid", "abc", max_age=10, secure=False, samesite="None"),
            "sid=abc; Path=/; Max-Age=10; Expires=Fri, 15 Jan 2027 08:00:10 GMT; "
            "HttpOnly; Secure; SameSite=None",
            id="samesite-none-forces-secure",
        ),
    ],
)
def test_set_cookie_header_is_serialised_with_rfc_attributes(cookie: SetCookie, expected: str) -> None:
    assert cookie.header(now=NOW) == expected


def test_expires_defaults_to_the_system_clock() -> None:
    before = time.time()
    header = SetCookie("sid", "abc", max_age=3600).header()
    after = time.time()
    expires = parsedate_to_datetime(header.split("; ")[3].removeprefix("Expires=")).timestamp()
    assert int(before) + 3600 <= expires <= after + 3600


def test_huge_max_age_does_not_overflow_expires() -> None:
    assert "Expires=Fri, 31 Dec 9999 23:59:59 GMT" in SetCookie("s", "v", max_age=10**15).header(now=NOW)


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"name": "a;b"}, id="semicolon-in-name"),
        pytest.param({"name": "a b"}, id="space-in-name"),
        pytest.param({"name": ""}, id="empty-name"),
        pytest.param({"name": "a\r\nSet-Cookie: x"}, id="crlf-in-name"),
        pytest.param({"name": "sé"}, id="non-ascii-name"),
        pytest.param({"value": "v; Domain=evil.example"}, id="semicolon-in-value"),
        pytest.param({"value": "v\r\nSet-Cookie: admin=1"}, id="crlf-in-value"),
        pytest.param({"value": "v\x00"}, id="nul-in-value"),
        pytest.param({"value": "a b"}, id="space-in-value"),
        pytest.param({"value": "é"}, id="non-ascii-value"),
        pytest.param({"value": "x" * 4096}, id="value-too-large"),
        pytest.param({"path": "/a;Domain=evil"}, id="semicolon-in-path"),
        pytest.param({"path": "/a\nb"}, id="newline-in-path"),
        pytest.param({"path": "app"}, id="relative-path"),
        pytest.param({"domain": "evil.example; Secure"}, id="semicolon-in-domain"),
        pytest.param({"domain": "a\r\n.example"}, id="crlf-in-domain"),
        pytest.param({"samesite": "sometimes"}, id="unknown-samesite"),
        pytest.param({"max_age": -1}, id="negative-max-age"),
        pytest.param({"max_age": True}, id="bool-max-age"),
        pytest.param({"max_age": 0}, id="deletion-with-a-value"),
        pytest.param({"name": "__Host-sid", "secure": False}, id="host-prefix-insecure"),
        pytest.param({"name": "__Host-sid", "domain": "example.com"}, id="host-prefix-with-domain"),
        pytest.param({"name": "__host-sid", "path": "/app"}, id="host-prefix-lowercase-with-path"),
        pytest.param({"name": "__Secure-sid", "secure": False}, id="secure-prefix-insecure"),
    ],
)
def test_set_cookie_rejects_what_could_inject_or_be_dropped(kwargs: dict[str, object]) -> None:
    options: dict[str, object] = {"name": "sid", "value": "tok", "max_age": 60}
    options.update(kwargs)
    with pytest.raises(ValueError):
        SetCookie(**options)  # type: ignore[arg-type]


def test_invalid_value_error_does_not_echo_the_value() -> None:
    with pytest.raises(ValueError) as info:
        SetCookie("sid", "secret-token-material;", max_age=60)
    assert "secret-token-material" not in str(info.value)


def test_set_cookie_repr_hides_the_value() -> None:
    cookie = SetCookie("sid", "secret-token-material", max_age=60)
    assert "secret-token-material" not in repr(cookie)
    assert "sid" in repr(cookie)


# --- CookieSpec names and prefixes ------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        pytest.param({"secure": True}, "__Host-kf.session", id="secure-host-only"),
        pytest.param({"secure": True, "domain": "example.com"}, "__Secure-kf.session", id="with-domain"),
        pytest.param({"secure": True, "path": "/app"}, "__Secure-kf.session", id="with-path"),
        pytest.param({"secure": False}, "kf.session", id="insecure-has-no-prefix"),
        pytest.param({"secure": False, "samesite": "none"}, "__Host-kf.session", id="samesite-none"),
        pytest.param({"secure": True, "prefix": ""}, "kf.session", id="explicit-no-prefix"),
        pytest.param({"secure": True, "prefix": "__Secure-"}, "__Secure-kf.session", id="auth-js-style"),
    ],
)
def test_effective_name_carries_the_prefix(kwargs: dict[str, object], name: str) -> None:
    assert CookieSpec("kf.session", **kwargs).name == name  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"secure": False, "prefix": "__Host-"}, id="host-prefix-insecure"),
        pytest.param({"secure": True, "prefix": "__Host-", "path": "/app"}, id="host-prefix-with-path"),
        pytest.param({"secure": False, "prefix": "__Secure-"}, id="secure-prefix-insecure"),
        pytest.param({"secure": True, "domain": "evil; x"}, id="bad-domain"),
        pytest.param({"secure": True, "prefix": "bad prefix "}, id="bad-prefix"),
    ],
)
def test_cookie_spec_rejects_contradictory_attributes(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        CookieSpec("kf.session", **kwargs)  # type: ignore[arg-type]


def test_cookie_spec_rejects_empty_base_name() -> None:
    with pytest.raises(ValueError):
        CookieSpec("", secure=True)


def test_written_cookies_carry_the_spec_attributes() -> None:
    s = CookieSpec("sid", secure=True, samesite="strict", domain="example.com", path="/app", httponly=False)
    [cookie] = s.write("tok", max_age=300)
    assert (cookie.name, cookie.domain, cookie.path, cookie.secure, cookie.httponly, cookie.samesite) == (
        "__Secure-sid", "example.com", "/app", True, False, "strict"
    )
    assert cookie.max_age == 300


# --- write / read / chunking --------------------------------------------------------------------


def test_chunk_size_matches_auth_js() -> None:
    # packages/core/src/lib/utils/cookie.ts: ALLOWED_COOKIE_SIZE (4096) - ESTIMATED_EMPTY_COOKIE_SIZE (160)
    assert CHUNK_SIZE == 3936


@pytest.mark.parametrize(
    ("length", "names"),
    [
        pytest.param(1, ["__Host-kf.session"], id="tiny"),
        pytest.param(CHUNK_SIZE, ["__Host-kf.session"], id="exactly-one-chunk"),
        pytest.param(CHUNK_SIZE + 1, ["__Host-kf.session.0", "__Host-kf.session.1"], id="one-over"),
        pytest.param(10_000, [f"__Host-kf.session.{i}" for i in range(3)], id="three-chunks"),
    ],
)
def test_value_is_split_into_auth_js_chunks_when_too_large(length: int, names: list[str]) -> None:
    value = ("abcdefghij" * (length // 10 + 1))[:length]
    cookies = spec().write(value, max_age=60)
    assert [c.name for c in cookies] == names
    assert all(len(c.value) <= CHUNK_SIZE for c in cookies)
    assert "".join(c.value for c in cookies) == value
    assert all(len(c.header(now=NOW)) <= 4096 for c in cookies)


@pytest.mark.parametrize("chunk_size", [CHUNK_SIZE, 3933, 1000], ids=["auth-js-v5", "auth-js-older", "small"])
def test_chunked_auth_js_cookie_is_reassembled(chunk_size: int) -> None:
    value = "eyJhbGciOiJkaXIiLCJlbmMiOiJBMjU2Q0JDLUhTNTEyIn0..x" * 200  # ~10 KB JWE-like
    name = "__Secure-authjs.session-token"
    jar = {f"{name}.{i}": value[start : start + chunk_size] for i, start in
           enumerate(range(0, len(value), chunk_size))}
    jar["authjs.callback-url"] = "http%3A%2F%2Flocalhost"
    assert CookieSpec("authjs.session-token", secure=True, prefix="__Secure-").read(jar) == value


@settings(max_examples=150, deadline=None)
@given(value=st.text(alphabet=COOKIE_OCTETS, min_size=1, max_size=12 * 1024))
def test_write_then_read_round_trips_any_value_up_to_12_kb(value: str) -> None:
    s = spec()
    jar = browser({}, s.write(value, max_age=60))
    assert s.read(jar) == value


@settings(max_examples=60, deadline=None)
@given(
    first=st.integers(min_value=1, max_value=12 * 1024),
    second=st.integers(min_value=1, max_value=12 * 1024),
)
def test_rewriting_clears_every_stale_shape(first: int, second: int) -> None:
    s = spec()
    jar = browser({"other": "x"}, s.write("a" * first, max_age=60))
    jar = browser(jar, s.write("b" * second, max_age=60, existing=jar))
    assert s.read(jar) == "b" * second
    expected = {"other"} | {c.name for c in s.write("b" * second, max_age=60)}
    assert set(jar) == expected


@pytest.mark.parametrize(
    ("before", "after", "cleared"),
    [
        pytest.param(3 * CHUNK_SIZE, 2 * CHUNK_SIZE, ["__Host-kf.session.2"], id="three-chunks-to-two"),
        pytest.param(3 * CHUNK_SIZE, 10, [f"__Host-kf.session.{i}" for i in range(3)], id="chunks-to-plain"),
        pytest.param(10, 2 * CHUNK_SIZE, ["__Host-kf.session"], id="plain-to-chunks"),
        pytest.param(10, 20, [], id="plain-to-plain"),
    ],
)
def test_stale_chunks_are_cleared_when_the_value_changes_shape(
    before: int, after: int, cleared: list[str]
) -> None:
    s = spec()
    jar = browser({}, s.write("a" * before, max_age=60))
    out = s.write("b" * after, max_age=60, existing=jar)
    assert [c.name for c in out if c.deletes] == cleared
    assert all(c.header(now=NOW).startswith(f"{c.name}=; ") for c in out if c.deletes)


def test_clear_deletes_the_plain_name_and_every_present_chunk() -> None:
    s = spec()
    jar = {"__Host-kf.session.1": "b", "__Host-kf.session.0": "a", "__Host-kf.session.07": "x",
           "__Host-kf.sessionX": "y", "unrelated": "z"}
    out = s.clear(jar)
    assert [c.name for c in out] == ["__Host-kf.session", "__Host-kf.session.0", "__Host-kf.session.1"]
    assert all(c.deletes and c.value == "" and "Max-Age=0" in c.header() for c in out)
    assert [c.name for c in s.clear({})] == ["__Host-kf.session"]


def test_clearing_is_bounded_against_thousands_of_junk_chunks() -> None:
    jar = {f"__Host-kf.session.{i}": "x" for i in range(5000)}
    assert len(spec().clear(jar)) <= 4 * MAX_CHUNKS + 1


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        pytest.param({"value": ""}, "clear()", id="empty"),
        pytest.param({"value": "x" * (MAX_VALUE_SIZE + 1)}, "more than", id="too-large"),
        pytest.param({"value": "a;b"}, "not allowed", id="semicolon"),
        pytest.param({"value": "a\r\nb"}, "not allowed", id="crlf"),
        pytest.param({"max_age": 0}, "positive", id="zero-max-age"),
        pytest.param({"max_age": -5}, "positive", id="negative-max-age"),
    ],
)
def test_write_rejects_values_the_caller_should_not_produce(kwargs: dict[str, object], fragment: str) -> None:
    options: dict[str, object] = {"value": "tok", "max_age": 60}
    options.update(kwargs)
    with pytest.raises(ValueError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        spec().write(**options)  # type: ignore[arg-type]


def test_write_accepts_browser_session_lifetime() -> None:
    [cookie] = spec().write("tok", max_age=None)
    assert "Max-Age" not in cookie.header() and "Expires" not in cookie.header()


N = "__Host-kf.session"


@pytest.mark.parametrize(
    ("jar", "expected"),
    [
        pytest.param({}, None, id="nothing"),
        pytest.param({N: "tok"}, "tok", id="plain"),
        pytest.param({N: '"tok"'}, None, id="quotes-are-not-cookie-octets"),
        pytest.param({N: "", f"{N}.0": "a", f"{N}.1": "b"}, "ab", id="empty-plain-falls-back-to-chunks"),
        pytest.param({N: "tok", f"{N}.0": "a"}, "tok", id="plain-wins-over-chunks"),
        pytest.param({f"{N}.1": "b", f"{N}.0": "a"}, "ab", id="chunks-in-numeric-order"),
        pytest.param({f"{N}.{i}": str(i % 10) for i in range(12)}, "012345678901", id="ten-sorts-after-nine"),
        pytest.param({f"{N}.0": "a", f"{N}.2": "c"}, None, id="gap"),
        pytest.param({f"{N}.1": "b"}, None, id="missing-first-chunk"),
        pytest.param({f"{N}.0": "a", f"{N}.1": ""}, None, id="empty-chunk"),
        pytest.param({f"{N}.0": "a", f"{N}.01": "b"}, "a", id="non-canonical-index-ignored"),
        pytest.param({f"{N}.{i}": "x" for i in range(MAX_CHUNKS + 1)}, None, id="too-many-chunks"),
        pytest.param({f"{N}.{i}": "x" for i in range(1000)}, None, id="a-thousand-chunks"),
        pytest.param({f"{N}.0": "a", f"{N}.{MAX_CHUNKS}": "x"}, None, id="chunk-beyond-the-limit"),
        pytest.param({N: "x" * (MAX_VALUE_SIZE + 1)}, None, id="huge-plain"),
        pytest.param({f"{N}.{i}": "x" * 4000 for i in range(5)}, None, id="chunks-over-16-kb"),
        pytest.param({N: "tok\x00"}, None, id="nul"),
        pytest.param({N: "tök"}, None, id="non-ascii"),
        pytest.param({N: "a\r\nb"}, None, id="crlf"),
        pytest.param({f"{N}.0": "a", f"{N}.1": "b\x00"}, None, id="nul-in-a-chunk"),
        pytest.param({"kf.session": "tok", "__Secure-kf.session": "tok"}, None, id="other-prefixes-ignored"),
    ],
)
def test_read_reassembles_or_returns_none_for_hostile_input(
    jar: dict[str, str], expected: str | None
) -> None:
    assert spec().read(jar) == expected


class _CountingJar(dict[str, str]):
    """Counts lookups; walking the whole jar (what would make the work grow with it) is an error."""

    lookups = 0

    def get(self, key: str, default: object = None) -> Any:
        self.lookups += 1
        return super().get(key, default)

    def __iter__(self) -> Any:
        raise AssertionError("read() walked the whole cookie jar")

    keys = values = items = __iter__  # type: ignore[assignment]


def test_read_bounds_work_on_huge_cookie_dicts() -> None:
    # counted, not timed: a wall-clock bound fails on a loaded machine and proves less
    jar = _CountingJar({f"{N}.{i}": "x" * 100 for i in range(MAX_CHUNKS)})
    jar.update({f"junk{i}": "y" for i in range(100_000)})
    assert spec().read(jar) == "x" * 100 * MAX_CHUNKS
    assert jar.lookups <= 2 * MAX_CHUNKS + 2


class _ExplodingMapping(dict[str, str]):
    def get(self, key: str, default: object = None) -> str:
        raise RuntimeError("boom")


def test_read_never_raises_even_for_a_misbehaving_mapping() -> None:
    assert spec().read(_ExplodingMapping()) is None
    assert spec().read({N: 42}) is None  # type: ignore[dict-item]


_names = st.one_of(
    st.sampled_from([N, f"{N}.", f"{N}.00", f"{N}.-1", f"{N}.{MAX_CHUNKS}", f"{N}.1e3", f"{N}.٣"]),
    st.integers(min_value=0, max_value=40).map(lambda i: f"{N}.{i}"),
    st.text(max_size=30),
)


@settings(max_examples=300, deadline=None)
@given(jar=st.dictionaries(_names, st.text(max_size=6000), max_size=30))
def test_read_never_raises_for_arbitrary_cookie_dicts(jar: dict[str, str]) -> None:
    value = spec().read(jar)
    assert value is None or (0 < len(value) <= MAX_VALUE_SIZE and value.isascii())


@settings(max_examples=200, deadline=None)
@given(jar=st.dictionaries(_names, st.text(max_size=50), max_size=30))
def test_write_and_clear_never_raise_for_arbitrary_existing_cookies(jar: dict[str, str]) -> None:
    s = spec()
    out = s.write("tok", max_age=60, existing=jar)
    assert out[-1].name == N
    assert all(c.deletes for c in out[:-1])
    assert s.clear(jar)[0].name == N


# --- parse_cookie_header --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        pytest.param("", {}, id="empty"),
        pytest.param("a=1; b=2", {"a": "1", "b": "2"}, id="simple"),
        pytest.param("a=1;b=2;;", {"a": "1", "b": "2"}, id="no-spaces-and-empty-pairs"),
        pytest.param("a=1; a=2", {"a": "1"}, id="first-occurrence-wins"),
        pytest.param('a="quoted"', {"a": "quoted"}, id="surrounding-quotes-dropped"),
        pytest.param("a=x=y", {"a": "x=y"}, id="equals-in-value"),
        pytest.param("a=", {"a": ""}, id="empty-value"),
        pytest.param("novalue; b=2", {"b": "2"}, id="pair-without-equals-skipped"),
        pytest.param("=v; b=2", {"b": "2"}, id="empty-name-skipped"),
        pytest.param("a=1\x00; b=2", {"b": "2"}, id="nul-pair-ignored"),
        pytest.param("a=1\r\nX: y; b=2", {"b": "2"}, id="crlf-pair-ignored"),
        pytest.param("a\x01=1; b=2", {"b": "2"}, id="control-in-name-ignored"),
        pytest.param("é=ü", {"é": "ü"}, id="non-ascii-kept-for-read-to-judge"),
    ],
)
def test_parse_cookie_header_is_tolerant(header: str, expected: dict[str, str]) -> None:
    assert parse_cookie_header(header) == expected


@settings(max_examples=300, deadline=None)
@given(header=st.text(max_size=2000))
def test_parse_cookie_header_never_raises(header: str) -> None:
    for name, value in parse_cookie_header(header).items():
        assert name and "\x00" not in name + value and "\n" not in name + value


def test_parse_then_read_recovers_a_chunked_cookie() -> None:
    s = spec()
    value = "v" * 9000
    header = "; ".join(f"{c.name}={c.value}" for c in s.write(value, max_age=60))
    assert s.read(parse_cookie_header(f"theme=dark; {header}")) == value


@pytest.mark.parametrize("header", ["theme=dark, a=1; b=2", "theme=dark,a=1,b=2", "theme=dark; a=1, b=2"],
                         ids=["werkzeug-join", "gunicorn-and-django-join", "mixed"])
def test_cookie_headers_a_server_joined_with_commas_read_as_separate_cookies(header: str) -> None:
    assert parse_joined_cookie_header(header) == {"theme": "dark", "a": "1", "b": "2"}


def test_a_chunked_cookie_split_over_joined_cookie_headers_is_recovered() -> None:
    s = spec()
    value = "v" * 9000
    header = ", ".join(f"{c.name}={c.value}" for c in s.write(value, max_age=60))  # one header a chunk
    assert s.read(parse_joined_cookie_header(f"theme=dark, {header}")) == value


# --- is_local_development --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scheme", "host", "expected"),
    [
        ("http", "localhost", True),
        ("http", "localhost:8000", True),
        ("HTTP", "LocalHost:8000", True),
        ("http", "127.0.0.1:5000", True),
        ("http", "[::1]:8000", True),
        ("http", "[::1]", True),
        ("http", "::1", True),
        ("http", "app.localhost:3000", True),
        ("http", "localhost.", True),
        ("https", "localhost", False),
        ("http", "example.com", False),
        ("http", "localhost.example.com", False),
        ("http", "evil-localhost", False),
        ("http", "127.0.0.2", False),
        ("http", "localhost:80:80", False),
        ("http", "localhost:abc", False),
        ("http", "[::1]x", False),
        ("http", "[::1", False),
        ("http", "", False),
        ("ws", "localhost", False),
    ],
)
def test_is_local_development_only_for_plain_http_to_this_machine(
    scheme: str, host: str, expected: bool
) -> None:
    assert is_local_development(scheme, host) is expected


@given(scheme=st.text(max_size=10), host=st.text(max_size=100))
def test_is_local_development_never_raises(scheme: str, host: str) -> None:
    assert isinstance(is_local_development(scheme, host), bool)


# --- the keyfob.web facade -------------------------------------------------------------------------


def test_web_public_api_is_pinned_and_isort_sorted() -> None:
    import keyfob.web as web

    assert web.__all__ == [
        "CHUNK_SIZE",
        "CSRF_COOKIE",
        "CSRF_FIELD",
        "CSRF_HEADER",
        "MAX_CHUNKS",
        "MAX_FORM_BYTES",
        "MAX_VALUE_SIZE",
        "SAFE_METHODS",
        "AuthRoutes",
        "CSRFProtect",
        "CookieSpec",
        "Forbidden",
        "RequestCore",
        "RequestState",
        "RequestView",
        "SetCookie",
        "error_parts",
        "is_local_development",
        "not_signed_in",
        "parse_cookie_header",
    ]
    for name in ("AuthRoutes", "CSRFProtect", "CookieSpec", "Forbidden", "RequestCore", "RequestState",
                 "RequestView", "SetCookie", "error_parts", "is_local_development", "not_signed_in",
                 "parse_cookie_header"):
        assert getattr(web, name).__module__ == "keyfob.web"

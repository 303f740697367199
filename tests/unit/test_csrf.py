"""keyfob.web.csrf: Origin/Referer checking plus the signed double-submit token."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keyfob.errors import ConfigError, CSRFError
from keyfob.web import SAFE_METHODS, CookieSpec, CSRFProtect

KEY = b"k" * 32
OTHER_KEY = b"o" * 32
APP = "https://app.example"


ADMIN = "https://admin.example:8443"


def protect(*, key: bytes = KEY, allowed_origins: tuple[str, ...] = (ADMIN,)) -> CSRFProtect:
    return CSRFProtect(key, allowed_origins=allowed_origins, cookie=CookieSpec("kf.csrf", secure=True))


def issued(p: CSRFProtect | None = None) -> tuple[str, str]:
    """A fresh (token, cookie value) pair."""
    token, cookies = (p or protect()).issue(None)
    return token, cookies[0].value


def check(
    p: CSRFProtect,
    *,
    method: str = "POST",
    headers: dict[str, str] | None = None,
    cookie_value: str | None,
    submitted: str | None,
    request_origin: str = APP,
) -> None:
    p.check(
        method=method,
        headers={"origin": APP} if headers is None else headers,
        cookie_value=cookie_value,
        submitted=submitted,
        request_origin=request_origin,
    )


# --- issue ---------------------------------------------------------------------------------


def test_issue_sets_an_httponly_cookie_holding_the_signed_token() -> None:
    token, cookies = protect().issue(None)
    [cookie] = cookies
    assert cookie.name == "__Host-kf.csrf"
    assert cookie.httponly and cookie.secure and cookie.max_age is None
    cookie_token, _, signature = cookie.value.partition(".")
    assert cookie_token == token and len(token) >= 43 and signature


def test_issue_reuses_the_token_in_a_valid_cookie() -> None:
    p = protect()
    token, cookie_value = issued(p)
    assert p.issue(cookie_value) == (token, [])


@pytest.mark.parametrize(
    "cookie_value",
    [
        pytest.param("", id="empty"),
        pytest.param("token-without-signature", id="no-signature"),
        pytest.param("tok.", id="empty-signature"),
        pytest.param(".sig", id="empty-token"),
        pytest.param("tök.sig", id="non-ascii"),
        pytest.param("x" * 10_000, id="huge"),
    ],
)
def test_issue_replaces_a_malformed_cookie(cookie_value: str) -> None:
    token, cookies = protect().issue(cookie_value)
    assert len(cookies) == 1 and cookies[0].value.startswith(token + ".")


def test_issue_replaces_a_cookie_signed_with_another_key() -> None:
    old_token, cookie_value = issued(protect(key=OTHER_KEY))
    token, cookies = protect().issue(cookie_value)
    assert token != old_token and len(cookies) == 1


def test_issued_tokens_are_random() -> None:
    assert len({issued()[0] for _ in range(50)}) == 50


# --- check: the happy path and safe methods -----------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"origin": APP}, id="same-origin"),
        pytest.param({"origin": "HTTPS://APP.EXAMPLE:443"}, id="origin-normalised"),
        pytest.param({"origin": "https://admin.example:8443"}, id="allowed-other-origin"),
        pytest.param({"referer": "https://app.example/settings?tab=1"}, id="referer-same-origin"),
        pytest.param({"referer": "https://admin.example:8443/x"}, id="referer-allowed-origin"),
        pytest.param({}, id="no-origin-no-referer-token-decides"),
    ],
)
@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE", "post"])
def test_unsafe_request_from_allowed_origin_with_matching_token_passes(
    headers: dict[str, str], method: str
) -> None:
    p = protect()
    token, cookie_value = issued(p)
    check(p, method=method, headers=headers, cookie_value=cookie_value, submitted=token)


@pytest.mark.parametrize("method", sorted(SAFE_METHODS))
def test_safe_methods_are_never_checked(method: str) -> None:
    evil = {"origin": "https://evil.example"}
    check(protect(), method=method, headers=evil, cookie_value=None, submitted=None)


def test_unknown_methods_are_checked_like_post() -> None:
    with pytest.raises(CSRFError):
        check(protect(), method="PROPFIND", cookie_value=None, submitted=None)


# --- check: origin failures -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "fragment"),
    [
        pytest.param({"origin": "https://evil.example"},
                     "the Origin https://evil.example is not allowed; "
                     "add it to allowed_origins if it should be",
                     id="foreign-origin"),
        pytest.param({"origin": "http://app.example"}, "not allowed", id="scheme-downgrade"),
        pytest.param({"origin": "https://app.example:444"}, "not allowed", id="other-port"),
        pytest.param({"origin": "https://app.example.evil.example"}, "not allowed", id="suffix-attack"),
        pytest.param({"origin": "null"}, "Origin: null", id="null-origin"),
        pytest.param({"origin": "garbage"}, "not allowed", id="garbage-origin"),
        pytest.param({"origin": "https://evil.example", "referer": "https://app.example/"}, "not allowed",
                     id="origin-wins-over-referer"),
        pytest.param({"referer": "https://evil.example/page"}, "Referer", id="foreign-referer"),
        pytest.param({"referer": "not a url"}, "Referer", id="unparseable-referer"),
        pytest.param({"referer": "http://[::1"}, "Referer", id="broken-ipv6-referer"),
    ],
)
def test_request_from_a_disallowed_origin_is_rejected_even_with_a_valid_token(
    headers: dict[str, str], fragment: str
) -> None:
    p = protect()
    token, cookie_value = issued(p)
    with pytest.raises(CSRFError, match=fragment.replace("?", r"\?")) as info:
        check(p, headers=headers, cookie_value=cookie_value, submitted=token)
    assert info.value.status_code == 403


def test_hostile_origin_is_sanitised_in_the_message() -> None:
    p = protect()
    token, cookie_value = issued(p)
    with pytest.raises(CSRFError) as info:
        check(p, headers={"origin": "https://evil.example\r\nX-Injected: 1" + "a" * 500},
              cookie_value=cookie_value, submitted=token)
    assert "\r" not in str(info.value) and "\n" not in str(info.value)
    assert len(str(info.value)) < 400


# --- check: token failures -------------------------------------------------------------------


def _tamper(value: str) -> str:
    token, _, signature = value.partition(".")
    return f"{token}.{signature[:-1]}{'A' if signature[-1] != 'A' else 'B'}"


@pytest.mark.parametrize(
    ("case", "fragment"),
    [
        pytest.param("no-cookie", "cookie is missing", id="missing-cookie"),
        pytest.param("tampered-cookie", "cookie is invalid", id="tampered-signature"),
        pytest.param("other-key", "cookie is invalid", id="cookie-from-another-key"),
        pytest.param("attacker-token", "cookie is invalid", id="unsigned-attacker-cookie"),
        pytest.param("no-submitted", "no CSRF token was submitted", id="nothing-submitted"),
        pytest.param("wrong-submitted", "does not match", id="wrong-token"),
        pytest.param("non-ascii-submitted", "does not match", id="non-ascii-token"),
        pytest.param("submitted-is-cookie", "does not match", id="whole-cookie-submitted"),
    ],
)
@pytest.mark.parametrize("headers", [{"origin": APP}, {}], ids=["with-origin", "without-origin"])
def test_token_failures_are_rejected_with_a_helpful_message(
    case: str, fragment: str, headers: dict[str, str]
) -> None:
    p = protect()
    token, cookie_value = issued(p)
    cookie: str | None = cookie_value
    submitted: str | None = token
    if case == "no-cookie":
        cookie = None
    elif case == "tampered-cookie":
        cookie = _tamper(cookie_value)
    elif case == "other-key":
        token, cookie = issued(protect(key=OTHER_KEY))
        submitted = token
    elif case == "attacker-token":
        cookie, submitted = "attacker.sig", "attacker"
    elif case == "no-submitted":
        submitted = None
    elif case == "wrong-submitted":
        submitted = issued(p)[0]
    elif case == "non-ascii-submitted":
        submitted = "tøken"
    elif case == "submitted-is-cookie":
        submitted = cookie_value
    with pytest.raises(CSRFError, match=fragment) as info:
        check(p, headers=headers, cookie_value=cookie, submitted=submitted)
    assert token not in str(info.value)
    assert info.value.hint


def test_token_from_one_app_key_does_not_validate_under_another() -> None:
    token, cookie_value = issued(protect(key=OTHER_KEY))
    with pytest.raises(CSRFError):
        check(protect(), cookie_value=cookie_value, submitted=token)


def test_repr_does_not_reveal_the_key() -> None:
    assert "kkkk" not in repr(protect())


@settings(max_examples=300, deadline=None)
@given(
    method=st.sampled_from(["POST", "DELETE", "GET", "X"]) | st.text(max_size=8),
    origin=st.none() | st.text(max_size=80) | st.sampled_from([APP, "null", "https://evil.example"]),
    referer=st.none() | st.text(max_size=80),
    cookie_value=st.none() | st.text(max_size=120),
    submitted=st.none() | st.text(max_size=60),
    request_origin=st.sampled_from([APP, "", "garbage", "http://[::1"]) | st.text(max_size=30),
)
def test_check_raises_only_csrf_error_for_arbitrary_input(
    method: str,
    origin: str | None,
    referer: str | None,
    cookie_value: str | None,
    submitted: str | None,
    request_origin: str,
) -> None:
    headers = {k: v for k, v in {"origin": origin, "referer": referer}.items() if v is not None}
    try:
        check(protect(), method=method, headers=headers, cookie_value=cookie_value, submitted=submitted,
              request_origin=request_origin)
    except CSRFError:
        pass
    else:
        assert method.upper() in SAFE_METHODS


@given(cookie_value=st.none() | st.text(max_size=200))
def test_issue_never_raises_for_arbitrary_cookie_values(cookie_value: str | None) -> None:
    token, cookies = protect().issue(cookie_value)
    assert token and len(cookies) <= 1


# --- configuration ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "origins", "fragment"),
    [
        pytest.param(b"", (), "at least 32", id="empty-key"),
        pytest.param(b"short", (), "at least 32", id="short-key"),
        pytest.param(KEY, ("https://app.example/path",), "not an origin", id="origin-with-path"),
        pytest.param(KEY, ("app.example",), "not an origin", id="origin-without-scheme"),
        pytest.param(KEY, ("ftp://app.example",), "not an origin", id="non-http-scheme"),
        pytest.param(KEY, ("https://u:p@app.example",), "not an origin", id="origin-with-userinfo"),
        pytest.param(KEY, ("https://app.example?x=1",), "not an origin", id="origin-with-query"),
        pytest.param(KEY, "https://app.example", "list of origins", id="single-string"),
    ],
)
def test_bad_configuration_raises_config_error(key: bytes, origins: tuple[str, ...], fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        CSRFProtect(key, allowed_origins=origins, cookie=CookieSpec("kf.csrf", secure=True))


def test_allowed_origins_are_normalised() -> None:
    p = protect(allowed_origins=("HTTPS://Admin.Example:443/", "http://localhost:3000", "http://[::1]:8000"))
    assert p.allowed_origins == {"https://admin.example", "http://localhost:3000", "http://[::1]:8000"}


# --- session binding -------------------------------------------------------------------------


def test_a_token_is_good_only_for_the_session_it_was_issued_for() -> None:
    p = protect()
    token, cookies = p.issue(None, binding="session-a")
    cookie_value = cookies[0].value
    p.check_token(cookie_value, token, binding="session-a")
    for other in ("session-b", ""):
        with pytest.raises(CSRFError, match="another session"):
            p.check_token(cookie_value, token, binding=other)


def test_issue_replaces_a_cookie_bound_to_another_session() -> None:
    p = protect()
    anonymous, cookies = p.issue(None)
    token, new_cookies = p.issue(cookies[0].value, binding="session-a")
    assert new_cookies and token != anonymous
    assert p.issue(new_cookies[0].value, binding="session-a") == (token, [])


def test_lists_is_true_only_for_explicitly_allowed_origins() -> None:
    p = protect()
    assert p.lists(ADMIN) and p.lists(ADMIN + "/")
    assert not p.lists(APP) and not p.lists(None) and not p.lists("https://evil.example")


@pytest.mark.parametrize("extra", [0, 1])
def test_a_bad_allowed_origin_is_quoted_whole_up_to_120_characters(extra: int) -> None:
    entry = "https://app.example/" + "p" * (100 + extra)  # 120 characters, then 121
    with pytest.raises(ConfigError) as info:
        protect(allowed_origins=(entry,))
    shown = entry if not extra else entry[:120] + "..."
    assert repr(shown) in str(info.value)


def test_a_bad_allowed_origin_is_quoted_with_printable_ascii_kept_and_the_rest_replaced() -> None:
    with pytest.raises(ConfigError) as info:
        protect(allowed_origins=("https://app.example/~ é\x01",))
    assert repr("https://app.example/~ ??") in str(info.value)

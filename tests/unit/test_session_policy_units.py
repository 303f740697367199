"""The pure parts of session policy: assurance levels, binding fingerprints, the settings that carry them."""

from __future__ import annotations

import pytest

from keyfob import ConfigError, RequestMeta, Settings, StepUpRequired
from keyfob.strategies._policy import app_data, fingerprint, level_for

SECRET = "x" * 64
FIREFOX_140 = "Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0"
FIREFOX_141 = "Mozilla/5.0 (X11; Linux x86_64; rv:141.0) Gecko/20100101 Firefox/141.0"


@pytest.mark.parametrize(("amr", "level"), [
    (["pwd"], 1), (["otp"], 1), (["pwd", "pin"], 1),  # one factor kind, however many methods
    (["pwd", "otp"], 2), (["pwd", "fpt"], 2), (["webauthn"], 2), (["hwk"], 2), ([], 1),
])
def test_level_counts_factor_kinds_and_a_phishing_resistant_key_counts_as_two(amr: list[str],
                                                                              level: int) -> None:
    assert level_for(amr) == level


def test_fingerprint_ignores_the_host_part_and_the_browser_version() -> None:
    a = fingerprint(RequestMeta("198.51.100.20", FIREFOX_140))
    assert a == fingerprint(RequestMeta("198.51.100.250", FIREFOX_141))
    assert a != fingerprint(RequestMeta("198.51.101.20", FIREFOX_140))  # another /24
    v6 = fingerprint(RequestMeta("2001:db8:1:2::1", FIREFOX_140))
    assert v6 == fingerprint(RequestMeta("2001:db8:1:ffff::9", FIREFOX_140))  # same /48
    assert v6 != fingerprint(RequestMeta("2001:db8:2::1", FIREFOX_140))
    assert fingerprint(RequestMeta("not an ip", None)).startswith("not an ip|")  # never raises


def test_app_data_hides_the_policy_key_without_copying_plain_data() -> None:
    plain = {"role": "admin"}
    assert app_data(plain) is plain
    assert app_data({"role": "admin", "_kf": {"lvl": 2}}) == {"role": "admin"}


def test_bind_setting_is_validated_with_a_hint() -> None:
    with pytest.raises(ConfigError, match="bind"):
        Settings(secrets=(SECRET,), bind="lax")  # type: ignore[arg-type]
    assert Settings(secrets=(SECRET,), bind="soft").bind == "soft"


def test_browser_session_lifetimes_replace_the_persistent_pair() -> None:
    s = Settings(secrets=(SECRET,), idle_timeout=None, absolute_timeout=None,
                 browser_idle_timeout=3600, browser_absolute_timeout=7200)
    b = s.browser_session
    assert (b.idle_timeout, b.absolute_timeout, b.max_age) == (3600, 7200, 7200)
    assert b.update_age <= b.max_age and b.access_ttl <= b.max_age
    assert s.browser_session is b  # computed once


def test_step_up_error_says_what_to_do_in_json() -> None:
    err = StepUpRequired(reason="level", level=2, current_level=1)
    assert err.status_code == 403 and err.code == "step_up_required"
    assert err.to_json() == {"error": "step_up_required", "reason": "level", "level": 2, "current_level": 1,
                             "hint": err.hint}
    assert "otp" in err.hint

"""Settings are validated at construction and say how to fix what is wrong."""

from __future__ import annotations

from datetime import timedelta

import pytest

from keyfob import ConfigError, Keyfob, Settings

GOOD = "kf-settings-secret-0123456789abcdef0123456789abcdef012345678"


def test_missing_secret_says_to_run_keyfob_secret() -> None:
    with pytest.raises(ConfigError, match="keyfob secret"):
        Settings()


@pytest.mark.parametrize("weak", ["short", "x" * 20, "password123"])
def test_short_secret_is_refused(weak: str) -> None:
    with pytest.raises(ConfigError, match="too short"):
        Settings(secrets=(weak,))


def test_update_age_longer_than_max_age_is_refused() -> None:
    with pytest.raises(ConfigError, match="update_age"):
        Settings(secrets=(GOOD,), max_age=3600, update_age=7200)


def test_unknown_strategy_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="jwt, database, hybrid"):
        Settings(secrets=(GOOD,), strategy="cookie")  # type: ignore[arg-type]


def test_durations_accept_timedelta_and_are_seconds() -> None:
    s = Settings(secrets=(GOOD,), max_age=timedelta(days=2), update_age=timedelta(hours=1))
    assert s.max_age == 172800 and s.update_age == 3600


def test_settings_are_frozen() -> None:
    s = Settings(secrets=(GOOD,))
    with pytest.raises(AttributeError):
        s.max_age = 1  # type: ignore[misc]


def test_repr_never_shows_the_secret() -> None:
    assert GOOD not in repr(Settings(secrets=(GOOD,)))


def test_from_env_reads_comma_separated_secrets_newest_first() -> None:
    old = "kf-settings-old-secret-0123456789abcdef0123456789abcdef0123456"
    s = Settings.from_env({"KEYFOB_SECRET": f"{GOOD}, {old}", "KEYFOB_STRATEGY": "hybrid",
                           "KEYFOB_STORE": "memory://"})
    assert s.secrets == (GOOD, old) and s.strategy == "hybrid" and s.store == "memory://"


def test_from_env_rejects_non_numeric_durations() -> None:
    with pytest.raises(ConfigError, match="KEYFOB_MAX_AGE"):
        Settings.from_env({"KEYFOB_SECRET": GOOD, "KEYFOB_MAX_AGE": "thirty days"})


def test_unknown_store_scheme_names_the_supported_ones() -> None:
    with pytest.raises(ConfigError, match="sqlite"):
        Keyfob(secret=GOOD, store="mongodb://localhost")


def test_defaults_are_the_embedded_sqlite_store_and_lax_cookies() -> None:
    s = Settings(secrets=(GOOD,))
    assert s.store.startswith("sqlite:///") and s.cookie_samesite == "lax" and s.cookie_secure is None

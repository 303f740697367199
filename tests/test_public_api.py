"""The public surface is deliberate: pin it."""

from __future__ import annotations

import keyfob


def test_public_names_are_pinned_and_sorted() -> None:
    assert keyfob.__all__ == sorted(keyfob.__all__)
    assert keyfob.__all__ == [
        "AuthResult", "CSRFError", "ConfigError", "Event", "FakeClock", "ImpersonationRefused",
        "InvalidToken", "Issued", "Keyfob", "KeyfobError", "RequestMeta", "Session", "SessionError",
        "SessionExpired", "SessionInfo", "SessionLimitReached", "SessionRevoked", "Settings",
        "StepUpRequired", "StoreUnavailable", "TokenReuseDetected", "UpdateRefused", "Verifier",
    ]


def test_public_classes_claim_the_keyfob_module() -> None:
    for name in keyfob.__all__:
        obj = getattr(keyfob, name)
        if isinstance(obj, type):
            assert obj.__module__ == "keyfob", name


def test_every_error_derives_from_keyfoberror_with_code_and_status() -> None:
    suffixes = ("Error", "Token", "Expired", "Revoked", "Detected", "Unavailable", "Reached")
    errors = [getattr(keyfob, n) for n in keyfob.__all__ if n.endswith(suffixes)]
    assert len(errors) >= 9
    for cls in errors:
        assert issubclass(cls, keyfob.KeyfobError)
        assert isinstance(cls.code, str) and cls.code
        assert cls.status_code in (401, 403, 500, 503)


def test_package_ships_type_information() -> None:
    from importlib.resources import files

    assert files("keyfob").joinpath("py.typed").is_file()

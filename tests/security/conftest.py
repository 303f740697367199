"""Hypothesis profiles for the security fuzzing (``test_fuzz.py``).

``KEYFOB_FUZZ_PROFILE=slow`` selects the long run (10 000 examples per property); the default is
the fast one (200). The profiles are applied per test with ``@fuzz_settings`` rather than loaded
globally, so the rest of the suite's Hypothesis settings are left alone.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "keyfob-fuzz-fast",
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.register_profile(
    "keyfob-fuzz-slow",
    max_examples=10_000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                           HealthCheck.data_too_large],
)

FUZZ_PROFILE = "keyfob-fuzz-slow" if os.environ.get("KEYFOB_FUZZ_PROFILE", "").lower() == "slow" \
    else "keyfob-fuzz-fast"
fuzz_settings = settings(settings.get_profile(FUZZ_PROFILE))

"""Hypothesis profiles for the security fuzzing (``test_fuzz.py``).

Three profiles, chosen by ``KEYFOB_FUZZ_PROFILE`` (16 properties: 10 on the tokens layer, and 2
on ``Keyfob.authenticate`` for each of the 3 strategies):

* default — 200 examples per property, 3 200 in all: every local run;
* ``slow`` — 700 per property, 11 200 in all (the issue's "≥ 10k in CI's slow profile"):
  ``.ci/run`` sets it; 28 s instead of 11 s for the default on this 2-core machine;
* ``deep`` — 10 000 per property, 160 000 in all: on demand, about 7 minutes (at the slow profile's rate).

The profiles are applied per test with ``@fuzz_settings`` rather than loaded globally, so the rest
of the suite's Hypothesis settings are left alone.
"""

from __future__ import annotations

import functools
import os
from collections import Counter
from collections.abc import Callable
from typing import Any, TypeVar, cast

from hypothesis import HealthCheck, settings

settings.register_profile(
    "keyfob-fuzz-fast",
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.register_profile(
    "keyfob-fuzz-slow",
    max_examples=700,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                           HealthCheck.data_too_large],
)
settings.register_profile(
    "keyfob-fuzz-deep",
    max_examples=10_000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                           HealthCheck.data_too_large],
)

FUZZ_PROFILES = {"": "keyfob-fuzz-fast", "slow": "keyfob-fuzz-slow", "deep": "keyfob-fuzz-deep"}
_CHOSEN = os.environ.get("KEYFOB_FUZZ_PROFILE", "").strip().lower()
if _CHOSEN not in FUZZ_PROFILES:
    raise ValueError(f"KEYFOB_FUZZ_PROFILE={_CHOSEN!r}: use 'slow' or 'deep' (or leave it unset)")
FUZZ_PROFILE = FUZZ_PROFILES[_CHOSEN]
fuzz_settings = settings(settings.get_profile(FUZZ_PROFILE))

#: Examples each property ran in this session (``counted``), for the terminal summary.
FUZZ_EXAMPLES: Counter[str] = Counter()

F = TypeVar("F", bound=Callable[..., Any])


def counted(fn: F) -> F:
    """Count the examples a property runs (put it under ``@given``, on the test function itself)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        FUZZ_EXAMPLES[fn.__qualname__] += 1
        return fn(*args, **kwargs)

    return cast(F, wrapper)


def pytest_terminal_summary(terminalreporter: object) -> None:
    """The load figures (``test_load.py``), so CI logs show them without ``-s``."""
    import sys

    write = terminalreporter.write_line  # type: ignore[attr-defined]
    if FUZZ_EXAMPLES:
        write(
            f"fuzz ({FUZZ_PROFILE}): {sum(FUZZ_EXAMPLES.values())} examples in "
            f"{len(FUZZ_EXAMPLES)} property functions "
            f"(fewest: {min(FUZZ_EXAMPLES.values())})"
        )
    module = sys.modules.get("tests.security.test_load")
    results = getattr(module, "RESULTS", None)
    if not results:
        return
    for r in results:
        write(
            f"load {r['strategy']}: {r['clients']} clients, {r['seconds']} s: {r['requests']} requests "
            f"({r['rps']}/s), {r['errors']} errors, p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms, "
            f"{r['sessions_issued']} sessions issued, {r['revoked']} revoked, "
            f"{r['refused_checks']} replays refused"
        )

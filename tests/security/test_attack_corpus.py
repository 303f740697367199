"""Every case of the attack corpus, over HTTP, against each strategy it applies to.

Each request must be refused with the case's status (401 or 403 unless the case says otherwise),
never a 5xx, and within :data:`TIME_BOUND` CPU seconds (a DoS guard, not a benchmark; CPU time, which
other processes' load does not inflate). A refused
request must not leave a usable session behind it either (checked where the case says how).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ._support import open_env, timed_request
from .corpus import CASES, Case

pytestmark = pytest.mark.anyio

TIME_BOUND = 1.0  # CPU seconds per request; generous: these take milliseconds

PARAMS = [pytest.param(c, s, id=f"{c.id}[{s}]") for c in CASES for s in c.strategies]


def test_the_corpus_has_at_least_60_named_cases() -> None:
    assert len(CASES) >= 60, len(CASES)
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize(("case", "strategy"), PARAMS)
async def test_attack_is_refused(case: Case, strategy: str, tmp_path: Path) -> None:
    async with open_env(strategy, tmp_path, **case.options) as env:
        attack = await case.build(env)
        response, elapsed = await timed_request(
            env.app, attack.method, attack.path, headers=attack.headers, content=attack.content
        )
        assert response.status_code < 500, f"{case.id}: {response.status_code} {response.text[:300]}"
        assert response.status_code in attack.expect, (
            f"{case.id}: expected {sorted(attack.expect)}, got {response.status_code} {response.text[:300]}"
        )
        assert elapsed < TIME_BOUND, f"{case.id}: took {elapsed:.3f} s of CPU"
        if response.status_code in (401, 403):
            body = response.json()
            assert set(body) == {"error", "detail"}
        if attack.check is not None:
            await attack.check(env, response)


@pytest.mark.parametrize("strategy", ["jwt", "hybrid"])
async def test_forging_control_a_well_formed_keyed_token_is_accepted(strategy: str, tmp_path: Path) -> None:
    """The forging helpers make tokens keyfob accepts, so each refusal above is its case's defect."""
    async with open_env(strategy, tmp_path) as env:
        response, _ = await timed_request(
            env.app, "GET", "/me", headers=[(b"cookie", f"{env.session_cookie}={env.token()}".encode())]
        )
        assert response.status_code == 200, response.text
        assert response.json()["user"] == "victim"


@pytest.mark.parametrize("strategy", ["jwt", "database", "hybrid"])
async def test_control_a_real_session_is_accepted(strategy: str, tmp_path: Path) -> None:
    async with open_env(strategy, tmp_path) as env:
        cookies = await env.login()
        response, _ = await timed_request(
            env.app,
            "GET",
            "/me",
            headers=[(b"cookie", "; ".join(f"{k}={v}" for k, v in cookies.items()).encode())],
        )
        assert response.status_code == 200, response.text
